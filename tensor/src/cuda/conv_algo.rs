//! How a cuDNN convolution problem runs: the first time a problem (shapes, geometry, direction)
//! is seen, cuDNN benchmarks its algorithms (`cudnnFind…AlgorithmEx`, on the real buffers, with
//! a workspace of at most [`WORKSPACE_LIMIT`] bytes); the fastest that succeeded is cached per
//! device and used from then on. If finding fails, cuDNN's heuristics (`cudnnGet…Algorithm_v7`)
//! choose.
//!
//! The three problems (forward, backward-data, backward-filter) use three families of cuDNN
//! functions that differ only in their types and in which buffer plays which role. [`Pass`]
//! captures exactly that, its three implementations are generated from one table by `pass!`,
//! and the search, the heuristics and the call are written once, generically.
//!
//! **Precision.** By default convolutions run in true FP32 (`CUDNN_FMA_MATH`), matching the CPU
//! reference to rounding. [`set_allow_tf32`] lets cuDNN use TF32 tensor cores on Ampere and newer
//! (about 10 bits of mantissa in the products; what PyTorch does by default).

use super::buffer::alloc;
use super::device::{guarded, Dev, DnnHandle};
use super::dnn::{dnn_err, ConvDesc, FilterDesc, TensorDesc};
use crate::{Error, Result};
use cudarc::cudnn::sys;
use std::ffi::c_void;
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

/// Whether TF32 is allowed for problems keyed now.
pub(crate) fn tf32_allowed() -> bool {
    ALLOW_TF32.load(Ordering::Relaxed)
}

/// The math type a new convolution descriptor starts with.
pub(crate) fn default_math(tf32: bool) -> sys::cudnnMathType_t {
    if tf32 {
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
    pub(super) dir: Direction,
    pub(super) x: [usize; 4],
    pub(super) w: [usize; 4],
    pub(super) sym_pad: (usize, usize),
    pub(super) stride: (usize, usize),
    pub(super) dilation: (usize, usize),
    pub(super) groups: usize,
    pub(super) tf32: bool,
}

/// A chosen algorithm (its raw cuDNN number for the key's direction), workspace and math type.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AlgoChoice {
    algo: u32,
    workspace: usize,
    math: sys::cudnnMathType_t,
}

/// The descriptors and device addresses of one cuDNN call.
pub(super) struct Problem {
    pub(super) key: AlgoKey,
    pub(super) x: TensorDesc,
    pub(super) w: FilterDesc,
    pub(super) y: TensorDesc,
    pub(super) conv: ConvDesc,
    /// Input (or input gradient), filter (or filter gradient), output (or output gradient).
    pub(super) px: u64,
    pub(super) pw: u64,
    pub(super) py: u64,
}

/// One row of cuDNN's performance results, direction-independent.
#[derive(Clone, Copy)]
pub(crate) struct Perf {
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

type Handle = sys::cudnnHandle_t;
type Status = sys::cudnnStatus_t;
/// A workspace: its address and size in bytes.
type Workspace = (*mut c_void, usize);
/// `alpha` and `beta` of `out = alpha·conv + beta·out`, host floats.
type Scalars = (*const c_void, *const c_void);

/// What differs between the three convolution problems.
///
/// # Safety (every function)
/// The problem's descriptors are live and describe the buffers behind its addresses; `out`
/// holds [`Pass::ALGOS`] results and the workspace holds as many bytes as it says.
pub(crate) trait Pass {
    const DIR: Direction;
    /// The pass's name in messages.
    const NAME: &'static str;
    /// How many algorithms cuDNN has for the pass (its result arrays hold that many).
    const ALGOS: usize;
    type Perf: Copy;
    type Algo: Copy;
    /// The algorithm with cuDNN's number `v`.
    fn algo(v: u32) -> Result<Self::Algo>;
    fn perf(p: &Self::Perf) -> Perf;
    /// `cudnnFind…AlgorithmEx`: benchmarks the algorithms on the problem's buffers.
    unsafe fn find(
        h: Handle,
        p: &Problem,
        ws: Workspace,
        n: &mut i32,
        out: *mut Self::Perf,
    ) -> Status;
    /// `cudnnGet…Algorithm_v7`: the heuristics' ranking.
    unsafe fn heuristics(h: Handle, p: &Problem, n: &mut i32, out: *mut Self::Perf) -> Status;
    /// `cudnnGet…WorkspaceSize` of `algo`.
    unsafe fn workspace(h: Handle, p: &Problem, algo: Self::Algo, bytes: &mut usize) -> Status;
    /// The convolution itself, `out = alpha·conv + beta·out`.
    unsafe fn run(h: Handle, p: &Problem, algo: Self::Algo, ws: Workspace, s: Scalars) -> Status;
}

/// A device address as cuDNN's pointer.
fn ptr(addr: u64) -> *mut c_void {
    addr as *mut c_void
}

/// One [`Pass`] from its row of the table: the direction and its name, the size of the
/// algorithm list, cuDNN's types, the algorithms by number, the problem's fields that are the
/// first input, the second input and the output (descriptor, address), and the four functions.
macro_rules! pass {
    (
        $pass:ident, $dir:ident, $name:literal, $algos:literal, $perf:ident, $algo:ident,
        [$($v:literal => $variant:ident),+ $(,)?],
        ($i1:ident, $p1:ident), ($i2:ident, $p2:ident), ($o:ident, $po:ident),
        $find:ident, $heuristics:ident, $workspace:ident, $run:ident $(,)?
    ) => {
        pub(crate) enum $pass {}

        impl Pass for $pass {
            const DIR: Direction = Direction::$dir;
            const NAME: &'static str = $name;
            const ALGOS: usize = $algos;
            type Perf = sys::$perf;
            type Algo = sys::$algo;

            fn algo(v: u32) -> Result<sys::$algo> {
                match v {
                    $($v => Ok(sys::$algo::$variant),)+
                    _ => Err(Error::Cuda(format!("unknown cuDNN {} algorithm {v}", $name))),
                }
            }

            fn perf(p: &sys::$perf) -> Perf {
                Perf {
                    algo: p.algo as u32,
                    ok: p.status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS,
                    memory: p.memory,
                    math: p.mathType,
                }
            }

            unsafe fn find(
                h: Handle,
                p: &Problem,
                (ws, bytes): Workspace,
                n: &mut i32,
                out: *mut sys::$perf,
            ) -> Status {
                let (i1, i2, o) = ((p.$i1.0, ptr(p.$p1)), (p.$i2.0, ptr(p.$p2)), (p.$o.0, ptr(p.$po)));
                // SAFETY: the trait's contract.
                unsafe {
                    sys::$find(h, i1.0, i1.1, i2.0, i2.1, p.conv.0, o.0, o.1, $algos, n, out, ws, bytes)
                }
            }

            unsafe fn heuristics(h: Handle, p: &Problem, n: &mut i32, out: *mut sys::$perf) -> Status {
                // SAFETY: the trait's contract.
                unsafe { sys::$heuristics(h, p.$i1.0, p.$i2.0, p.conv.0, p.$o.0, $algos, n, out) }
            }

            unsafe fn workspace(h: Handle, p: &Problem, algo: sys::$algo, bytes: &mut usize) -> Status {
                // SAFETY: the trait's contract.
                unsafe { sys::$workspace(h, p.$i1.0, p.$i2.0, p.conv.0, p.$o.0, algo, bytes) }
            }

            unsafe fn run(
                h: Handle,
                p: &Problem,
                algo: sys::$algo,
                (ws, bytes): Workspace,
                (alpha, beta): Scalars,
            ) -> Status {
                let (i1, i2, o) = ((p.$i1.0, ptr(p.$p1)), (p.$i2.0, ptr(p.$p2)), (p.$o.0, ptr(p.$po)));
                // SAFETY: the trait's contract.
                unsafe {
                    sys::$run(h, alpha, i1.0, i1.1, i2.0, i2.1, p.conv.0, algo, ws, bytes, beta, o.0, o.1)
                }
            }
        }
    };
}

pass!(
    Forward, Forward, "forward", 8, cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t,
    [
        0 => CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
        1 => CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
        2 => CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
        3 => CUDNN_CONVOLUTION_FWD_ALGO_DIRECT,
        4 => CUDNN_CONVOLUTION_FWD_ALGO_FFT,
        5 => CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING,
        6 => CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD,
        7 => CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED,
    ],
    // y = x ⋆ w
    (x, px), (w, pw), (y, py),
    cudnnFindConvolutionForwardAlgorithmEx,
    cudnnGetConvolutionForwardAlgorithm_v7,
    cudnnGetConvolutionForwardWorkspaceSize,
    cudnnConvolutionForward,
);

pass!(
    BackwardData, BackwardData, "backward-data", 6, cudnnConvolutionBwdDataAlgoPerf_t,
    cudnnConvolutionBwdDataAlgo_t,
    [
        0 => CUDNN_CONVOLUTION_BWD_DATA_ALGO_0,
        1 => CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
        2 => CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT,
        3 => CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING,
        4 => CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD,
        5 => CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED,
    ],
    // dx from w and dy
    (w, pw), (y, py), (x, px),
    cudnnFindConvolutionBackwardDataAlgorithmEx,
    cudnnGetConvolutionBackwardDataAlgorithm_v7,
    cudnnGetConvolutionBackwardDataWorkspaceSize,
    cudnnConvolutionBackwardData,
);

pass!(
    BackwardFilter, BackwardFilter, "backward-filter", 7,
    cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t,
    [
        0 => CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0,
        1 => CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
        2 => CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT,
        3 => CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3,
        4 => CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD,
        5 => CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED,
        6 => CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING,
    ],
    // dw from x and dy
    (x, px), (y, py), (w, pw),
    cudnnFindConvolutionBackwardFilterAlgorithmEx,
    cudnnGetConvolutionBackwardFilterAlgorithm_v7,
    cudnnGetConvolutionBackwardFilterWorkspaceSize,
    cudnnConvolutionBackwardFilter,
);

/// The first `n` (as cuDNN reported it) of the results `r`.
fn perfs<P: Pass>(r: &[P::Perf], n: i32) -> Vec<Perf> {
    r[..(n.max(0) as usize).min(r.len())]
        .iter()
        .map(P::perf)
        .collect()
}

/// A zeroed result array for `P`.
fn results<P: Pass>() -> Vec<P::Perf> {
    // SAFETY: cuDNN's performance structs are plain C data, valid all zero.
    vec![unsafe { std::mem::zeroed::<P::Perf>() }; P::ALGOS]
}

/// Benchmarks (or, failing that, asks the heuristics for) the algorithms of `p`.
fn find_algo<P: Pass>(dev: &Arc<Dev>, h: &DnnHandle, p: &Problem) -> Result<AlgoChoice> {
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
            (p as *mut c_void, b.len())
        })
        .unwrap_or((std::ptr::null_mut(), 0));
    let (mut n, mut r) = (0i32, results::<P>());
    // SAFETY: the problem's descriptors describe the buffers behind its addresses, which the
    // caller allocated with those shapes; `r` holds ALGOS results; the workspace holds
    // `ws_bytes`.
    let st = unsafe { P::find(h.0, p, (ws_ptr, ws_bytes), &mut n, r.as_mut_ptr()) };
    let found = if st == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS {
        first_usable(&perfs::<P>(&r, n), ws_bytes, tf32)
    } else {
        None
    };
    drop(ws);
    match found {
        Some(c) => Ok(c),
        None => heuristic_algo::<P>(h, p),
    }
}

/// cuDNN's heuristic ranking, for when benchmarking is impossible.
fn heuristic_algo<P: Pass>(h: &DnnHandle, p: &Problem) -> Result<AlgoChoice> {
    let tf32 = p.key.tf32;
    let (mut n, mut r) = (0i32, results::<P>());
    // SAFETY: descriptors are live; `r` holds ALGOS results.
    unsafe { P::heuristics(h.0, p, &mut n, r.as_mut_ptr()) }
        .result()
        .map_err(|e| dnn_err(&format!("{} algorithm heuristics", P::NAME), e))?;
    // The heuristics report no workspace sizes; ask for each candidate in order.
    for cand in perfs::<P>(&r, n)
        .iter()
        .filter(|c| c.ok && math_allowed(c.math, tf32))
    {
        p.conv.set_math(exec_math(cand.math, tf32))?;
        let mut bytes = 0usize;
        // SAFETY: descriptors are live; the algorithm number comes from cuDNN itself.
        let st = unsafe { P::workspace(h.0, p, P::algo(cand.algo)?, &mut bytes) };
        if st == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS && bytes <= WORKSPACE_LIMIT {
            return Ok(AlgoChoice {
                algo: cand.algo,
                workspace: bytes,
                math: cand.math,
            });
        }
    }
    Err(Error::Cuda(format!(
        "cuDNN offers no usable {:?} algorithm for input {:?}, filter {:?} (groups {}, stride \
         {:?}, dilation {:?})",
        p.key.dir, p.key.x, p.key.w, p.key.groups, p.key.stride, p.key.dilation
    )))
}

/// Runs `p` with the cached (or newly found) algorithm.
pub(super) fn run<P: Pass>(dev: &Arc<Dev>, p: &Problem) -> Result<()> {
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
                let c = find_algo::<P>(dev, &h, p)?;
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
            ptr(ws.ptr())
        };
        let (alpha, beta) = (1.0f32, 0.0f32);
        let scalars = (
            &alpha as *const f32 as *const c_void,
            &beta as *const f32 as *const c_void,
        );
        let algo = P::algo(choice.algo)?;
        // SAFETY: descriptors describe the buffers behind the addresses; the workspace holds at
        // least `choice.workspace` bytes; alpha/beta are host floats as cuDNN expects for FP32.
        unsafe { P::run(h.0, p, algo, (ws_ptr, choice.workspace), scalars) }
            .result()
            .map_err(|e| dnn_err(&format!("{:?} convolution", p.key.dir), e))
    })
}
