//! Row-major single-precision GEMM on cuBLAS, mirroring `crate::cpu::gemm`:
//! `C = alpha·op(A)·op(B) + beta·C` with `op` an optional transpose.
//!
//! cuBLAS is column-major. A row-major `r×c` matrix with leading dimension `ld` is, read
//! column-major, its `c×r` transpose with the same `ld`. So the row-major product
//! `C = op(A)·op(B)` is computed as the column-major product `Cᵀ = op(B)ᵀ·op(A)ᵀ`: cuBLAS gets B
//! first, then A, with `m` and `n` swapped, and each operand keeps its own transpose flag.

use super::buffer::{alloc, CudaBuf};
use super::device::{cuda_err, guarded};
use super::elementwise::same_device;
use crate::backend::{BatchDims, Gemm};
use crate::{Error, Result};
use cudarc::cublas::sys::cublasOperation_t;

/// A row-major matrix operand on the device: element `(r, c)` of the stored matrix is
/// `buf[offset + r * ld + c]`; `trans` reads it transposed.
#[derive(Clone, Copy, Debug)]
pub struct DevMat<'a> {
    /// The device buffer holding the matrix.
    pub buf: &'a CudaBuf,
    /// Where the matrix starts in the buffer, in elements.
    pub offset: usize,
    /// The leading dimension: elements from one stored row to the next.
    pub ld: usize,
    /// Whether the product reads the matrix transposed.
    pub trans: bool,
}

impl<'a> DevMat<'a> {
    /// The matrix at the start of `buf` with leading dimension `ld`, read as stored.
    pub fn new(buf: &'a CudaBuf, ld: usize) -> Self {
        DevMat {
            buf,
            offset: 0,
            ld,
            trans: false,
        }
    }
    /// The same operand read transposed.
    pub fn t(self) -> Self {
        DevMat {
            trans: !self.trans,
            ..self
        }
    }
    /// The same operand starting `offset` elements into the buffer.
    pub fn at(self, offset: usize) -> Self {
        DevMat { offset, ..self }
    }
    fn op(&self) -> cublasOperation_t {
        if self.trans {
            cublasOperation_t::CUBLAS_OP_T
        } else {
            cublasOperation_t::CUBLAS_OP_N
        }
    }
    /// Checks that op(self), of `rows×cols`, plus `extra` trailing elements (later batches) fits.
    fn check(&self, what: &str, rows: usize, cols: usize, extra: usize) -> Result<()> {
        let (sr, sc) = if self.trans {
            (cols, rows)
        } else {
            (rows, cols)
        };
        if sc > self.ld && sr > 1 {
            return Err(Error::invalid(
                "sgemm",
                format!("{what}: leading dimension {} < {sc} columns", self.ld),
            ));
        }
        let need = if sr == 0 || sc == 0 {
            0
        } else {
            self.offset + (sr - 1) * self.ld + sc + extra
        };
        if need > self.buf.len() {
            return Err(Error::invalid(
                "sgemm",
                format!(
                    "{what}: a {sr}×{sc} matrix (ld {}, offset {}) needs {need} elements, the \
                     buffer holds {}",
                    self.ld,
                    self.offset,
                    self.buf.len()
                ),
            ));
        }
        Ok(())
    }
}

/// A row-major output matrix on the device: element `(r, c)` is `buf[offset + r * ld + c]`.
#[derive(Debug)]
pub struct DevMatMut<'a> {
    /// The device buffer the result is written to.
    pub buf: &'a mut CudaBuf,
    /// Where the matrix starts in the buffer, in elements.
    pub offset: usize,
    /// The leading dimension: elements from one row to the next.
    pub ld: usize,
}

impl<'a> DevMatMut<'a> {
    /// The matrix at the start of `buf` with leading dimension `ld`.
    pub fn new(buf: &'a mut CudaBuf, ld: usize) -> Self {
        DevMatMut { buf, offset: 0, ld }
    }
    /// The same matrix starting `offset` elements into the buffer.
    pub fn at(self, offset: usize) -> Self {
        DevMatMut { offset, ..self }
    }
}

fn to_int(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| {
        Error::invalid(
            "sgemm",
            format!("{what} = {v} exceeds cuBLAS's 32-bit limit"),
        )
    })
}

/// `c = alpha·op(a)·op(b) + beta·c` (see [`Gemm`]), row-major. With `beta == 0`, `c` is not read
/// (NaNs in it do not propagate).
pub fn sgemm(g: Gemm, a: DevMat<'_>, b: DevMat<'_>, c: DevMatMut<'_>) -> Result<()> {
    sgemm_strided_batched(1, g, (a, 0), (b, 0), (c, 0))
}

/// `batch` independent products; matrix `i` of each operand starts `i·stride` elements after
/// the first (a stride of 0 reuses one matrix for every batch). Each operand comes with its
/// stride.
pub fn sgemm_strided_batched(
    batch: usize,
    g: Gemm,
    (a, stride_a): (DevMat<'_>, usize),
    (b, stride_b): (DevMat<'_>, usize),
    (c, stride_c): (DevMatMut<'_>, usize),
) -> Result<()> {
    let Gemm {
        m,
        n,
        k,
        alpha,
        beta,
    } = g;
    let dev = same_device("sgemm", &[a.buf, b.buf, &*c.buf])?;
    if batch == 0 || m == 0 || n == 0 {
        return Ok(());
    }
    let last = batch - 1;
    a.check("A", m, k, last * stride_a)?;
    b.check("B", k, n, last * stride_b)?;
    DevMat {
        buf: &*c.buf,
        offset: c.offset,
        ld: c.ld,
        trans: false,
    }
    .check("C", m, n, last * stride_c)?;
    // Leading dimensions must be >= 1 and >= the stored row length, even for degenerate shapes.
    let lda = to_int(a.ld.max(if a.trans { m } else { k }).max(1), "lda")?;
    let ldb = to_int(b.ld.max(if b.trans { k } else { n }).max(1), "ldb")?;
    let ldc_i = to_int(c.ld.max(n).max(1), "ldc")?;
    let (mi, ni, ki) = (to_int(m, "m")?, to_int(n, "n")?, to_int(k, "k")?);
    let bi = to_int(batch, "batch")?;
    let pa = a.buf.ptr_at(a.offset) as *const f32;
    let pb = b.buf.ptr_at(b.offset) as *const f32;
    let pc = c.buf.ptr_at(c.offset) as *mut f32;
    let blas = dev.blas()?;
    dev.bind()?;
    guarded("cuBLAS sgemm", || {
        // SAFETY: the handle is bound to the device's stream; the checks above keep every
        // element the product touches inside the three buffers; alpha/beta are host scalars
        // (cuBLAS's default pointer mode).
        unsafe {
            if batch == 1 {
                cudarc::cublas::result::sgemm(
                    *blas.handle(),
                    b.op(),
                    a.op(),
                    ni,
                    mi,
                    ki,
                    &alpha,
                    pb,
                    ldb,
                    pa,
                    lda,
                    &beta,
                    pc,
                    ldc_i,
                )
            } else {
                cudarc::cublas::result::sgemm_strided_batched(
                    *blas.handle(),
                    b.op(),
                    a.op(),
                    ni,
                    mi,
                    ki,
                    &alpha,
                    pb,
                    ldb,
                    stride_b as i64,
                    pa,
                    lda,
                    stride_a as i64,
                    &beta,
                    pc,
                    ldc_i,
                    stride_c as i64,
                    bi,
                )
            }
        }
        .map_err(|e| cuda_err("cuBLAS sgemm", e))
    })
}

/// `op(a)·op(b)` for row-major `a` (`[m,k]`, or `[k,m]` when `trans_a`) and `b` (`[k,n]`, or
/// `[n,k]` when `trans_b`), repeated over `dims.batch` contiguous matrices (`batch_b = false`
/// shares one `b` across the batch). Returns `[batch, m, n]`.
pub fn matmul(
    a: &CudaBuf,
    b: &CudaBuf,
    dims: BatchDims,
    (trans_a, trans_b): (bool, bool),
    batch_b: bool,
) -> Result<CudaBuf> {
    let BatchDims { m, n, k, .. } = dims;
    let am = DevMat::new(a, if trans_a { m } else { k });
    let bm = DevMat::new(b, if trans_b { k } else { n });
    let am = if trans_a { am.t() } else { am };
    let bm = if trans_b { bm.t() } else { bm };
    let stride_b = if batch_b { k * n } else { 0 };
    matmul_strided(dims, (am, m * k), (bm, stride_b))
}

/// `dims.batch` products `op(a[i])·op(b[i])` into a new `[batch, m, n]` buffer; matrix `i` of an
/// operand starts `i·stride` elements after its first (stride 0 shares one matrix), as
/// `cpu::linear::matmul` with its `Operand`s. Each operand comes with its stride.
pub fn matmul_strided(
    dims: BatchDims,
    a: (DevMat<'_>, usize),
    b: (DevMat<'_>, usize),
) -> Result<CudaBuf> {
    let BatchDims { batch, m, n, k } = dims;
    let dev = same_device("matmul", &[a.0.buf, b.0.buf])?;
    let mut c = alloc(&dev, batch * m * n)?;
    if k == 0 {
        c.fill_zero()?;
        return Ok(c);
    }
    let out = (DevMatMut::new(&mut c, n), m * n);
    sgemm_strided_batched(batch, Gemm::new(m, n, k), a, b, out)?;
    Ok(c)
}

/// A fully connected layer: `x·Wᵀ + bias` for `x: [n, i]`, `w: [o, i]`, `bias: [o]`.
pub fn linear_forward(
    x: &CudaBuf,
    w: &CudaBuf,
    bias: Option<&CudaBuf>,
    n: usize,
    i: usize,
    o: usize,
) -> Result<CudaBuf> {
    let dev = same_device("linear", &[x, w])?;
    super::elementwise::check_len("linear", "the input", x, n * i)?;
    super::elementwise::check_len("linear", "the weight", w, o * i)?;
    let dims = BatchDims {
        batch: 1,
        m: n,
        n: o,
        k: i,
    };
    let y = matmul_strided(dims, (DevMat::new(x, i), 0), (DevMat::new(w, i).t(), 0))?;
    if let Some(b) = bias {
        same_device("linear", &[x, b])?;
        super::elementwise::check_len("linear", "the bias", b, o)?;
        if n * o > 0 {
            super::kernels::launch(
                &dev,
                "add_bias_nchw",
                super::kernels::cfg_1d(n * o),
                &[
                    super::kernels::Arg::P(y.ptr()),
                    super::kernels::Arg::P(b.ptr()),
                    super::kernels::i(n),
                    super::kernels::i(o),
                    super::kernels::i(1),
                ],
            )?;
        }
    }
    Ok(y)
}
