//! The NVRTC-compiled kernels: one CUDA C source (`kernels.cu`) compiled at first use, once per
//! process and GPU architecture, loaded into each device's context.
//!
//! Launches go through [`launch`], which checks the arguments against the signature recorded in
//! [`KERNELS`] before anything reaches the driver: a wrong argument list is an error, never a
//! kernel reading garbage. A unit test checks that table against the parameter lists in the
//! source, so the two cannot drift apart unnoticed on a machine without a GPU.

use super::device::{cuda_err, Dev};
use crate::ops::UnaryOp;
use crate::{Error, Result};
use cudarc::driver::{CudaFunction, DeviceRepr, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// The CUDA C source of every kernel.
pub const SOURCE: &str = include_str!("kernels.cu");

/// Most dimensions a broadcast or reduction handles (`MAX_RANK` in the source).
pub const MAX_RANK: usize = 8;

/// Threads per block of every launch.
pub(crate) const BLOCK: u32 = 256;

/// Every kernel with its argument kinds: `p` device address, `i` i64, `f` f32, `B` [`Bcast`],
/// `R` [`Reduce`].
pub(crate) const KERNELS: &[(&str, &str)] = &[
    ("unary_neg", "ppiff"),
    ("unary_exp", "ppiff"),
    ("unary_log", "ppiff"),
    ("unary_sigmoid", "ppiff"),
    ("unary_tanh", "ppiff"),
    ("unary_elu", "ppiff"),
    ("unary_relu", "ppiff"),
    ("unary_sqr", "ppiff"),
    ("unary_sqrt", "ppiff"),
    ("unary_recip", "ppiff"),
    ("unary_affine", "ppiff"),
    ("unary_bwd_neg", "ppppiff"),
    ("unary_bwd_exp", "ppppiff"),
    ("unary_bwd_log", "ppppiff"),
    ("unary_bwd_sigmoid", "ppppiff"),
    ("unary_bwd_tanh", "ppppiff"),
    ("unary_bwd_elu", "ppppiff"),
    ("unary_bwd_relu", "ppppiff"),
    ("unary_bwd_sqr", "ppppiff"),
    ("unary_bwd_sqrt", "ppppiff"),
    ("unary_bwd_recip", "ppppiff"),
    ("unary_bwd_affine", "ppppiff"),
    ("binary_add", "pppi"),
    ("binary_sub", "pppi"),
    ("binary_mul", "pppi"),
    ("binary_div", "pppi"),
    ("binary_bcast_add", "pppiB"),
    ("binary_bcast_sub", "pppiB"),
    ("binary_bcast_mul", "pppiB"),
    ("binary_bcast_div", "pppiB"),
    ("expand", "ppiB"),
    ("reduce_sum_thread", "ppiR"),
    ("reduce_sum_block", "ppiR"),
    ("max_dim", "pppiii"),
    ("scatter_dim", "pppiii"),
    ("softmax_fwd", "ppiii"),
    ("softmax_bwd", "pppiii"),
    ("xent_fwd", "pppiif"),
    ("xent_bwd", "ppppiif"),
    ("ln_stats", "pppiif"),
    ("ln_fwd", "ppppppiiiii"),
    ("ln_bwd_dx", "ppppppiiii"),
    ("ln_bwd_affine", "ppppppiii"),
    ("resize_fwd", "ppiiiiii"),
    ("resize_bwd", "ppiiiiii"),
    ("copy_rows", "ppiiii"),
    ("pad2d", "ppiiiiiiif"),
    ("crop2d", "ppiiiiiii"),
    ("avg_pool_rescale", "ppiiiiiiiiiii"),
    ("add_bias_nchw", "ppiii"),
    ("fill", "pif"),
];

/// The kernel computing `op` forward.
pub(crate) fn unary_name(op: UnaryOp) -> &'static str {
    match op {
        UnaryOp::Neg => "unary_neg",
        UnaryOp::Exp => "unary_exp",
        UnaryOp::Log => "unary_log",
        UnaryOp::Sigmoid => "unary_sigmoid",
        UnaryOp::Tanh => "unary_tanh",
        UnaryOp::Elu => "unary_elu",
        UnaryOp::Relu => "unary_relu",
        UnaryOp::Sqr => "unary_sqr",
        UnaryOp::Sqrt => "unary_sqrt",
        UnaryOp::Recip => "unary_recip",
        UnaryOp::Affine { .. } => "unary_affine",
    }
}

/// The kernel computing the input gradient of `op`.
pub(crate) fn unary_bwd_name(op: UnaryOp) -> &'static str {
    match op {
        UnaryOp::Neg => "unary_bwd_neg",
        UnaryOp::Exp => "unary_bwd_exp",
        UnaryOp::Log => "unary_bwd_log",
        UnaryOp::Sigmoid => "unary_bwd_sigmoid",
        UnaryOp::Tanh => "unary_bwd_tanh",
        UnaryOp::Elu => "unary_bwd_elu",
        UnaryOp::Relu => "unary_bwd_relu",
        UnaryOp::Sqr => "unary_bwd_sqr",
        UnaryOp::Sqrt => "unary_bwd_sqrt",
        UnaryOp::Recip => "unary_bwd_recip",
        UnaryOp::Affine { .. } => "unary_bwd_affine",
    }
}

/// Broadcast geometry (`struct Bcast` in the source): output dims and the two operands' strides
/// seen from the output.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Bcast {
    pub rank: i64,
    pub dims: [i64; MAX_RANK],
    pub sa: [i64; MAX_RANK],
    pub sb: [i64; MAX_RANK],
}

// SAFETY: `#[repr(C)]` plain data with the field order, types and padding of `struct Bcast` in
// kernels.cu (all 8-byte fields).
unsafe impl DeviceRepr for Bcast {}

/// Reduction geometry (`struct Reduce` in the source).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Reduce {
    pub out_rank: i64,
    pub red_rank: i64,
    pub out_dims: [i64; MAX_RANK],
    pub out_strides: [i64; MAX_RANK],
    pub red_dims: [i64; MAX_RANK],
    pub red_strides: [i64; MAX_RANK],
    pub red_count: i64,
    pub scale: f32,
    pub pad_: f32,
}

// SAFETY: `#[repr(C)]` plain data matching `struct Reduce` in kernels.cu field for field.
unsafe impl DeviceRepr for Reduce {}

/// One kernel argument.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg {
    /// A device address.
    P(u64),
    I(i64),
    F(f32),
    B(Bcast),
    R(Reduce),
}

impl Arg {
    fn kind(&self) -> char {
        match self {
            Arg::P(_) => 'p',
            Arg::I(_) => 'i',
            Arg::F(_) => 'f',
            Arg::B(_) => 'B',
            Arg::R(_) => 'R',
        }
    }
}

/// `Arg::I` from any length or index.
pub(crate) fn i(v: usize) -> Arg {
    Arg::I(v as i64)
}

/// The loaded module of one device.
pub(crate) struct Kernels {
    funcs: HashMap<&'static str, (CudaFunction, &'static str)>,
}

/// PTX per compute capability, compiled once per process.
fn ptx_for(cc: (i32, i32)) -> Result<Ptx> {
    static CACHE: OnceLock<Mutex<HashMap<(i32, i32), Ptx>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = cache.get(&cc) {
        return Ok(p.clone());
    }
    let opts = cudarc::nvrtc::CompileOptions {
        // Exact IEEE single precision, as the CPU kernels: no contraction into FMA, no fast
        // math, no flushing of denormals.
        fmad: Some(false),
        ftz: Some(false),
        prec_div: Some(true),
        prec_sqrt: Some(true),
        options: vec![format!("--gpu-architecture=compute_{}{}", cc.0, cc.1)],
        name: Some("convrnn_kernels.cu".into()),
        ..Default::default()
    };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(SOURCE, opts).map_err(|e| match e {
        cudarc::nvrtc::CompileError::CompileError { nvrtc, log, .. } => Error::Cuda(format!(
            "NVRTC failed to compile the kernels for compute capability {}.{} ({nvrtc:?}): {}",
            cc.0,
            cc.1,
            log.to_string_lossy()
        )),
        other => cuda_err("NVRTC", other),
    })?;
    cache.insert(cc, ptx.clone());
    Ok(ptx)
}

impl Kernels {
    pub(crate) fn load(dev: &Dev) -> Result<Kernels> {
        let cc = dev
            .ctx
            .compute_capability()
            .map_err(|e| cuda_err("querying the compute capability", e))?;
        let ptx = ptx_for(cc)?;
        let module = dev.ctx.load_module(ptx).map_err(|e| {
            cuda_err(
                format!(
                    "loading the compiled kernels on cuda:{} (a driver older than the NVRTC \
                     that compiled them rejects their PTX: update the driver or use an NVRTC of \
                     the driver's CUDA version)",
                    dev.ordinal
                ),
                e,
            )
        })?;
        let mut funcs = HashMap::new();
        for (name, sig) in KERNELS {
            let f = module
                .load_function(name)
                .map_err(|e| cuda_err(format!("finding kernel `{name}`"), e))?;
            funcs.insert(*name, (f, *sig));
        }
        Ok(Kernels { funcs })
    }
}

/// A grid-stride launch over `n` elements.
pub(crate) fn cfg_1d(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, 1 << 20) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per row (rows beyond the grid are looped over).
pub(crate) fn cfg_rows(rows: usize) -> LaunchConfig {
    let blocks = rows.clamp(1, 1 << 16) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Launches kernel `name` on the device's stream after checking `args` against its signature.
pub(crate) fn launch(dev: &Dev, name: &str, cfg: LaunchConfig, args: &[Arg]) -> Result<()> {
    let (func, sig) = dev
        .kernels()?
        .funcs
        .get(name)
        .ok_or_else(|| Error::Cuda(format!("no kernel named `{name}`")))?;
    let kinds: String = args.iter().map(Arg::kind).collect();
    if kinds != *sig {
        return Err(Error::Cuda(format!(
            "kernel `{name}` takes arguments `{sig}` but was given `{kinds}` (a backend bug)"
        )));
    }
    let mut b = dev.stream.launch_builder(func);
    for a in args {
        match a {
            Arg::P(v) => b.arg(v),
            Arg::I(v) => b.arg(v),
            Arg::F(v) => b.arg(v),
            Arg::B(v) => b.arg(v),
            Arg::R(v) => b.arg(v),
        };
    }
    // SAFETY: the argument kinds match the kernel's parameter list (checked above and against the
    // source by `signatures_match_the_source`); every address points to a live buffer of the
    // size the kernel indexes, which each caller establishes from the shapes it validated.
    unsafe { b.launch(cfg) }
        .map(|_| ())
        .map_err(|e| cuda_err(format!("launching `{name}` on cuda:{}", dev.ordinal), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parameter kinds of a C parameter list as in `KERNELS`.
    fn kinds(params: &str) -> String {
        params
            .split(',')
            .map(|p| {
                let p = p.trim();
                if p.contains('*') {
                    'p'
                } else if p.starts_with("long long") {
                    'i'
                } else if p.starts_with("float") {
                    'f'
                } else if p.starts_with("Bcast") {
                    'B'
                } else if p.starts_with("Reduce") {
                    'R'
                } else {
                    panic!("unknown parameter type in `{p}`")
                }
            })
            .collect()
    }

    /// Every `extern "C" __global__` kernel of the source (macro templates with `##name` kept)
    /// with its parameter kinds.
    fn source_kernels() -> Vec<(String, String)> {
        let mut out = Vec::new();
        let marker = "extern \"C\" __global__ void ";
        let mut rest = SOURCE;
        while let Some(pos) = rest.find(marker) {
            rest = &rest[pos + marker.len()..];
            let open = rest.find('(').expect("kernel parameter list");
            let close = rest.find(')').expect("kernel parameter list end");
            let name = rest[..open].trim().to_string();
            let params: String = rest[open + 1..close]
                .chars()
                .filter(|c| *c != '\\' && *c != '\n')
                .collect();
            out.push((name, kinds(&params)));
        }
        out
    }

    #[test]
    fn signatures_match_the_source() {
        let src = source_kernels();
        for (name, sig) in KERNELS {
            let found = src.iter().find(|(n, _)| {
                if n == name {
                    return true;
                }
                // `unary_##name` in a macro matches `unary_<op>` if the macro is instantiated.
                let Some(prefix) = n.strip_suffix("##name") else {
                    return false;
                };
                let Some(op) = name.strip_prefix(prefix) else {
                    return false;
                };
                let macro_name = if prefix.starts_with("unary") {
                    "UNARY"
                } else {
                    "BINARY"
                };
                !op.contains('_') && SOURCE.contains(&format!("\n{macro_name}({op},"))
            });
            let Some((_, got)) = found else {
                panic!("kernel `{name}` is not defined in kernels.cu");
            };
            assert_eq!(got, sig, "signature of `{name}`");
        }
        // Every kernel in the source is registered.
        for (n, _) in &src {
            if n.contains("##") {
                continue;
            }
            assert!(
                KERNELS.iter().any(|(k, _)| k == n),
                "kernel `{n}` of kernels.cu is missing from KERNELS"
            );
        }
    }

    #[test]
    fn every_unary_op_has_kernels() {
        for op in [
            UnaryOp::Neg,
            UnaryOp::Exp,
            UnaryOp::Log,
            UnaryOp::Sigmoid,
            UnaryOp::Tanh,
            UnaryOp::Elu,
            UnaryOp::Relu,
            UnaryOp::Sqr,
            UnaryOp::Sqrt,
            UnaryOp::Recip,
            UnaryOp::Affine { mul: 1.0, add: 0.0 },
        ] {
            for name in [unary_name(op), unary_bwd_name(op)] {
                assert!(KERNELS.iter().any(|(k, _)| *k == name), "{name}");
            }
        }
    }

    #[test]
    fn struct_layouts_match_the_source() {
        // 1 + 3 * 8 eight-byte fields; 2 + 4 * 8 + 1 eight-byte fields and two floats.
        assert_eq!(std::mem::size_of::<Bcast>(), 8 * 25);
        assert_eq!(std::mem::size_of::<Reduce>(), 8 * 35 + 8);
        assert!(SOURCE.contains("struct Bcast {\n    long long rank;"));
        assert!(SOURCE.contains("    long long red_count;\n    float scale;\n    float pad_;"));
    }
}
