//! The NVRTC-compiled kernels: one CUDA C source (`kernels.cu`) compiled at first use, once per
//! process and GPU architecture, loaded into each device's context.
//!
//! Launches go through `launch`, which checks the arguments against the signature recorded in
//! `KERNELS` before anything reaches the driver: a wrong argument list is an error, never a
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
    ("ln_stats", "ppiif"),
    ("ln_fwd", "pppppiiiii"),
    ("ln_bwd_dx", "pppppiiii"),
    ("ln_bwd_affine", "pppppiii"),
    ("resize_fwd", "ppiiiiii"),
    ("resize_bwd", "ppiiiiii"),
    ("copy_rows", "ppiiii"),
    ("transpose2d", "ppii"),
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

/// Compiled kernels for one GPU architecture, as the driver loads them.
#[derive(Clone, Debug)]
pub(crate) enum Image {
    /// Machine code for exactly the device's architecture: needs no JIT and runs on any driver
    /// of the same CUDA major version as the NVRTC that made it.
    Cubin(Vec<u8>),
    /// Portable PTX for the newest architecture NVRTC knows that the device can run, JIT-compiled
    /// by the driver (used when NVRTC cannot target the device directly).
    Ptx(String),
}

/// Compiler options: exact IEEE single precision, as the CPU kernels (no contraction into FMA,
/// no fast math, no flushing of denormals).
fn nvrtc_options(arch: &str) -> Vec<String> {
    vec![
        format!("--gpu-architecture={arch}"),
        "--fmad=false".into(),
        "--ftz=false".into(),
        "--prec-div=true".into(),
        "--prec-sqrt=true".into(),
        "--std=c++14".into(),
    ]
}

/// Compiles `SOURCE` with `options`; returns the CUBIN (`cubin`) or the PTX text, or the
/// compiler's log.
fn nvrtc_compile(options: &[String], cubin: bool) -> std::result::Result<Vec<u8>, String> {
    use cudarc::nvrtc::{result as rtc, sys as rtc_sys};
    let src = std::ffi::CString::new(SOURCE).map_err(|e| e.to_string())?;
    let name = std::ffi::CString::new("convrnn_kernels.cu").map_err(|e| e.to_string())?;
    let prog = rtc::create_program(&src, Some(&name)).map_err(|e| format!("{e:?}"))?;
    struct Prog(rtc_sys::nvrtcProgram);
    impl Drop for Prog {
        fn drop(&mut self) {
            // SAFETY: created by `create_program` above, destroyed once.
            let _ = unsafe { rtc::destroy_program(self.0) };
        }
    }
    let prog = Prog(prog);
    // SAFETY: `prog` is live; `src` and `name` outlive it.
    if let Err(e) = unsafe { rtc::compile_program(prog.0, options) } {
        // SAFETY: as above.
        let log = unsafe { rtc::get_program_log(prog.0) }
            .map(|l| {
                let bytes: Vec<u8> = l
                    .iter()
                    .take_while(|c| **c != 0)
                    .map(|c| *c as u8)
                    .collect();
                String::from_utf8_lossy(&bytes).into_owned()
            })
            .unwrap_or_default();
        return Err(format!("{e:?} with options {options:?}: {log}"));
    }
    if cubin {
        let mut size = 0usize;
        // SAFETY: `prog` compiled successfully; the buffer has the size NVRTC reports.
        unsafe {
            rtc_sys::nvrtcGetCUBINSize(prog.0, &mut size)
                .result()
                .map_err(|e| format!("{e:?}"))?;
            let mut buf = vec![0u8; size];
            rtc_sys::nvrtcGetCUBIN(prog.0, buf.as_mut_ptr() as *mut std::ffi::c_char)
                .result()
                .map_err(|e| format!("{e:?}"))?;
            Ok(buf)
        }
    } else {
        // SAFETY: `prog` compiled successfully.
        let ptx = unsafe { rtc::get_ptx(prog.0) }.map_err(|e| format!("{e:?}"))?;
        Ok(ptx
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect())
    }
}

/// The newest architecture (major·10 + minor) NVRTC supports that a device of `cc` can run.
fn best_supported_arch(cc: (i32, i32)) -> Option<i32> {
    use cudarc::nvrtc::sys as rtc_sys;
    let mut n = 0i32;
    // SAFETY: plain queries into buffers of the reported size.
    unsafe {
        rtc_sys::nvrtcGetNumSupportedArchs(&mut n).result().ok()?;
        let mut archs = vec![0i32; n.max(0) as usize];
        rtc_sys::nvrtcGetSupportedArchs(archs.as_mut_ptr())
            .result()
            .ok()?;
        archs.into_iter().filter(|a| *a <= cc.0 * 10 + cc.1).max()
    }
}

/// Compiles the kernels for a device of compute capability `cc`: CUBIN when NVRTC can target
/// the architecture, PTX for the best older one otherwise.
pub(crate) fn compile(cc: (i32, i32)) -> Result<Image> {
    let sm = format!("sm_{}{}", cc.0, cc.1);
    let cubin_err = match nvrtc_compile(&nvrtc_options(&sm), true) {
        Ok(bin) => return Ok(Image::Cubin(bin)),
        Err(e) => e,
    };
    let Some(arch) = best_supported_arch(cc) else {
        return Err(Error::Cuda(format!(
            "NVRTC cannot compile the kernels for {sm}: {cubin_err}"
        )));
    };
    match nvrtc_compile(&nvrtc_options(&format!("compute_{arch}")), false) {
        Ok(ptx) => Ok(Image::Ptx(String::from_utf8_lossy(&ptx).into_owned())),
        Err(ptx_err) => Err(Error::Cuda(format!(
            "NVRTC failed to compile the kernels for {sm} ({cubin_err}) and as PTX for \
             compute_{arch} ({ptx_err})"
        ))),
    }
}

/// The kernels for `cc`, compiled once per process.
fn image_for(cc: (i32, i32)) -> Result<Image> {
    static CACHE: OnceLock<Mutex<HashMap<(i32, i32), Image>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = cache.get(&cc) {
        return Ok(p.clone());
    }
    let img = compile(cc)?;
    cache.insert(cc, img.clone());
    Ok(img)
}

impl Kernels {
    pub(crate) fn load(dev: &Dev) -> Result<Kernels> {
        let cc = dev
            .ctx
            .compute_capability()
            .map_err(|e| cuda_err("querying the compute capability", e))?;
        let image = match image_for(cc)? {
            Image::Cubin(bin) => Ptx::from_binary(bin),
            Image::Ptx(src) => Ptx::from_src(src),
        };
        let module = dev.ctx.load_module(image).map_err(|e| {
            cuda_err(
                format!(
                    "loading the compiled kernels on cuda:{} (a driver of an older CUDA major \
                     version than NVRTC's rejects them: update the driver or use the NVRTC of \
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
    fn the_source_compiles_with_nvrtc() {
        // Needs only NVRTC (no GPU): runs wherever the library can be found, e.g. from a Python
        // environment's nvidia wheels.
        if let Err(e) = super::super::loader::ensure(super::super::loader::CudaLib::Nvrtc) {
            println!("skipped: NVRTC not available ({e})");
            return;
        }
        // Hopper (the GPU machines): machine code. A compile takes seconds, so one only; the
        // PTX fallback differs only in the target option.
        let start = std::time::Instant::now();
        let bin = match compile((9, 0)) {
            Ok(Image::Cubin(bin)) => bin,
            Ok(Image::Ptx(_)) => panic!("expected a CUBIN for sm_90"),
            Err(e) => panic!("sm_90: {e}"),
        };
        println!(
            "NVRTC compiled the kernels for sm_90 in {:?}",
            start.elapsed()
        );
        // Every kernel is an unmangled symbol of the image (the ELF string table names it).
        for (name, _) in KERNELS {
            let needle = format!("\0{name}\0");
            assert!(
                bin.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{name} missing from the CUBIN"
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
