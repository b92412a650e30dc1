// Kernels of the CUDA backend, compiled once per process with NVRTC (see kernels.rs).
//
// Conventions, relied on by the launch code in Rust:
// * every integer parameter is `long long` (Rust i64), flags (`flag_*`, 0 or 1) included;
// * every float parameter is `float` (Rust f32); buffers are `float*` (Rust u64 addresses);
// * 1-D kernels use grid-stride loops, so any grid size is correct;
// * block-per-row kernels loop over rows with stride gridDim.x and need blockDim.x to be a
//   multiple of 32 and at most 1024 (Rust launches 256);
// * the arithmetic of each elementwise formula is written in the same order as the CPU kernel
//   (src/ops/elementwise.rs); the module is compiled with --fmad=false so nothing is contracted.

#define MAX_RANK 8

// NVRTC compiles without the C headers, so math.h's INFINITY may be missing.
#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif

#define GRID_LOOP(i, n)                                                                    \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n);          \
         i += (long long)blockDim.x * gridDim.x)

#define ROW_LOOP(r, rows) for (long long r = blockIdx.x; r < (rows); r += gridDim.x)

// ---------------------------------------------------------------------------------------------
// Block reductions (result returned to every thread of the block).

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
    return v;
}

__device__ float block_sum(float v) {
    __shared__ float sh[32];
    int lane = threadIdx.x & 31;
    int wid = threadIdx.x >> 5;
    int nw = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    if (wid == 0) {
        v = (lane < nw) ? sh[lane] : 0.0f;
        v = warp_sum(v);
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    v = sh[0];
    __syncthreads();
    return v;
}

__device__ float block_max(float v) {
    __shared__ float sh[32];
    int lane = threadIdx.x & 31;
    int wid = threadIdx.x >> 5;
    int nw = (blockDim.x + 31) >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    if (wid == 0) {
        v = (lane < nw) ? sh[lane] : -INFINITY;
        v = warp_max(v);
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    v = sh[0];
    __syncthreads();
    return v;
}

// ---------------------------------------------------------------------------------------------
// Elementwise unary ops and their backward: one kernel per UnaryOp variant.
// p0, p1 are the parameters of Affine (mul, add) and unused otherwise.

#define UNARY(name, fwd, bwd)                                                               \
    extern "C" __global__ void unary_##name(const float* __restrict__ xs,                   \
                                            float* __restrict__ ys, long long n, float p0,  \
                                            float p1) {                                     \
        GRID_LOOP(i, n) {                                                                   \
            float x = xs[i]; (void)x;                                                       \
            ys[i] = (fwd);                                                                  \
        }                                                                                   \
    }                                                                                       \
    extern "C" __global__ void unary_bwd_##name(                                            \
        const float* __restrict__ xs, const float* __restrict__ ys,                         \
        const float* __restrict__ gs, float* __restrict__ out, long long n, float p0,       \
        float p1) {                                                                         \
        GRID_LOOP(i, n) {                                                                   \
            float x = xs[i]; (void)x;                                                       \
            float y = ys[i]; (void)y;                                                       \
            float g = gs[i];                                                                \
            out[i] = (bwd);                                                                 \
        }                                                                                   \
    }

UNARY(neg, -x, -g)
UNARY(exp, expf(x), g * y)
UNARY(log, logf(x), g / x)
UNARY(sigmoid, 1.0f / (1.0f + expf(-x)), g * y * (1.0f - y))
UNARY(tanh, tanhf(x), g * (1.0f - y * y))
UNARY(elu, x > 0.0f ? x : expm1f(x), x > 0.0f ? g : g * (y + 1.0f))
UNARY(relu, fmaxf(x, 0.0f), x > 0.0f ? g : 0.0f)
UNARY(sqr, x * x, 2.0f * x * g)
UNARY(sqrt, sqrtf(x), g / (2.0f * y))
UNARY(recip, 1.0f / x, -g * y * y)
UNARY(affine, p0 * x + p1, p0 * g)

// ---------------------------------------------------------------------------------------------
// Broadcasting. `dims` is the output shape; sa/sb are the element strides of the operands seen
// from the output (0 along broadcast dimensions).

struct Bcast {
    long long rank;
    long long dims[MAX_RANK];
    long long sa[MAX_RANK];
    long long sb[MAX_RANK];
};

__device__ __forceinline__ void bcast_offsets(const Bcast& b, long long i, long long* oa,
                                              long long* ob) {
    long long a = 0, c = 0;
    for (int d = (int)b.rank - 1; d >= 0; --d) {
        long long q = i % b.dims[d];
        i /= b.dims[d];
        a += q * b.sa[d];
        c += q * b.sb[d];
    }
    *oa = a;
    *ob = c;
}

#define BINARY(name, expr)                                                                  \
    extern "C" __global__ void binary_##name(const float* __restrict__ as,                  \
                                             const float* __restrict__ bs,                  \
                                             float* __restrict__ out, long long n) {        \
        GRID_LOOP(i, n) {                                                                   \
            float a = as[i];                                                                \
            float b = bs[i];                                                                \
            out[i] = (expr);                                                                \
        }                                                                                   \
    }                                                                                       \
    extern "C" __global__ void binary_bcast_##name(const float* __restrict__ as,            \
                                                   const float* __restrict__ bs,            \
                                                   float* __restrict__ out, long long n,    \
                                                   Bcast info) {                            \
        GRID_LOOP(i, n) {                                                                   \
            long long oa, ob;                                                               \
            bcast_offsets(info, i, &oa, &ob);                                               \
            float a = as[oa];                                                               \
            float b = bs[ob];                                                               \
            out[i] = (expr);                                                                \
        }                                                                                   \
    }

BINARY(add, a + b)
BINARY(sub, a - b)
BINARY(mul, a * b)
BINARY(div, a / b)

// out[i] = x[offset of i under info.sa] (info.sb unused).
extern "C" __global__ void expand(const float* __restrict__ x, float* __restrict__ out,
                                  long long n, Bcast info) {
    GRID_LOOP(i, n) {
        long long oa, ob;
        bcast_offsets(info, i, &oa, &ob);
        out[i] = x[oa];
    }
}

// ---------------------------------------------------------------------------------------------
// Sum over a set of dimensions, times `scale`. Output element o sits at input offset
// base(o) = sum_k idx_k(o) * out_strides[k] over the kept dims; the reduced elements sit at
// base(o) + sum_k idx_k(j) * red_strides[k], j < red_count.

struct Reduce {
    long long out_rank;
    long long red_rank;
    long long out_dims[MAX_RANK];
    long long out_strides[MAX_RANK];
    long long red_dims[MAX_RANK];
    long long red_strides[MAX_RANK];
    long long red_count;
    float scale;
    float pad_;
};

__device__ __forceinline__ long long unravel(long long i, long long rank, const long long* dims,
                                             const long long* strides) {
    long long off = 0;
    for (int d = (int)rank - 1; d >= 0; --d) {
        long long q = i % dims[d];
        i /= dims[d];
        off += q * strides[d];
    }
    return off;
}

// One thread per output element: for many outputs with short reductions.
extern "C" __global__ void reduce_sum_thread(const float* __restrict__ x,
                                             float* __restrict__ out, long long n_out,
                                             Reduce r) {
    GRID_LOOP(o, n_out) {
        long long base = unravel(o, r.out_rank, r.out_dims, r.out_strides);
        float acc = 0.0f;
        for (long long j = 0; j < r.red_count; ++j)
            acc += x[base + unravel(j, r.red_rank, r.red_dims, r.red_strides)];
        out[o] = acc * r.scale;
    }
}

// One block per output element: for long reductions.
extern "C" __global__ void reduce_sum_block(const float* __restrict__ x,
                                            float* __restrict__ out, long long n_out,
                                            Reduce r) {
    ROW_LOOP(o, n_out) {
        long long base = unravel(o, r.out_rank, r.out_dims, r.out_strides);
        float acc = 0.0f;
        for (long long j = threadIdx.x; j < r.red_count; j += blockDim.x)
            acc += x[base + unravel(j, r.red_rank, r.red_dims, r.red_strides)];
        acc = block_sum(acc);
        if (threadIdx.x == 0) out[o] = acc * r.scale;
    }
}

// Max over the middle dimension of [outer, d, inner]; the first maximum wins ties and the first
// NaN wins over numbers (as the CPU kernel).
extern "C" __global__ void max_dim(const float* __restrict__ x, float* __restrict__ vals,
                                   long long* __restrict__ idx, long long outer, long long d,
                                   long long inner) {
    GRID_LOOP(i, outer * inner) {
        long long o = i / inner;
        long long in = i - o * inner;
        const float* p = x + o * d * inner + in;
        float best = p[0];
        long long bi = 0;
        for (long long j = 1; j < d; ++j) {
            float v = p[j * inner];
            if (v > best || (v != v && best == best)) {
                best = v;
                bi = j;
            }
        }
        vals[i] = best;
        idx[i] = bi;
    }
}

// The adjoint of max_dim: out (zeroed first) gets g at each argmax.
extern "C" __global__ void scatter_dim(const float* __restrict__ g,
                                       const long long* __restrict__ idx,
                                       float* __restrict__ out, long long outer, long long d,
                                       long long inner) {
    GRID_LOOP(i, outer * inner) {
        long long o = i / inner;
        long long in = i - o * inner;
        out[(o * d + idx[i]) * inner + in] = g[i];
    }
}

// ---------------------------------------------------------------------------------------------
// Softmax family over the last dimension of [rows, k]; one block per row.

extern "C" __global__ void softmax_fwd(const float* __restrict__ x, float* __restrict__ y,
                                       long long rows, long long k, long long flag_log) {
    ROW_LOOP(r, rows) {
        const float* xr = x + r * k;
        float* yr = y + r * k;
        float m = -INFINITY;
        for (long long j = threadIdx.x; j < k; j += blockDim.x) m = fmaxf(m, xr[j]);
        m = block_max(m);
        float s = 0.0f;
        for (long long j = threadIdx.x; j < k; j += blockDim.x) s += expf(xr[j] - m);
        s = block_sum(s);
        if (flag_log) {
            float ls = logf(s);
            for (long long j = threadIdx.x; j < k; j += blockDim.x) yr[j] = xr[j] - m - ls;
        } else {
            for (long long j = threadIdx.x; j < k; j += blockDim.x) yr[j] = expf(xr[j] - m) / s;
        }
    }
}

// softmax: dx = y * (dy - sum(dy * y));  log_softmax: dx = dy - exp(y) * sum(dy).
extern "C" __global__ void softmax_bwd(const float* __restrict__ y, const float* __restrict__ dy,
                                       float* __restrict__ dx, long long rows, long long k,
                                       long long flag_log) {
    ROW_LOOP(r, rows) {
        const float* yr = y + r * k;
        const float* gr = dy + r * k;
        float* dr = dx + r * k;
        float s = 0.0f;
        if (flag_log) {
            for (long long j = threadIdx.x; j < k; j += blockDim.x) s += gr[j];
        } else {
            for (long long j = threadIdx.x; j < k; j += blockDim.x) s += gr[j] * yr[j];
        }
        s = block_sum(s);
        if (flag_log) {
            for (long long j = threadIdx.x; j < k; j += blockDim.x) dr[j] = gr[j] - expf(yr[j]) * s;
        } else {
            for (long long j = threadIdx.x; j < k; j += blockDim.x) dr[j] = yr[j] * (gr[j] - s);
        }
    }
}

// Per-row cross-entropy against the smoothed target (1 - ls) * onehot(t) + ls / k:
// loss_r = logsumexp(x_r) - (1 - ls) * x_r[t_r] - (ls / k) * sum_j x_r[j].
extern "C" __global__ void xent_fwd(const float* __restrict__ x, const long long* __restrict__ t,
                                    float* __restrict__ loss, long long rows, long long k,
                                    float ls) {
    ROW_LOOP(r, rows) {
        const float* xr = x + r * k;
        float m = -INFINITY;
        for (long long j = threadIdx.x; j < k; j += blockDim.x) m = fmaxf(m, xr[j]);
        m = block_max(m);
        float s = 0.0f, sx = 0.0f;
        for (long long j = threadIdx.x; j < k; j += blockDim.x) {
            s += expf(xr[j] - m);
            sx += xr[j];
        }
        s = block_sum(s);
        sx = block_sum(sx);
        if (threadIdx.x == 0) {
            float lse = m + logf(s);
            loss[r] = lse - (1.0f - ls) * xr[t[r]] - (ls / (float)k) * sx;
        }
    }
}

// dx = (g / rows) * (softmax(x) - target), g read from device memory (the loss gradient).
extern "C" __global__ void xent_bwd(const float* __restrict__ x, const long long* __restrict__ t,
                                    const float* __restrict__ g, float* __restrict__ dx,
                                    long long rows, long long k, float ls) {
    float scale = g[0] / (float)rows;
    float off = ls / (float)k;
    ROW_LOOP(r, rows) {
        const float* xr = x + r * k;
        float* dr = dx + r * k;
        float m = -INFINITY;
        for (long long j = threadIdx.x; j < k; j += blockDim.x) m = fmaxf(m, xr[j]);
        m = block_max(m);
        float s = 0.0f;
        for (long long j = threadIdx.x; j < k; j += blockDim.x) s += expf(xr[j] - m);
        s = block_sum(s);
        long long tr = t[r];
        for (long long j = threadIdx.x; j < k; j += blockDim.x) {
            float q = off + (j == tr ? 1.0f - ls : 0.0f);
            dr[j] = scale * (expf(xr[j] - m) / s - q);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Layer norm over each sample of [n, c, s] (s = product of the dims after the channel), with an
// optional per-channel affine. Biased variance, as TF/PyTorch. Per-sample statistics are stored
// as [n, 3] = (mean, 0, 1/sqrt(var + eps)), the layout of the CPU kernel's (mean, mean_lo, rstd).

#define LN_STATS 3

extern "C" __global__ void ln_stats(const float* __restrict__ x, float* __restrict__ stats,
                                    long long n, long long m, float eps) {
    ROW_LOOP(r, n) {
        const float* xr = x + r * m;
        float s = 0.0f;
        for (long long j = threadIdx.x; j < m; j += blockDim.x) s += xr[j];
        float mu = block_sum(s) / (float)m;
        float v = 0.0f;
        for (long long j = threadIdx.x; j < m; j += blockDim.x) {
            float d = xr[j] - mu;
            v += d * d;
        }
        float var = block_sum(v) / (float)m;
        if (threadIdx.x == 0) {
            stats[r * LN_STATS] = mu;
            stats[r * LN_STATS + 1] = 0.0f;
            stats[r * LN_STATS + 2] = 1.0f / sqrtf(var + eps);
        }
    }
}

extern "C" __global__ void ln_fwd(const float* __restrict__ x, const float* __restrict__ stats,
                                  const float* __restrict__ gamma,
                                  const float* __restrict__ beta, float* __restrict__ y,
                                  long long n, long long c, long long s, long long flag_gamma,
                                  long long flag_beta) {
    GRID_LOOP(i, n * c * s) {
        long long r = i / (c * s);
        long long ch = (i / s) % c;
        float v = (x[i] - stats[r * LN_STATS]) * stats[r * LN_STATS + 2];
        if (flag_gamma) v = v * gamma[ch];
        if (flag_beta) v = v + beta[ch];
        y[i] = v;
    }
}

// dx = rstd * (dxh - mean(dxh) - xh * mean(dxh * xh)), dxh = dy * gamma[ch], xh = normalised x.
extern "C" __global__ void ln_bwd_dx(const float* __restrict__ x, const float* __restrict__ dy,
                                     const float* __restrict__ stats,
                                     const float* __restrict__ gamma, float* __restrict__ dx,
                                     long long n, long long c, long long s,
                                     long long flag_gamma) {
    long long m = c * s;
    ROW_LOOP(r, n) {
        const float* xr = x + r * m;
        const float* gr = dy + r * m;
        float* dr = dx + r * m;
        float mu = stats[r * LN_STATS], rs = stats[r * LN_STATS + 2];
        float a = 0.0f, b = 0.0f;
        for (long long j = threadIdx.x; j < m; j += blockDim.x) {
            float xh = (xr[j] - mu) * rs;
            float dxh = flag_gamma ? gr[j] * gamma[j / s] : gr[j];
            a += dxh;
            b += dxh * xh;
        }
        a = block_sum(a) / (float)m;
        b = block_sum(b) / (float)m;
        for (long long j = threadIdx.x; j < m; j += blockDim.x) {
            float xh = (xr[j] - mu) * rs;
            float dxh = flag_gamma ? gr[j] * gamma[j / s] : gr[j];
            dr[j] = rs * (dxh - a - xh * b);
        }
    }
}

// dgamma[ch] = sum over samples and positions of dy * xh; dbeta[ch] = sum of dy. One block per
// channel. Either output may be null.
extern "C" __global__ void ln_bwd_affine(const float* __restrict__ x,
                                         const float* __restrict__ dy,
                                         const float* __restrict__ stats,
                                         float* __restrict__ dgamma, float* __restrict__ dbeta,
                                         long long n, long long c, long long s) {
    ROW_LOOP(ch, c) {
        float g = 0.0f, b = 0.0f;
        for (long long j = threadIdx.x; j < n * s; j += blockDim.x) {
            long long r = j / s;
            long long i = (r * c + ch) * s + (j - r * s);
            float xh = (x[i] - stats[r * LN_STATS]) * stats[r * LN_STATS + 2];
            g += dy[i] * xh;
            b += dy[i];
        }
        g = block_sum(g);
        b = block_sum(b);
        if (threadIdx.x == 0) {
            if (dgamma) dgamma[ch] = g;
            if (dbeta) dbeta[ch] = b;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bilinear resize of [nc, ih, iw] to [nc, oh, ow], PyTorch's interpolate(mode="bilinear").

__device__ __forceinline__ float resize_scale(long long in, long long out, long long align) {
    if (align) return out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f;
    return (float)in / (float)out;
}

__device__ __forceinline__ void resize_src(float scale, long long dst, long long in,
                                           long long align, long long* i0, long long* i1,
                                           float* l0, float* l1) {
    float src = align ? scale * (float)dst : scale * ((float)dst + 0.5f) - 0.5f;
    if (src < 0.0f) src = 0.0f;
    long long a = (long long)src;
    if (a > in - 1) a = in - 1;
    long long step = a < in - 1 ? 1 : 0;
    float l = src - (float)a;
    *i0 = a;
    *i1 = a + step;
    *l1 = l;
    *l0 = 1.0f - l;
}

extern "C" __global__ void resize_fwd(const float* __restrict__ x, float* __restrict__ y,
                                      long long nc, long long ih, long long iw, long long oh,
                                      long long ow, long long flag_align) {
    float sh = resize_scale(ih, oh, flag_align);
    float sw = resize_scale(iw, ow, flag_align);
    GRID_LOOP(i, nc * oh * ow) {
        long long ox = i % ow;
        long long oy = (i / ow) % oh;
        long long p = i / (ow * oh);
        long long y0, y1, x0, x1;
        float ly0, ly1, lx0, lx1;
        resize_src(sh, oy, ih, flag_align, &y0, &y1, &ly0, &ly1);
        resize_src(sw, ox, iw, flag_align, &x0, &x1, &lx0, &lx1);
        const float* xp = x + p * ih * iw;
        y[i] = ly0 * (lx0 * xp[y0 * iw + x0] + lx1 * xp[y0 * iw + x1]) +
               ly1 * (lx0 * xp[y1 * iw + x0] + lx1 * xp[y1 * iw + x1]);
    }
}

// dx must be zeroed first; contributions are scattered with atomics.
extern "C" __global__ void resize_bwd(const float* __restrict__ dy, float* __restrict__ dx,
                                      long long nc, long long ih, long long iw, long long oh,
                                      long long ow, long long flag_align) {
    float sh = resize_scale(ih, oh, flag_align);
    float sw = resize_scale(iw, ow, flag_align);
    GRID_LOOP(i, nc * oh * ow) {
        long long ox = i % ow;
        long long oy = (i / ow) % oh;
        long long p = i / (ow * oh);
        long long y0, y1, x0, x1;
        float ly0, ly1, lx0, lx1;
        resize_src(sh, oy, ih, flag_align, &y0, &y1, &ly0, &ly1);
        resize_src(sw, ox, iw, flag_align, &x0, &x1, &lx0, &lx1);
        float g = dy[i];
        float* dp = dx + p * ih * iw;
        atomicAdd(dp + y0 * iw + x0, ly0 * lx0 * g);
        atomicAdd(dp + y0 * iw + x1, ly0 * lx1 * g);
        atomicAdd(dp + y1 * iw + x0, ly1 * lx0 * g);
        atomicAdd(dp + y1 * iw + x1, ly1 * lx1 * g);
    }
}

// ---------------------------------------------------------------------------------------------
// Copies and padding.

// rows x cols block copy between row-strided matrices (addresses already offset by the caller).
extern "C" __global__ void copy_rows(const float* __restrict__ src, float* __restrict__ dst,
                                     long long rows, long long cols, long long src_stride,
                                     long long dst_stride) {
    GRID_LOOP(i, rows * cols) {
        long long r = i / cols;
        long long c = i - r * cols;
        dst[r * dst_stride + c] = src[r * src_stride + c];
    }
}

// [r, c] -> [c, r].
extern "C" __global__ void transpose2d(const float* __restrict__ src, float* __restrict__ dst,
                                       long long r, long long c) {
    GRID_LOOP(i, r * c) {
        long long row = i / c;
        long long col = i - row * c;
        dst[col * r + row] = src[i];
    }
}

// [nc, h, w] -> [nc, hp, wp] with x at (top, left) and `value` elsewhere.
extern "C" __global__ void pad2d(const float* __restrict__ x, float* __restrict__ y,
                                 long long nc, long long h, long long w, long long hp,
                                 long long wp, long long top, long long left, float value) {
    GRID_LOOP(i, nc * hp * wp) {
        long long px = i % wp;
        long long py = (i / wp) % hp;
        long long p = i / (wp * hp);
        long long sy = py - top, sx = px - left;
        y[i] = (sy >= 0 && sy < h && sx >= 0 && sx < w) ? x[(p * h + sy) * w + sx] : value;
    }
}

// The adjoint of pad2d: [nc, hp, wp] -> [nc, h, w] taken at (top, left); input cells the
// region does not cover (hp < top + h, used by pooling's floor mode) get 0.
extern "C" __global__ void crop2d(const float* __restrict__ xp, float* __restrict__ x,
                                  long long nc, long long h, long long w, long long hp,
                                  long long wp, long long top, long long left) {
    GRID_LOOP(i, nc * h * w) {
        long long sx = i % w;
        long long sy = (i / w) % h;
        long long p = i / (w * h);
        long long py = sy + top, px = sx + left;
        x[i] = (py < hp && px < wp) ? xp[(p * hp + py) * wp + px] : 0.0f;
    }
}

// Average pooling computed with every window cell counted (divisor kh*kw) is turned into the
// average over the cells inside the unpadded input: y *= kh*kw / count. Also used on the output
// gradient in backward. `top`/`left` are the padding before the input.
extern "C" __global__ void avg_pool_rescale(const float* __restrict__ src,
                                            float* __restrict__ dst, long long nc, long long oh,
                                            long long ow, long long h, long long w,
                                            long long kh, long long kw, long long sh,
                                            long long sw, long long top, long long left) {
    GRID_LOOP(i, nc * oh * ow) {
        long long ox = i % ow;
        long long oy = (i / ow) % oh;
        long long y0 = oy * sh - top, x0 = ox * sw - left;
        long long y1 = y0 + kh, x1 = x0 + kw;
        if (y0 < 0) y0 = 0;
        if (x0 < 0) x0 = 0;
        if (y1 > h) y1 = h;
        if (x1 > w) x1 = w;
        long long cnt = (y1 > y0 ? y1 - y0 : 0) * (x1 > x0 ? x1 - x0 : 0);
        dst[i] = cnt > 0 ? src[i] * ((float)(kh * kw) / (float)cnt) : 0.0f;
    }
}

// y[n, c, p] += bias[c] for y of [n, c, hw].
extern "C" __global__ void add_bias_nchw(float* __restrict__ y, const float* __restrict__ bias,
                                         long long n, long long c, long long hw) {
    GRID_LOOP(i, n * c * hw) { y[i] += bias[(i / hw) % c]; }
}

extern "C" __global__ void fill(float* __restrict__ y, long long n, float value) {
    GRID_LOOP(i, n) { y[i] = value; }
}
