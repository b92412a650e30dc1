//! 2-D convolution on cuDNN: forward, backward-data, backward-filter, and the bias gradient.
//!
//! **Asymmetric padding.** cuDNN pads each spatial dimension by the same amount on both sides.
//! TensorFlow's "SAME" padding puts the odd extra row/column at the bottom/right. We pass cuDNN
//! the symmetric part, `min(top, bottom)` and `min(left, right)`, and pad the input explicitly by
//! the remainder (a `pad2d` copy, zeros) before the call; backward-data crops the padded input
//! gradient back (`crop2d`), backward-filter re-pads the input. Symmetric padding costs nothing
//! extra.
//!
//! **Algorithms.** The first time a problem (shapes, geometry, direction) is seen, cuDNN
//! benchmarks its algorithms (`cudnnFind…AlgorithmEx`, on the real buffers, with a workspace of
//! at most [`WORKSPACE_LIMIT`] bytes); the fastest that succeeded is cached per device and used
//! from then on. If finding fails, cuDNN's heuristics (`cudnnGet…Algorithm_v7`) choose.
//!
//! **Precision.** By default convolutions run in true FP32 (`CUDNN_FMA_MATH`), matching the CPU
//! reference to rounding. [`set_allow_tf32`] lets cuDNN use TF32 tensor cores on Ampere and newer
//! (about 10 bits of mantissa in the products; what PyTorch does by default).

use super::buffer::{alloc, CudaBuf};
use super::device::{cuda_err, guarded, Dev, DnnHandle};
use super::elementwise::{check_len, reduce_sum, same_device};
use super::kernels::{cfg_1d, i, launch, Arg};
use super::shape::{crop2d, pad2d};
use crate::{Error, Result};
use cudarc::cudnn::result as dnn;
use cudarc::cudnn::sys;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Largest workspace (bytes) a convolution algorithm may use.
pub const WORKSPACE_LIMIT: usize = 512 << 20;

static ALLOW_TF32: AtomicBool = AtomicBool::new(false);

/// Lets cuDNN use TF32 tensor cores for convolutions chosen from now on (default: off, exact
/// FP32). Affects only problems not seen before (algorithm choices are cached).
pub fn set_allow_tf32(allow: bool) {
    ALLOW_TF32.store(allow, Ordering::Relaxed);
}

/// Geometry of a 2-D convolution with padding resolved per side (TF-"SAME" already turned into
/// explicit amounts by the caller).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dGeometry {
    pub stride: (usize, usize),
    /// `[top, bottom, left, right]`.
    pub pad: [usize; 4],
    pub dilation: (usize, usize),
    pub groups: usize,
}

impl Conv2dGeometry {
    /// The symmetric part cuDNN applies and the explicit remainder `[t, b, l, r]`.
    fn split_pad(&self) -> ((usize, usize), [usize; 4]) {
        let [t, b, l, r] = self.pad;
        let (ph, pw) = (t.min(b), l.min(r));
        ((ph, pw), [t - ph, b - ph, l - pw, r - pw])
    }
}

/// `(out_h, out_w)` of a convolution of `x_shape` `[n, c, h, w]` with a filter of `w_shape`
/// `[o, c / groups, kh, kw]`, validating every constraint with a message naming it.
pub fn conv2d_output_hw(
    x_shape: [usize; 4],
    w_shape: [usize; 4],
    g: &Conv2dGeometry,
) -> Result<(usize, usize)> {
    let [_, c, h, w] = x_shape;
    let [o, cg, kh, kw] = w_shape;
    let bad = |msg: String| Err(Error::invalid("conv2d", msg));
    if g.groups == 0 || g.stride.0 == 0 || g.stride.1 == 0 || g.dilation.0 == 0 || g.dilation.1 == 0
    {
        return bad(format!(
            "stride {:?}, dilation {:?} and groups {} must all be positive",
            g.stride, g.dilation, g.groups
        ));
    }
    if c % g.groups != 0 || o % g.groups != 0 {
        return bad(format!(
            "{c} input and {o} output channels must both be divisible by groups = {}",
            g.groups
        ));
    }
    if cg != c / g.groups {
        return bad(format!(
            "the filter has {cg} input channels per group, the input {c} channels in {} groups",
            g.groups
        ));
    }
    if kh == 0 || kw == 0 {
        return bad("the filter has an empty spatial extent".into());
    }
    let [t, b, l, r] = g.pad;
    let (eh, ew) = (g.dilation.0 * (kh - 1) + 1, g.dilation.1 * (kw - 1) + 1);
    let (hp, wp) = (h + t + b, w + l + r);
    if hp < eh || wp < ew {
        return bad(format!(
            "the padded input {hp}×{wp} is smaller than the dilated filter {eh}×{ew}"
        ));
    }
    Ok(((hp - eh) / g.stride.0 + 1, (wp - ew) / g.stride.1 + 1))
}

fn cint(v: usize) -> Result<i32> {
    i32::try_from(v)
        .map_err(|_| Error::invalid("conv2d", format!("size {v} exceeds cuDNN's limit")))
}

fn dnn_err(what: &str, e: impl std::fmt::Debug) -> Error {
    cuda_err(format!("cuDNN {what}"), e)
}

/// Owned cuDNN descriptors, destroyed on drop.
pub(crate) struct TensorDesc(pub(crate) sys::cudnnTensorDescriptor_t);
impl TensorDesc {
    pub(crate) fn nchw(d: [usize; 4]) -> Result<Self> {
        // A clear error instead of a panic or a version mismatch inside cuDNN.
        super::loader::ensure_cudnn()?;
        let t = TensorDesc(
            dnn::create_tensor_descriptor().map_err(|e| dnn_err("tensor descriptor", e))?,
        );
        // SAFETY: `t.0` was just created.
        unsafe {
            dnn::set_tensor4d_descriptor(
                t.0,
                sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
                sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                [cint(d[0])?, cint(d[1])?, cint(d[2])?, cint(d[3])?],
            )
        }
        .map_err(|e| dnn_err(&format!("tensor descriptor {d:?}"), e))?;
        Ok(t)
    }
}
impl Drop for TensorDesc {
    fn drop(&mut self) {
        // SAFETY: created by `create_tensor_descriptor`, destroyed once.
        let _ = unsafe { dnn::destroy_tensor_descriptor(self.0) };
    }
}

struct FilterDesc(sys::cudnnFilterDescriptor_t);
impl FilterDesc {
    fn new(d: [usize; 4]) -> Result<Self> {
        super::loader::ensure_cudnn()?;
        let f = FilterDesc(
            dnn::create_filter_descriptor().map_err(|e| dnn_err("filter descriptor", e))?,
        );
        // SAFETY: `f.0` was just created.
        unsafe {
            dnn::set_filter4d_descriptor(
                f.0,
                sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
                [cint(d[0])?, cint(d[1])?, cint(d[2])?, cint(d[3])?],
            )
        }
        .map_err(|e| dnn_err(&format!("filter descriptor {d:?}"), e))?;
        Ok(f)
    }
}
impl Drop for FilterDesc {
    fn drop(&mut self) {
        // SAFETY: created by `create_filter_descriptor`, destroyed once.
        let _ = unsafe { dnn::destroy_filter_descriptor(self.0) };
    }
}

struct ConvDesc(sys::cudnnConvolutionDescriptor_t);
impl ConvDesc {
    fn new(g: &Conv2dGeometry, sym: (usize, usize)) -> Result<Self> {
        super::loader::ensure_cudnn()?;
        let c = ConvDesc(
            dnn::create_convolution_descriptor()
                .map_err(|e| dnn_err("convolution descriptor", e))?,
        );
        // SAFETY: `c.0` was just created.
        unsafe {
            dnn::set_convolution2d_descriptor(
                c.0,
                cint(sym.0)?,
                cint(sym.1)?,
                cint(g.stride.0)?,
                cint(g.stride.1)?,
                cint(g.dilation.0)?,
                cint(g.dilation.1)?,
                sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
            )
            .map_err(|e| dnn_err("convolution descriptor", e))?;
            dnn::set_convolution_group_count(c.0, cint(g.groups)?)
                .map_err(|e| dnn_err("group count", e))?;
        }
        c.set_math(default_math())?;
        Ok(c)
    }
    fn set_math(&self, m: sys::cudnnMathType_t) -> Result<()> {
        // SAFETY: `self.0` is a live descriptor.
        unsafe { dnn::set_convolution_math_type(self.0, m) }.map_err(|e| dnn_err("math type", e))
    }
}
impl Drop for ConvDesc {
    fn drop(&mut self) {
        // SAFETY: created by `create_convolution_descriptor`, destroyed once.
        let _ = unsafe { dnn::destroy_convolution_descriptor(self.0) };
    }
}

fn default_math() -> sys::cudnnMathType_t {
    if ALLOW_TF32.load(Ordering::Relaxed) {
        sys::cudnnMathType_t::CUDNN_DEFAULT_MATH
    } else {
        sys::cudnnMathType_t::CUDNN_FMA_MATH
    }
}

/// The math type to run with: what cuDNN chose when TF32 is allowed, strictly FP32 otherwise
/// (a result reported as `CUDNN_DEFAULT_MATH` could use TF32 on Ampere and newer).
fn exec_math(chosen: sys::cudnnMathType_t, tf32: bool) -> sys::cudnnMathType_t {
    if tf32 {
        chosen
    } else {
        sys::cudnnMathType_t::CUDNN_FMA_MATH
    }
}

fn math_allowed(m: sys::cudnnMathType_t, tf32: bool) -> bool {
    tf32 || m == sys::cudnnMathType_t::CUDNN_FMA_MATH
        || m == sys::cudnnMathType_t::CUDNN_DEFAULT_MATH
}

/// Which of the three convolution problems.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Direction {
    Forward,
    BackwardData,
    BackwardFilter,
}

/// A cuDNN problem, as the algorithm cache sees it (shapes as cuDNN gets them: padded input,
/// symmetric padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct AlgoKey {
    dir: Direction,
    x: [usize; 4],
    w: [usize; 4],
    sym_pad: (usize, usize),
    stride: (usize, usize),
    dilation: (usize, usize),
    groups: usize,
    tf32: bool,
}

/// A chosen algorithm (its raw cuDNN number for the key's direction), workspace and math type.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AlgoChoice {
    algo: u32,
    workspace: usize,
    math: sys::cudnnMathType_t,
}

/// The descriptors and device addresses of one cuDNN call.
struct Problem {
    key: AlgoKey,
    x: TensorDesc,
    w: FilterDesc,
    y: TensorDesc,
    conv: ConvDesc,
    /// Input (or input gradient), filter (or filter gradient), output (or output gradient).
    px: u64,
    pw: u64,
    py: u64,
}

fn fwd_algo(v: u32) -> Result<sys::cudnnConvolutionFwdAlgo_t> {
    use sys::cudnnConvolutionFwdAlgo_t as A;
    Ok(match v {
        0 => A::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
        1 => A::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
        2 => A::CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
        3 => A::CUDNN_CONVOLUTION_FWD_ALGO_DIRECT,
        4 => A::CUDNN_CONVOLUTION_FWD_ALGO_FFT,
        5 => A::CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING,
        6 => A::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD,
        7 => A::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED,
        _ => return Err(Error::Cuda(format!("unknown cuDNN forward algorithm {v}"))),
    })
}

fn bwd_data_algo(v: u32) -> Result<sys::cudnnConvolutionBwdDataAlgo_t> {
    use sys::cudnnConvolutionBwdDataAlgo_t as A;
    Ok(match v {
        0 => A::CUDNN_CONVOLUTION_BWD_DATA_ALGO_0,
        1 => A::CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
        2 => A::CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT,
        3 => A::CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING,
        4 => A::CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD,
        5 => A::CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED,
        _ => {
            return Err(Error::Cuda(format!(
                "unknown cuDNN backward-data algorithm {v}"
            )))
        }
    })
}

fn bwd_filter_algo(v: u32) -> Result<sys::cudnnConvolutionBwdFilterAlgo_t> {
    use sys::cudnnConvolutionBwdFilterAlgo_t as A;
    Ok(match v {
        0 => A::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0,
        1 => A::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
        2 => A::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT,
        3 => A::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3,
        4 => A::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD,
        5 => A::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED,
        6 => A::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING,
        _ => {
            return Err(Error::Cuda(format!(
                "unknown cuDNN backward-filter algorithm {v}"
            )))
        }
    })
}

/// One row of cuDNN's performance results, direction-independent.
#[derive(Clone, Copy)]
struct Perf {
    algo: u32,
    ok: bool,
    memory: usize,
    math: sys::cudnnMathType_t,
}

/// The first usable entry of results sorted fastest first.
fn first_usable(perfs: &[Perf], limit: usize, tf32: bool) -> Option<AlgoChoice> {
    perfs
        .iter()
        .find(|p| p.ok && p.memory <= limit && math_allowed(p.math, tf32))
        .map(|p| AlgoChoice {
            algo: p.algo,
            workspace: p.memory,
            math: p.math,
        })
}

macro_rules! perfs {
    ($arr:expr, $n:expr) => {
        $arr[..($n.max(0) as usize).min($arr.len())]
            .iter()
            .map(|p| Perf {
                algo: p.algo as u32,
                ok: p.status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS,
                memory: p.memory,
                math: p.mathType,
            })
            .collect::<Vec<_>>()
    };
}

/// Benchmarks (or, failing that, asks the heuristics for) the algorithms of `p`.
fn find_algo(dev: &Arc<Dev>, h: &DnnHandle, p: &Problem) -> Result<AlgoChoice> {
    let tf32 = p.key.tf32;
    // A workspace for the benchmark, smaller if the device is short of memory. It bypasses the
    // caching allocator so that it goes back to the driver right after.
    let mut ws: Option<cudarc::driver::CudaSlice<u8>> = None;
    for bytes in [WORKSPACE_LIMIT, WORKSPACE_LIMIT / 8] {
        // SAFETY: cuDNN only writes the workspace.
        if let Ok(b) = unsafe { dev.stream.alloc::<u8>(bytes) } {
            ws = Some(b);
            break;
        }
    }
    let (ws_ptr, ws_bytes) = ws
        .as_ref()
        .map(|b| {
            use cudarc::driver::DevicePtr;
            let (p, _no_event) = b.device_ptr(&dev.stream);
            (p as *mut std::ffi::c_void, b.len())
        })
        .unwrap_or((std::ptr::null_mut(), 0));
    let (px, pw, py) = (
        p.px as *mut std::ffi::c_void,
        p.pw as *mut std::ffi::c_void,
        p.py as *mut std::ffi::c_void,
    );
    let mut n: i32 = 0;
    // SAFETY (all three arms): descriptors are live and describe the buffers behind the
    // addresses, which the caller allocated with those shapes; the workspace holds `ws_bytes`.
    let found = match p.key.dir {
        Direction::Forward => {
            let mut r = [unsafe { std::mem::zeroed::<sys::cudnnConvolutionFwdAlgoPerf_t>() }; 8];
            let st = unsafe {
                sys::cudnnFindConvolutionForwardAlgorithmEx(
                    h.0,
                    p.x.0,
                    px,
                    p.w.0,
                    pw,
                    p.conv.0,
                    p.y.0,
                    py,
                    8,
                    &mut n,
                    r.as_mut_ptr(),
                    ws_ptr,
                    ws_bytes,
                )
            };
            if st == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS {
                first_usable(&perfs!(r, n), ws_bytes, tf32)
            } else {
                None
            }
        }
        Direction::BackwardData => {
            let mut r =
                [unsafe { std::mem::zeroed::<sys::cudnnConvolutionBwdDataAlgoPerf_t>() }; 6];
            let st = unsafe {
                sys::cudnnFindConvolutionBackwardDataAlgorithmEx(
                    h.0,
                    p.w.0,
                    pw,
                    p.y.0,
                    py,
                    p.conv.0,
                    p.x.0,
                    px,
                    6,
                    &mut n,
                    r.as_mut_ptr(),
                    ws_ptr,
                    ws_bytes,
                )
            };
            if st == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS {
                first_usable(&perfs!(r, n), ws_bytes, tf32)
            } else {
                None
            }
        }
        Direction::BackwardFilter => {
            let mut r =
                [unsafe { std::mem::zeroed::<sys::cudnnConvolutionBwdFilterAlgoPerf_t>() }; 7];
            let st = unsafe {
                sys::cudnnFindConvolutionBackwardFilterAlgorithmEx(
                    h.0,
                    p.x.0,
                    px,
                    p.y.0,
                    py,
                    p.conv.0,
                    p.w.0,
                    pw,
                    7,
                    &mut n,
                    r.as_mut_ptr(),
                    ws_ptr,
                    ws_bytes,
                )
            };
            if st == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS {
                first_usable(&perfs!(r, n), ws_bytes, tf32)
            } else {
                None
            }
        }
    };
    drop(ws);
    if let Some(c) = found {
        return Ok(c);
    }
    heuristic_algo(h, p)
}

/// cuDNN's heuristic ranking, for when benchmarking is impossible.
fn heuristic_algo(h: &DnnHandle, p: &Problem) -> Result<AlgoChoice> {
    let tf32 = p.key.tf32;
    let mut n: i32 = 0;
    // SAFETY: descriptors are live; the result arrays are as long as the counts passed.
    let perfs = unsafe {
        match p.key.dir {
            Direction::Forward => {
                let mut r = [std::mem::zeroed::<sys::cudnnConvolutionFwdAlgoPerf_t>(); 8];
                dnn::get_convolution_forward_algorithm(
                    h.0,
                    p.x.0,
                    p.w.0,
                    p.conv.0,
                    p.y.0,
                    8,
                    &mut n,
                    r.as_mut_ptr(),
                )
                .map_err(|e| dnn_err("forward algorithm heuristics", e))?;
                perfs!(r, n)
            }
            Direction::BackwardData => {
                let mut r = [std::mem::zeroed::<sys::cudnnConvolutionBwdDataAlgoPerf_t>(); 6];
                dnn::get_convolution_backward_data_algorithm(
                    h.0,
                    p.w.0,
                    p.y.0,
                    p.conv.0,
                    p.x.0,
                    6,
                    &mut n,
                    r.as_mut_ptr(),
                )
                .map_err(|e| dnn_err("backward-data algorithm heuristics", e))?;
                perfs!(r, n)
            }
            Direction::BackwardFilter => {
                let mut r = [std::mem::zeroed::<sys::cudnnConvolutionBwdFilterAlgoPerf_t>(); 7];
                dnn::get_convolution_backward_filter_algorithm(
                    h.0,
                    p.x.0,
                    p.y.0,
                    p.conv.0,
                    p.w.0,
                    7,
                    &mut n,
                    r.as_mut_ptr(),
                )
                .map_err(|e| dnn_err("backward-filter algorithm heuristics", e))?;
                perfs!(r, n)
            }
        }
    };
    // The heuristics report no workspace sizes; ask for each candidate in order.
    for cand in perfs.iter().filter(|c| c.ok && math_allowed(c.math, tf32)) {
        p.conv.set_math(exec_math(cand.math, tf32))?;
        // SAFETY: descriptors are live; the algorithm numbers come from cuDNN itself.
        let ws = unsafe {
            match p.key.dir {
                Direction::Forward => dnn::get_convolution_forward_workspace_size(
                    h.0,
                    p.x.0,
                    p.w.0,
                    p.conv.0,
                    p.y.0,
                    fwd_algo(cand.algo)?,
                ),
                Direction::BackwardData => dnn::get_convolution_backward_data_workspace_size(
                    h.0,
                    p.w.0,
                    p.y.0,
                    p.conv.0,
                    p.x.0,
                    bwd_data_algo(cand.algo)?,
                ),
                Direction::BackwardFilter => dnn::get_convolution_backward_filter_workspace_size(
                    h.0,
                    p.x.0,
                    p.y.0,
                    p.conv.0,
                    p.w.0,
                    bwd_filter_algo(cand.algo)?,
                ),
            }
        };
        if let Ok(bytes) = ws {
            if bytes <= WORKSPACE_LIMIT {
                return Ok(AlgoChoice {
                    algo: cand.algo,
                    workspace: bytes,
                    math: cand.math,
                });
            }
        }
    }
    Err(Error::Cuda(format!(
        "cuDNN offers no usable {:?} algorithm for input {:?}, filter {:?} (groups {}, stride \
         {:?}, dilation {:?})",
        p.key.dir, p.key.x, p.key.w, p.key.groups, p.key.stride, p.key.dilation
    )))
}

/// Runs `p` with the cached (or newly found) algorithm.
fn run(dev: &Arc<Dev>, p: &Problem) -> Result<()> {
    let h = dev.dnn()?;
    dev.bind()?;
    guarded("cuDNN convolution", || {
        let cached = dev
            .conv_algos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&p.key)
            .copied();
        let choice = match cached {
            Some(c) => c,
            None => {
                let c = find_algo(dev, &h, p)?;
                dev.conv_algos
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(p.key, c);
                c
            }
        };
        p.conv.set_math(exec_math(choice.math, p.key.tf32))?;
        let ws = alloc(dev, choice.workspace.div_ceil(4))?;
        let ws_ptr = if choice.workspace == 0 {
            std::ptr::null_mut()
        } else {
            ws.ptr() as *mut std::ffi::c_void
        };
        let (alpha, beta) = (1.0f32, 0.0f32);
        let (a, b) = (
            &alpha as *const f32 as *const std::ffi::c_void,
            &beta as *const f32 as *const std::ffi::c_void,
        );
        let (px, pw, py) = (
            p.px as *mut std::ffi::c_void,
            p.pw as *mut std::ffi::c_void,
            p.py as *mut std::ffi::c_void,
        );
        // SAFETY: descriptors describe the buffers behind the addresses; the workspace holds at
        // least `choice.workspace` bytes; alpha/beta are host floats as cuDNN expects for FP32.
        unsafe {
            match p.key.dir {
                Direction::Forward => dnn::convolution_forward(
                    h.0,
                    a,
                    p.x.0,
                    px,
                    p.w.0,
                    pw,
                    p.conv.0,
                    fwd_algo(choice.algo)?,
                    ws_ptr,
                    choice.workspace,
                    b,
                    p.y.0,
                    py,
                ),
                Direction::BackwardData => dnn::convolution_backward_data(
                    h.0,
                    a,
                    p.w.0,
                    pw,
                    p.y.0,
                    py,
                    p.conv.0,
                    bwd_data_algo(choice.algo)?,
                    ws_ptr,
                    choice.workspace,
                    b,
                    p.x.0,
                    px,
                ),
                Direction::BackwardFilter => dnn::convolution_backward_filter(
                    h.0,
                    a,
                    p.x.0,
                    px,
                    p.y.0,
                    py,
                    p.conv.0,
                    bwd_filter_algo(choice.algo)?,
                    ws_ptr,
                    choice.workspace,
                    b,
                    p.w.0,
                    pw,
                ),
            }
        }
        .map_err(|e| dnn_err(&format!("{:?} convolution", p.key.dir), e))
    })
}

/// Shapes as cuDNN sees them: the explicitly padded input and the symmetric padding.
struct Plan {
    sym: (usize, usize),
    extra: [usize; 4],
    xp_shape: [usize; 4],
    y_shape: [usize; 4],
}

fn plan(x_shape: [usize; 4], w_shape: [usize; 4], g: &Conv2dGeometry) -> Result<Plan> {
    let (oh, ow) = conv2d_output_hw(x_shape, w_shape, g)?;
    let (sym, extra) = g.split_pad();
    let [n, c, h, w] = x_shape;
    Ok(Plan {
        sym,
        extra,
        xp_shape: [n, c, h + extra[0] + extra[1], w + extra[2] + extra[3]],
        y_shape: [n, w_shape[0], oh, ow],
    })
}

fn problem(
    dir: Direction,
    pl: &Plan,
    w_shape: [usize; 4],
    g: &Conv2dGeometry,
    px: u64,
    pw: u64,
    py: u64,
) -> Result<Problem> {
    Ok(Problem {
        key: AlgoKey {
            dir,
            x: pl.xp_shape,
            w: w_shape,
            sym_pad: pl.sym,
            stride: g.stride,
            dilation: g.dilation,
            groups: g.groups,
            tf32: ALLOW_TF32.load(Ordering::Relaxed),
        },
        x: TensorDesc::nchw(pl.xp_shape)?,
        w: FilterDesc::new(w_shape)?,
        y: TensorDesc::nchw(pl.y_shape)?,
        conv: ConvDesc::new(g, pl.sym)?,
        px,
        pw,
        py,
    })
}

/// The input padded by the asymmetric remainder, or `None` when cuDNN's symmetric padding covers
/// everything.
fn padded_input(x: &CudaBuf, x_shape: [usize; 4], pl: &Plan) -> Result<Option<CudaBuf>> {
    if pl.extra == [0; 4] {
        Ok(None)
    } else {
        pad2d(x, x_shape, pl.extra, 0.0).map(Some)
    }
}

/// `y[n, o, oh, ow] = Σ x ⋆ w (+ bias[o])`. `x`: `[n, c, h, w]`, `w`: `[o, c / groups, kh, kw]`,
/// `bias`: `[o]`. Returns the output (shape `[n, o, oh, ow]` from [`conv2d_output_hw`]).
pub fn conv2d_forward(
    x: &CudaBuf,
    x_shape: [usize; 4],
    w: &CudaBuf,
    w_shape: [usize; 4],
    bias: Option<&CudaBuf>,
    g: &Conv2dGeometry,
) -> Result<CudaBuf> {
    let dev = same_device("conv2d", &[x, w])?;
    let pl = plan(x_shape, w_shape, g)?;
    check_len("conv2d", "the input", x, x_shape.iter().product())?;
    check_len("conv2d", "the filter", w, w_shape.iter().product())?;
    if let Some(b) = bias {
        same_device("conv2d", &[x, b])?;
        check_len("conv2d", "the bias", b, w_shape[0])?;
    }
    let y = alloc(&dev, pl.y_shape.iter().product())?;
    if y.is_empty() {
        return Ok(y);
    }
    if x.is_empty() {
        // No input channels (or batch): the output is the bias alone.
        let mut y = y;
        y.fill_zero()?;
        if let Some(b) = bias {
            add_bias(&dev, &mut y, b, pl.y_shape)?;
        }
        return Ok(y);
    }
    let xp = padded_input(x, x_shape, &pl)?;
    let xsrc = xp.as_ref().unwrap_or(x);
    let p = problem(
        Direction::Forward,
        &pl,
        w_shape,
        g,
        xsrc.ptr(),
        w.ptr(),
        y.ptr(),
    )?;
    run(&dev, &p)?;
    let mut y = y;
    if let Some(b) = bias {
        add_bias(&dev, &mut y, b, pl.y_shape)?;
    }
    Ok(y)
}

fn add_bias(dev: &Arc<Dev>, y: &mut CudaBuf, b: &CudaBuf, y_shape: [usize; 4]) -> Result<()> {
    let [n, o, oh, ow] = y_shape;
    launch(
        dev,
        "add_bias_nchw",
        cfg_1d(y.len()),
        &[Arg::P(y.ptr()), Arg::P(b.ptr()), i(n), i(o), i(oh * ow)],
    )
}

/// The input gradient `dx` (`[n, c, h, w]` = `x_shape`) from the output gradient `dy` and the
/// filter `w`.
pub fn conv2d_backward_data(
    dy: &CudaBuf,
    w: &CudaBuf,
    w_shape: [usize; 4],
    x_shape: [usize; 4],
    g: &Conv2dGeometry,
) -> Result<CudaBuf> {
    let dev = same_device("conv2d backward", &[dy, w])?;
    let pl = plan(x_shape, w_shape, g)?;
    check_len(
        "conv2d backward",
        "the output gradient",
        dy,
        pl.y_shape.iter().product(),
    )?;
    check_len("conv2d backward", "the filter", w, w_shape.iter().product())?;
    let dxp = alloc(&dev, pl.xp_shape.iter().product())?;
    if dxp.is_empty() {
        return Ok(dxp);
    }
    if dy.is_empty() {
        let mut dx = alloc(&dev, x_shape.iter().product())?;
        dx.fill_zero()?;
        return Ok(dx);
    }
    let p = problem(
        Direction::BackwardData,
        &pl,
        w_shape,
        g,
        dxp.ptr(),
        w.ptr(),
        dy.ptr(),
    )?;
    run(&dev, &p)?;
    if pl.extra == [0; 4] {
        Ok(dxp)
    } else {
        crop2d(&dxp, x_shape, pl.extra)
    }
}

/// The filter gradient `dw` (`w_shape`) from the input `x` and the output gradient `dy`.
pub fn conv2d_backward_filter(
    x: &CudaBuf,
    x_shape: [usize; 4],
    dy: &CudaBuf,
    w_shape: [usize; 4],
    g: &Conv2dGeometry,
) -> Result<CudaBuf> {
    let dev = same_device("conv2d backward", &[x, dy])?;
    let pl = plan(x_shape, w_shape, g)?;
    check_len("conv2d backward", "the input", x, x_shape.iter().product())?;
    check_len(
        "conv2d backward",
        "the output gradient",
        dy,
        pl.y_shape.iter().product(),
    )?;
    let mut dw = alloc(&dev, w_shape.iter().product())?;
    if dw.is_empty() {
        return Ok(dw);
    }
    if x.is_empty() || dy.is_empty() {
        dw.fill_zero()?;
        return Ok(dw);
    }
    let xp = padded_input(x, x_shape, &pl)?;
    let xsrc = xp.as_ref().unwrap_or(x);
    let p = problem(
        Direction::BackwardFilter,
        &pl,
        w_shape,
        g,
        xsrc.ptr(),
        dw.ptr(),
        dy.ptr(),
    )?;
    run(&dev, &p)?;
    Ok(dw)
}

/// The bias gradient `[o]`: `dy` (`[n, o, oh, ow]`) summed over batch and space.
pub fn conv2d_backward_bias(dy: &CudaBuf, y_shape: [usize; 4]) -> Result<CudaBuf> {
    reduce_sum(
        dy,
        &y_shape,
        &[true, false, true, true],
        1.0,
        "conv2d bias gradient",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo(pad: [usize; 4]) -> Conv2dGeometry {
        Conv2dGeometry {
            stride: (1, 1),
            pad,
            dilation: (1, 1),
            groups: 1,
        }
    }

    #[test]
    fn asymmetric_padding_splits_into_symmetric_and_explicit() {
        assert_eq!(geo([0, 1, 0, 1]).split_pad(), ((0, 0), [0, 1, 0, 1]));
        assert_eq!(geo([1, 2, 2, 1]).split_pad(), ((1, 1), [0, 1, 1, 0]));
        assert_eq!(geo([2, 2, 3, 3]).split_pad(), ((2, 3), [0; 4]));
    }

    #[test]
    fn output_size_and_validation() {
        // TF SAME, stride 2, k 3 on 8x8: out 4, total pad 1 -> top 0, bottom 1.
        let g = Conv2dGeometry {
            stride: (2, 2),
            pad: [0, 1, 0, 1],
            dilation: (1, 1),
            groups: 1,
        };
        assert_eq!(
            conv2d_output_hw([1, 3, 8, 8], [4, 3, 3, 3], &g).unwrap(),
            (4, 4)
        );
        let dil = Conv2dGeometry {
            dilation: (2, 2),
            ..geo([2, 2, 2, 2])
        };
        assert_eq!(
            conv2d_output_hw([1, 1, 5, 5], [1, 1, 3, 3], &dil).unwrap(),
            (5, 5)
        );
        let grouped = Conv2dGeometry {
            groups: 2,
            ..geo([0; 4])
        };
        let e = conv2d_output_hw([1, 4, 5, 5], [6, 3, 3, 3], &grouped).unwrap_err();
        assert!(e.to_string().contains("per group"), "{e}");
        let e = conv2d_output_hw([1, 3, 2, 2], [1, 3, 3, 3], &geo([0; 4])).unwrap_err();
        assert!(e.to_string().contains("smaller"), "{e}");
    }
}
