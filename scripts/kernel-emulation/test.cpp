// Runs every kernel of tensor/src/cuda/kernels.cu on the CPU emulation in emu.h and compares
// with straightforward double-precision references. Arguments are packed the way the Rust
// launch code packs them (see the comments naming the Rust function of each case).
//
//   scripts/kernel-emulation.sh    (builds with g++ -std=c++20 and runs)

#include "emu.h"

#include "../../tensor/src/cuda/kernels.cu"

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

static int failures = 0;
static std::mt19937 rng(1234);

static std::vector<float> randn(size_t n, float scale = 1.0f, float shift = 0.0f) {
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = shift + scale * d(rng);
    return v;
}

static void check(const std::string& what, const std::vector<float>& got,
                  const std::vector<double>& want, double tol) {
    if (got.size() != want.size()) {
        std::printf("FAIL %s: length %zu vs %zu\n", what.c_str(), got.size(), want.size());
        ++failures;
        return;
    }
    for (size_t i = 0; i < got.size(); ++i) {
        double err = std::fabs(got[i] - want[i]) / (1.0 + std::fabs(want[i]));
        if (!(err <= tol)) {
            std::printf("FAIL %s: element %zu is %.9g, expected %.9g\n", what.c_str(), i,
                        (double)got[i], want[i]);
            ++failures;
            return;
        }
    }
    std::printf("ok   %s\n", what.c_str());
}

constexpr unsigned B = 256;  // threads per block, as kernels.rs

static void unary_ops() {
    struct U {
        const char* name;
        void (*fwd)(const float*, float*, long long, float, float);
        void (*bwd)(const float*, const float*, const float*, float*, long long, float, float);
        double (*f)(double);
        double (*df)(double x, double y);
        bool positive;
    };
    const float p0 = -1.5f, p1 = 0.25f;
    U ops[] = {
        {"neg", unary_neg, unary_bwd_neg, [](double x) { return -x; }, [](double, double) { return -1.0; }, false},
        {"exp", unary_exp, unary_bwd_exp, [](double x) { return std::exp(x); }, [](double, double y) { return y; }, false},
        {"log", unary_log, unary_bwd_log, [](double x) { return std::log(x); }, [](double x, double) { return 1 / x; }, true},
        {"sigmoid", unary_sigmoid, unary_bwd_sigmoid, [](double x) { return 1 / (1 + std::exp(-x)); }, [](double, double y) { return y * (1 - y); }, false},
        {"tanh", unary_tanh, unary_bwd_tanh, [](double x) { return std::tanh(x); }, [](double, double y) { return 1 - y * y; }, false},
        {"elu", unary_elu, unary_bwd_elu, [](double x) { return x > 0 ? x : std::expm1(x); }, [](double x, double y) { return x > 0 ? 1.0 : y + 1; }, false},
        {"relu", unary_relu, unary_bwd_relu, [](double x) { return x > 0 ? x : 0.0; }, [](double x, double) { return x > 0 ? 1.0 : 0.0; }, false},
        {"sqr", unary_sqr, unary_bwd_sqr, [](double x) { return x * x; }, [](double x, double) { return 2 * x; }, false},
        {"sqrt", unary_sqrt, unary_bwd_sqrt, [](double x) { return std::sqrt(x); }, [](double, double y) { return 1 / (2 * y); }, true},
        {"recip", unary_recip, unary_bwd_recip, [](double x) { return 1 / x; }, [](double, double y) { return -y * y; }, true},
        {"affine", unary_affine, unary_bwd_affine, [](double x) { return -1.5 * x + 0.25; }, [](double, double) { return -1.5; }, false},
    };
    size_t n = 1000;
    for (auto& u : ops) {
        auto x = randn(n);
        if (u.positive)
            for (auto& v : x) v = std::fabs(v) + 0.5f;
        auto g = randn(n);
        std::vector<float> y(n), dx(n);
        // crate::cuda::unary: grid-stride, here with fewer blocks than elements need
        emu::launch(u.fwd, 2, B, x.data(), y.data(), (long long)n, p0, p1);
        std::vector<double> wy(n), wdx(n);
        for (size_t i = 0; i < n; ++i) {
            wy[i] = u.f(x[i]);
            wdx[i] = g[i] * u.df(x[i], y[i]);
        }
        check(std::string("unary ") + u.name, y, wy, 2e-6);
        emu::launch(u.bwd, 3, B, x.data(), y.data(), g.data(), dx.data(), (long long)n, p0, p1);
        check(std::string("unary backward ") + u.name, dx, wdx, 2e-6);
    }
}

static void binary_and_expand() {
    // crate::cuda::binary for [2,3,4,5] op [1,3,1,1]: collapsed to dims [2,3,20],
    // a strides [60,20,1], b strides [0,1,0].
    auto a = randn(120), b = randn(3);
    std::vector<float> out(120);
    Bcast info{};
    info.rank = 3;
    long long dims[] = {2, 3, 20}, sa[] = {60, 20, 1}, sb[] = {0, 1, 0};
    for (int k = 0; k < 3; ++k) {
        info.dims[k] = dims[k];
        info.sa[k] = sa[k];
        info.sb[k] = sb[k];
    }
    emu::launch(binary_bcast_div, 1, B, a.data(), b.data(), out.data(), 120LL, info);
    std::vector<double> want(120);
    for (int i = 0; i < 120; ++i) want[i] = (double)a[i] / b[(i / 20) % 3];
    check("binary div with broadcast", out, want, 1e-7);
    emu::launch(binary_sub, 1, B, a.data(), a.data(), out.data(), 120LL);
    check("binary sub same shape", out, std::vector<double>(120, 0.0), 0.0);
    // crate::cuda::expand [3] -> [2,3,20]: dims [2,3,20], strides [0,1,0]
    Bcast e = info;
    for (int k = 0; k < 3; ++k) e.sa[k] = sb[k], e.sb[k] = 0;
    emu::launch(expand, 1, B, b.data(), out.data(), 120LL, e);
    for (int i = 0; i < 120; ++i) want[i] = b[(i / 20) % 3];
    check("expand", out, want, 0.0);
}

static Reduce reduce_geometry(std::vector<long long> od, std::vector<long long> os,
                              std::vector<long long> rd, std::vector<long long> rs, float scale) {
    Reduce r{};
    r.out_rank = od.size();
    r.red_rank = rd.size();
    r.red_count = 1;
    for (size_t k = 0; k < od.size(); ++k) r.out_dims[k] = od[k], r.out_strides[k] = os[k];
    for (size_t k = 0; k < rd.size(); ++k) {
        r.red_dims[k] = rd[k];
        r.red_strides[k] = rs[k];
        r.red_count *= rd[k];
    }
    r.scale = scale;
    return r;
}

static void reductions() {
    // [3,4,5,6] summed over dims {1,2} (crate::cuda::sum_dims): kept runs [3] (stride 120) and
    // [6] (stride 1), reduced run [20] (stride 6).
    auto x = randn(360);
    Reduce r = reduce_geometry({3, 6}, {120, 1}, {20}, {6}, 0.5f);
    std::vector<double> want(18, 0.0);
    for (int i = 0; i < 360; ++i) want[(i / 120) * 6 + i % 6] += 0.5 * x[i];
    std::vector<float> out(18);
    emu::launch(reduce_sum_thread, 1, B, x.data(), out.data(), 18LL, r);
    check("reduce_sum_thread over dims {1,2}", out, want, 1e-6);
    std::fill(out.begin(), out.end(), 0.0f);
    emu::launch(reduce_sum_block, 4, B, x.data(), out.data(), 18LL, r);
    check("reduce_sum_block over dims {1,2} (4 blocks, grid-looped)", out, want, 1e-6);
    // sum_all of 5000 values: no kept dims, one reduced run.
    auto y = randn(5000);
    Reduce all = reduce_geometry({}, {}, {5000}, {1}, 1.0f);
    double s = 0;
    for (float v : y) s += v;
    std::vector<float> one(1);
    emu::launch(reduce_sum_block, 1, B, y.data(), one.data(), 1LL, all);
    check("reduce_sum_block sum_all", one, {s}, 1e-5);
    // max_dim over dim 1 of [3,7,4] and its adjoint
    auto z = randn(84);
    z[1 * 28 + 2 * 4 + 3] = NAN;  // outer 1, j 2, inner 3: the NaN wins there
    std::vector<float> vals(12);
    std::vector<long long> idx(12);
    emu::launch(max_dim, 1, B, z.data(), vals.data(), idx.data(), 3LL, 7LL, 4LL);
    std::vector<double> wv(12);
    std::vector<long long> wi(12);
    for (int o = 0; o < 3; ++o)
        for (int i = 0; i < 4; ++i) {
            float best = z[o * 28 + i];
            long long bi = 0;
            for (int j = 1; j < 7; ++j) {
                float v = z[o * 28 + j * 4 + i];
                if (v > best || (std::isnan(v) && !std::isnan(best))) best = v, bi = j;
            }
            wv[o * 4 + i] = best;
            wi[o * 4 + i] = bi;
        }
    bool same = idx == wi;
    for (int k = 0; k < 12; ++k)
        same = same && (vals[k] == wv[k] || (std::isnan(vals[k]) && std::isnan(wv[k])));
    std::printf("%s max_dim values, indices and NaN\n", same ? "ok  " : "FAIL");
    failures += !same;
    auto g = randn(12);
    std::vector<float> back(84, 0.0f);
    emu::launch(scatter_dim, 1, B, g.data(), idx.data(), back.data(), 3LL, 7LL, 4LL);
    std::vector<double> wb(84, 0.0);
    for (int o = 0; o < 3; ++o)
        for (int i = 0; i < 4; ++i) wb[(o * 7 + wi[o * 4 + i]) * 4 + i] = g[o * 4 + i];
    check("scatter_dim", back, wb, 0.0);
}

static std::vector<double> log_softmax_ref(const float* x, int k) {
    double m = -INFINITY;
    for (int j = 0; j < k; ++j) m = std::max(m, (double)x[j]);
    double s = 0;
    for (int j = 0; j < k; ++j) s += std::exp(x[j] - m);
    std::vector<double> out(k);
    for (int j = 0; j < k; ++j) out[j] = x[j] - m - std::log(s);
    return out;
}

static void softmax_family() {
    for (auto [rows, k] : {std::pair{5, 10}, {3, 700}, {2, 1}}) {
        auto x = randn(rows * k, 3.0f);
        auto dy = randn(rows * k);
        std::vector<double> p, lp, dp(rows * k), dlp(rows * k);
        for (int r = 0; r < rows; ++r) {
            auto l = log_softmax_ref(&x[r * k], k);
            for (double v : l) lp.push_back(v), p.push_back(std::exp(v));
        }
        for (int r = 0; r < rows; ++r) {
            double dot = 0, sum = 0;
            for (int j = 0; j < k; ++j) dot += dy[r * k + j] * p[r * k + j], sum += dy[r * k + j];
            for (int j = 0; j < k; ++j) {
                dp[r * k + j] = p[r * k + j] * (dy[r * k + j] - dot);
                dlp[r * k + j] = dy[r * k + j] - p[r * k + j] * sum;
            }
        }
        std::vector<float> y(rows * k), ly(rows * k), d(rows * k);
        std::string tag = "[" + std::to_string(rows) + ", " + std::to_string(k) + "]";
        // crate::cuda::softmax_forward: one block per row; 2 blocks loop over the rows here
        emu::launch(softmax_fwd, 2, B, x.data(), y.data(), (long long)rows, (long long)k, 0LL);
        check("softmax " + tag, y, p, 1e-6);
        emu::launch(softmax_fwd, 2, B, x.data(), ly.data(), (long long)rows, (long long)k, 1LL);
        check("log_softmax " + tag, ly, lp, 1e-6);
        emu::launch(softmax_bwd, 2, B, y.data(), dy.data(), d.data(), (long long)rows, (long long)k, 0LL);
        check("softmax backward " + tag, d, dp, 1e-6);
        emu::launch(softmax_bwd, 2, B, ly.data(), dy.data(), d.data(), (long long)rows, (long long)k, 1LL);
        check("log_softmax backward " + tag, d, dlp, 1e-6);
        // cross-entropy with label smoothing 0.1 (crate::cuda::cross_entropy_*)
        float ls = 0.1f, g = 0.7f;
        std::vector<long long> t(rows);
        for (int r = 0; r < rows; ++r) t[r] = (r * 7 + 3) % k;
        std::vector<float> loss(rows), dx(rows * k);
        std::vector<double> wl(rows), wdx(rows * k);
        for (int r = 0; r < rows; ++r) {
            for (int j = 0; j < k; ++j) {
                double q = ls / (double)k + (j == t[r] ? 1.0 - ls : 0.0);
                wl[r] -= q * lp[r * k + j];
                wdx[r * k + j] = g / rows * (p[r * k + j] - q);
            }
        }
        emu::launch(xent_fwd, 2, B, x.data(), t.data(), loss.data(), (long long)rows, (long long)k, ls);
        check("cross entropy per row " + tag, loss, wl, 2e-6);
        float gbuf[1] = {g};
        emu::launch(xent_bwd, 2, B, x.data(), t.data(), (const float*)gbuf, dx.data(), (long long)rows, (long long)k, ls);
        check("cross entropy backward " + tag, dx, wdx, 1e-6);
    }
}

static void layer_norm() {
    for (auto [n, c, s, affine] : {std::tuple{3, 4, 25, 1}, {2, 16, 1, 1}, {2, 3, 300, 0}}) {
        int m = c * s;
        auto x = randn(n * m, 2.0f, 3.0f);
        auto gamma = randn(c), beta = randn(c), dy = randn(n * m);
        float eps = 1e-5f;
        std::vector<float> stats(n * 3), y(n * m), dx(n * m), dg(c), db(c);
        // crate::cuda::layer_norm_forward / layer_norm_backward
        emu::launch(ln_stats, 2, B, x.data(), stats.data(), (long long)n, (long long)m, eps);
        const float* gp = affine ? gamma.data() : nullptr;
        const float* bp = affine ? beta.data() : nullptr;
        emu::launch(ln_fwd, 3, B, x.data(), (const float*)stats.data(), gp, bp, y.data(), (long long)n,
                    (long long)c, (long long)s, (long long)affine, (long long)affine);
        emu::launch(ln_bwd_dx, 2, B, x.data(), dy.data(), (const float*)stats.data(), gp, dx.data(),
                    (long long)n, (long long)c, (long long)s, (long long)affine);
        emu::launch(ln_bwd_affine, 3, B, x.data(), dy.data(), (const float*)stats.data(), dg.data(),
                    db.data(), (long long)n, (long long)c, (long long)s);
        // Only dbeta (dgamma null).
        std::vector<float> db2(c);
        emu::launch(ln_bwd_affine, 1, B, x.data(), dy.data(), (const float*)stats.data(), (float*)nullptr,
                    db2.data(), (long long)n, (long long)c, (long long)s);
        std::vector<double> wy(n * m), wdx(n * m), wdg(c, 0.0), wdb(c, 0.0);
        for (int r = 0; r < n; ++r) {
            double mu = 0, var = 0;
            for (int j = 0; j < m; ++j) mu += x[r * m + j];
            mu /= m;
            for (int j = 0; j < m; ++j) var += (x[r * m + j] - mu) * (x[r * m + j] - mu);
            var /= m;
            double rs = 1 / std::sqrt(var + eps), a = 0, b = 0;
            std::vector<double> xh(m), dxh(m);
            for (int j = 0; j < m; ++j) {
                double gj = affine ? gamma[j / s] : 1.0;
                xh[j] = (x[r * m + j] - mu) * rs;
                dxh[j] = dy[r * m + j] * gj;
                a += dxh[j] / m;
                b += dxh[j] * xh[j] / m;
                wy[r * m + j] = xh[j] * gj + (affine ? beta[j / s] : 0.0);
                wdg[j / s] += dy[r * m + j] * xh[j];
                wdb[j / s] += dy[r * m + j];
            }
            for (int j = 0; j < m; ++j) wdx[r * m + j] = rs * (dxh[j] - a - xh[j] * b);
        }
        std::string tag = "n=" + std::to_string(n) + " c=" + std::to_string(c) + " s=" + std::to_string(s);
        check("layer norm " + tag, y, wy, 1e-5);
        check("layer norm dx " + tag, dx, wdx, 1e-4);
        check("layer norm dgamma " + tag, dg, wdg, 1e-4);
        check("layer norm dbeta " + tag, db, wdb, 1e-5);
        check("layer norm dbeta alone " + tag, db2, wdb, 1e-5);
        std::vector<double> wstats;
        for (int r = 0; r < n; ++r) {
            double mu = 0;
            for (int j = 0; j < m; ++j) mu += x[r * m + j];
            wstats.push_back(mu / m);
            wstats.push_back(0.0);
            wstats.push_back(stats[r * 3 + 2]);  // checked through y above
        }
        check("layer norm stats layout " + tag, stats, wstats, 1e-6);
    }
}

static void src_index(int in, int out, int dst, bool align, int& i0, int& i1, float& l0, float& l1) {
    float scale = align ? (out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f) : (float)in / (float)out;
    float src = align ? scale * dst : std::max(scale * (dst + 0.5f) - 0.5f, 0.0f);
    i0 = std::min((int)src, in - 1);
    i1 = i0 < in - 1 ? i0 + 1 : i0;
    l1 = src - i0;
    l0 = 1.0f - l1;
}

static void resize() {
    for (auto [h, w, oh, ow] : {std::tuple{5, 7, 9, 4}, {8, 8, 4, 4}, {3, 3, 1, 1}}) {
        for (int align = 0; align < 2; ++align) {
            int nc = 3;
            auto x = randn(nc * h * w), dy = randn(nc * oh * ow);
            std::vector<float> y(nc * oh * ow), dx(nc * h * w, 0.0f);
            emu::launch(resize_fwd, 2, B, x.data(), y.data(), (long long)nc, (long long)h, (long long)w,
                        (long long)oh, (long long)ow, (long long)align);
            emu::launch(resize_bwd, 2, B, dy.data(), dx.data(), (long long)nc, (long long)h, (long long)w,
                        (long long)oh, (long long)ow, (long long)align);
            std::vector<double> wy(nc * oh * ow, 0.0), wdx(nc * h * w, 0.0);
            for (int p = 0; p < nc; ++p)
                for (int oy = 0; oy < oh; ++oy)
                    for (int ox = 0; ox < ow; ++ox) {
                        int y0, y1, x0, x1;
                        float ly0, ly1, lx0, lx1;
                        src_index(h, oh, oy, align, y0, y1, ly0, ly1);
                        src_index(w, ow, ox, align, x0, x1, lx0, lx1);
                        int yi = (p * oh + oy) * ow + ox;
                        int at[4] = {(p * h + y0) * w + x0, (p * h + y0) * w + x1, (p * h + y1) * w + x0, (p * h + y1) * w + x1};
                        double wt[4] = {ly0 * lx0, ly0 * lx1, ly1 * lx0, ly1 * lx1};
                        for (int q = 0; q < 4; ++q) {
                            wy[yi] += x[at[q]] * wt[q];
                            wdx[at[q]] += dy[yi] * wt[q];
                        }
                    }
            std::string tag = std::to_string(h) + "x" + std::to_string(w) + " -> " + std::to_string(oh) + "x" +
                              std::to_string(ow) + (align ? " align" : " half-pixel");
            check("resize " + tag, y, wy, 1e-6);
            check("resize backward " + tag, dx, wdx, 1e-5);
        }
    }
}

static void copies_and_padding() {
    // crate::cuda::narrow of [2, 5, 3] along dim 1, elements 1..4: rows = outer 2,
    // cols = 3 * 3, src stride 5 * 3 starting at 1 * 3, dst stride 9.
    auto x = randn(30);
    std::vector<float> out(18);
    emu::launch(copy_rows, 1, B, x.data() + 3, out.data(), 2LL, 9LL, 15LL, 9LL);
    std::vector<double> want;
    for (int o = 0; o < 2; ++o)
        for (int j = 0; j < 9; ++j) want.push_back(x[o * 15 + 3 + j]);
    check("copy_rows (narrow)", out, want, 0.0);
    // transpose2d [5, 7] -> [7, 5]
    auto mt = randn(35);
    std::vector<float> tr(35);
    emu::launch(transpose2d, 1, B, mt.data(), tr.data(), 5LL, 7LL);
    std::vector<double> wt(35);
    for (int k = 0; k < 35; ++k) wt[k] = mt[(k % 5) * 7 + k / 5];
    check("transpose2d", tr, wt, 0.0);
    // pad2d [2, 4, 5] by top 1, bottom 2, left 0, right 3 with -7, then crop back.
    auto img = randn(40);
    int h = 4, w = 5, hp = 7, wp = 8;
    std::vector<float> padded(2 * hp * wp), back(40);
    emu::launch(pad2d, 1, B, img.data(), padded.data(), 2LL, (long long)h, (long long)w, (long long)hp,
                (long long)wp, 1LL, 0LL, -7.0f);
    std::vector<double> wp_(2 * hp * wp);
    for (int p = 0; p < 2; ++p)
        for (int yy = 0; yy < hp; ++yy)
            for (int xx = 0; xx < wp; ++xx) {
                bool in = yy >= 1 && yy < 1 + h && xx < w;
                wp_[(p * hp + yy) * wp + xx] = in ? img[(p * h + yy - 1) * w + xx] : -7.0;
            }
    check("pad2d", padded, wp_, 0.0);
    emu::launch(crop2d, 1, B, padded.data(), back.data(), 2LL, (long long)h, (long long)w, (long long)hp,
                (long long)wp, 1LL, 0LL);
    check("crop2d", back, std::vector<double>(img.begin(), img.end()), 0.0);
    // A region smaller than the input (pooling's floor mode): uncovered cells get 0.
    std::vector<float> region(2 * 3 * 4), back2(40);
    emu::launch(pad2d, 1, B, img.data(), region.data(), 2LL, 4LL, 5LL, 3LL, 4LL, 0LL, 0LL, 0.0f);
    emu::launch(crop2d, 1, B, region.data(), back2.data(), 2LL, 4LL, 5LL, 3LL, 4LL, 0LL, 0LL);
    std::vector<double> w2(40);
    for (int p = 0; p < 2; ++p)
        for (int yy = 0; yy < 4; ++yy)
            for (int xx = 0; xx < 5; ++xx) w2[(p * 4 + yy) * 5 + xx] = (yy < 3 && xx < 4) ? img[(p * 4 + yy) * 5 + xx] : 0.0;
    check("pad2d/crop2d with a region inside the input", back2, w2, 0.0);
    // avg_pool_rescale: 3x3 stride 2 on 8x8 with pad top/left 0 (TF SAME): 4x4 outputs whose
    // last row/column of windows holds 2 input rows/columns.
    auto v = randn(2 * 16);
    std::vector<float> scaled(32);
    emu::launch(avg_pool_rescale, 1, B, v.data(), scaled.data(), 2LL, 4LL, 4LL, 8LL, 8LL, 3LL, 3LL, 2LL,
                2LL, 0LL, 0LL);
    std::vector<double> ws(32);
    for (int i = 0; i < 32; ++i) {
        int oy = (i / 4) % 4, ox = i % 4;
        int rows = oy == 3 ? 2 : 3, cols = ox == 3 ? 2 : 3;
        ws[i] = v[i] * 9.0 / (rows * cols);
    }
    check("avg_pool_rescale", scaled, ws, 1e-6);
    // add_bias_nchw and fill
    auto yb = randn(2 * 3 * 5);
    auto bias = randn(3);
    std::vector<double> wb(30);
    for (int i = 0; i < 30; ++i) wb[i] = (double)yb[i] + bias[(i / 5) % 3];
    emu::launch(add_bias_nchw, 1, B, yb.data(), bias.data(), 2LL, 3LL, 5LL);
    check("add_bias_nchw", yb, wb, 1e-7);
    std::vector<float> f(700);
    emu::launch(fill, 2, B, f.data(), 700LL, 2.5f);
    check("fill", f, std::vector<double>(700, 2.5), 0.0);
}

int main() {
    unary_ops();
    binary_and_expand();
    reductions();
    softmax_family();
    layer_norm();
    resize();
    copies_and_padding();
    if (failures) {
        std::printf("%d kernel check(s) FAILED\n", failures);
        return 1;
    }
    std::printf("all kernel checks passed\n");
    return 0;
}
