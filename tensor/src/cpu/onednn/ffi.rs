//! The slice of oneDNN 2.x's C API (`dnnl.h`, `dnnl_types.h`) that the convolutions and sgemm
//! use: its types, constants and entry points, looked up in the loaded library. Nothing here
//! calls oneDNN; [`super::primitives`] and the convolution and GEMM modules do.

use crate::{Error, Result};
use libloading::Library;
use std::ffi::{c_char, c_int, c_uint, c_void};

pub(super) type Status = c_int;
pub(super) type Dim = i64;
pub(super) type Dims = [Dim; 12];
pub(super) type Handle = *mut c_void;

/// `dnnl_memory_desc_t`: a plain C struct (696 bytes in 2.6). Only oneDNN reads its fields, so it
/// is kept as opaque storage with room to spare for other 2.x releases.
#[repr(C, align(8))]
pub(super) struct MemDesc([u8; 2048]);

impl MemDesc {
    pub(super) fn zeroed() -> Box<MemDesc> {
        Box::new(MemDesc([0; 2048]))
    }
}

/// `dnnl_convolution_desc_t` (5976 bytes in 2.6), opaque like [`MemDesc`].
#[repr(C, align(8))]
pub(super) struct OpDesc([u8; 16384]);

impl OpDesc {
    pub(super) fn zeroed() -> Box<OpDesc> {
        Box::new(OpDesc([0; 16384]))
    }
}

#[repr(C)]
pub(super) struct ExecArg {
    pub(super) arg: c_int,
    pub(super) memory: Handle,
}

#[repr(C)]
struct Version {
    major: c_int,
    minor: c_int,
    patch: c_int,
    hash: *const c_char,
    cpu_runtime: c_uint,
    gpu_runtime: c_uint,
}

/// Constants of the 2.x C API (dnnl_types.h).
pub(super) mod k {
    use std::ffi::c_int;
    pub const SUCCESS: c_int = 0;
    pub const ENGINE_CPU: c_int = 1;
    pub const STREAM_DEFAULT: u32 = 1;
    pub const F32: c_int = 3;
    pub const TAG_ANY: c_int = 1;
    pub const TAG_A: c_int = 2; // x
    pub const TAG_ABCD: c_int = 5; // nchw, oihw
    pub const TAG_ABCDE: c_int = 7; // goihw
    pub const TAG_NCHW8C: c_int = 93;
    pub const TAG_NCHW16C: c_int = 69;
    pub const FORWARD_TRAINING: c_int = 64;
    pub const CONV_DIRECT: c_int = 1;
    pub const SCRATCHPAD_USER: c_int = 1;
    pub const QUERY_IMPL_INFO_STR: c_int = 8;
    pub const Q_SRC: c_int = 129;
    pub const Q_DIFF_SRC: c_int = 130;
    pub const Q_WEIGHTS: c_int = 131;
    pub const Q_DIFF_WEIGHTS: c_int = 132;
    pub const Q_DST: c_int = 133;
    pub const Q_DIFF_DST: c_int = 134;
    pub const Q_SCRATCHPAD: c_int = 136;
    pub const ARG_SRC: c_int = 1;
    pub const ARG_DST: c_int = 17;
    pub const ARG_WEIGHTS: c_int = 33;
    pub const ARG_BIAS: c_int = 41;
    pub const ARG_DIFF_SRC: c_int = 129;
    pub const ARG_DIFF_DST: c_int = 145;
    pub const ARG_DIFF_WEIGHTS: c_int = 161;
    pub const ARG_DIFF_BIAS: c_int = 169;
    pub const ARG_SCRATCHPAD: c_int = 80;
    pub const RUNTIME_OMP: u32 = 2;
}

/// `dnnl_dilated_convolution_forward_desc_init`: (desc, prop_kind, alg_kind, src, weights, bias,
/// dst, strides, dilates, padding_l, padding_r).
type ConvInitFwd = unsafe extern "C" fn(
    *mut OpDesc,
    c_int,
    c_int,
    *const MemDesc,
    *const MemDesc,
    *const MemDesc,
    *const MemDesc,
    *const Dim,
    *const Dim,
    *const Dim,
    *const Dim,
) -> Status;
/// `dnnl_dilated_convolution_backward_data_desc_init`: (desc, alg_kind, diff_src, weights,
/// diff_dst, strides, dilates, padding_l, padding_r).
type ConvInitBwdData = unsafe extern "C" fn(
    *mut OpDesc,
    c_int,
    *const MemDesc,
    *const MemDesc,
    *const MemDesc,
    *const Dim,
    *const Dim,
    *const Dim,
    *const Dim,
) -> Status;
/// `dnnl_dilated_convolution_backward_weights_desc_init`: (desc, alg_kind, src, diff_weights,
/// diff_bias, diff_dst, strides, dilates, padding_l, padding_r).
type ConvInitBwdWeights = unsafe extern "C" fn(
    *mut OpDesc,
    c_int,
    *const MemDesc,
    *const MemDesc,
    *const MemDesc,
    *const MemDesc,
    *const Dim,
    *const Dim,
    *const Dim,
    *const Dim,
) -> Status;
/// `dnnl_sgemm`: (transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc), row-major.
type Sgemm = unsafe extern "C" fn(
    c_char,
    c_char,
    Dim,
    Dim,
    Dim,
    f32,
    *const f32,
    Dim,
    *const f32,
    Dim,
    f32,
    *mut f32,
    Dim,
) -> Status;
pub(super) type DestroyFn = unsafe extern "C" fn(Handle) -> Status;

/// The C entry points, copied out of the library (valid while it stays loaded, i.e. forever).
#[derive(Clone, Copy)]
pub(super) struct Api {
    pub(super) engine_create: unsafe extern "C" fn(*mut Handle, c_int, usize) -> Status,
    pub(super) stream_create: unsafe extern "C" fn(*mut Handle, Handle, c_uint) -> Status,
    pub(super) stream_wait: unsafe extern "C" fn(Handle) -> Status,
    pub(super) md_init_by_tag:
        unsafe extern "C" fn(*mut MemDesc, c_int, *const Dim, c_int, c_int) -> Status,
    pub(super) md_equal: unsafe extern "C" fn(*const MemDesc, *const MemDesc) -> c_int,
    pub(super) md_get_size: unsafe extern "C" fn(*const MemDesc) -> usize,
    pub(super) conv_fwd_init: ConvInitFwd,
    pub(super) conv_bwd_data_init: ConvInitBwdData,
    pub(super) conv_bwd_weights_init: ConvInitBwdWeights,
    pub(super) attr_create: unsafe extern "C" fn(*mut Handle) -> Status,
    pub(super) attr_set_scratchpad_mode: unsafe extern "C" fn(Handle, c_int) -> Status,
    pub(super) pd_create:
        unsafe extern "C" fn(*mut Handle, *const c_void, Handle, Handle, Handle) -> Status,
    pub(super) pd_destroy: DestroyFn,
    pub(super) pd_query: unsafe extern "C" fn(Handle, c_int, c_int, *mut c_void) -> Status,
    pub(super) pd_query_md: unsafe extern "C" fn(Handle, c_int, c_int) -> *const MemDesc,
    pub(super) reorder_pd_create: unsafe extern "C" fn(
        *mut Handle,
        *const MemDesc,
        Handle,
        *const MemDesc,
        Handle,
        Handle,
    ) -> Status,
    pub(super) memory_create:
        unsafe extern "C" fn(*mut Handle, *const MemDesc, Handle, *mut c_void) -> Status,
    pub(super) memory_destroy: DestroyFn,
    pub(super) primitive_create: unsafe extern "C" fn(*mut Handle, Handle) -> Status,
    pub(super) primitive_destroy: DestroyFn,
    pub(super) primitive_execute:
        unsafe extern "C" fn(Handle, Handle, c_int, *const ExecArg) -> Status,
    pub(super) sgemm: Sgemm,
}

/// What [`Api::load`] found in a library.
pub(super) struct Loaded {
    pub(super) api: Api,
    pub(super) version: (i32, i32, i32),
    /// oneDNN runs on OpenMP (and so on the process's libgomp).
    pub(super) openmp: bool,
}

impl Api {
    /// The entry points of `lib` (loaded from `path`), after checking that it is oneDNN 2.x.
    pub(super) fn load(lib: &Library, path: &str) -> std::result::Result<Loaded, String> {
        macro_rules! sym {
            ($name:literal) => {
                // SAFETY: the symbol is declared with the signature of oneDNN 2.x's C API,
                // checked against the version below before anything is called.
                *unsafe { lib.get($name) }.map_err(|e| {
                    format!(
                        "{path} lacks {} ({e}); oneDNN 2.x is required",
                        String::from_utf8_lossy(&$name[..$name.len() - 1])
                    )
                })?
            };
        }
        let version_fn: unsafe extern "C" fn() -> *const Version = sym!(b"dnnl_version\0");
        // SAFETY: dnnl_version returns a pointer to a static struct.
        let v = unsafe { &*version_fn() };
        if v.major != 2 {
            return Err(format!(
                "{path} is oneDNN {}.{}.{}; the convolution speaks the 2.x C API (Debian's libdnnl-dev 2.6/2.7)",
                v.major, v.minor, v.patch
            ));
        }
        let api = Api {
            engine_create: sym!(b"dnnl_engine_create\0"),
            stream_create: sym!(b"dnnl_stream_create\0"),
            stream_wait: sym!(b"dnnl_stream_wait\0"),
            md_init_by_tag: sym!(b"dnnl_memory_desc_init_by_tag\0"),
            md_equal: sym!(b"dnnl_memory_desc_equal\0"),
            md_get_size: sym!(b"dnnl_memory_desc_get_size\0"),
            conv_fwd_init: sym!(b"dnnl_dilated_convolution_forward_desc_init\0"),
            conv_bwd_data_init: sym!(b"dnnl_dilated_convolution_backward_data_desc_init\0"),
            conv_bwd_weights_init: sym!(b"dnnl_dilated_convolution_backward_weights_desc_init\0"),
            attr_create: sym!(b"dnnl_primitive_attr_create\0"),
            attr_set_scratchpad_mode: sym!(b"dnnl_primitive_attr_set_scratchpad_mode\0"),
            pd_create: sym!(b"dnnl_primitive_desc_create\0"),
            pd_destroy: sym!(b"dnnl_primitive_desc_destroy\0"),
            pd_query: sym!(b"dnnl_primitive_desc_query\0"),
            pd_query_md: sym!(b"dnnl_primitive_desc_query_md\0"),
            reorder_pd_create: sym!(b"dnnl_reorder_primitive_desc_create\0"),
            memory_create: sym!(b"dnnl_memory_create\0"),
            memory_destroy: sym!(b"dnnl_memory_destroy\0"),
            primitive_create: sym!(b"dnnl_primitive_create\0"),
            primitive_destroy: sym!(b"dnnl_primitive_destroy\0"),
            primitive_execute: sym!(b"dnnl_primitive_execute\0"),
            sgemm: sym!(b"dnnl_sgemm\0"),
        };
        Ok(Loaded {
            api,
            version: (v.major, v.minor, v.patch),
            openmp: v.cpu_runtime == k::RUNTIME_OMP,
        })
    }
}

fn status_name(s: Status) -> &'static str {
    match s {
        1 => "out of memory",
        2 => "invalid arguments",
        3 => "unimplemented",
        4 => "iterator ends",
        5 => "runtime error",
        6 => "not required",
        _ => "unknown status",
    }
}

/// `Ok` for `dnnl_success`, else an error naming the call and oneDNN's status.
pub(super) fn check(s: Status, what: &str) -> Result<()> {
    if s == k::SUCCESS {
        Ok(())
    } else {
        Err(Error::OneDnn(format!(
            "{what} failed: {} ({s})",
            status_name(s)
        )))
    }
}

/// `v` as oneDNN's fixed-size dimension array.
pub(super) fn dims(v: &[usize]) -> Dims {
    let mut d = [0; 12];
    for (o, i) in d.iter_mut().zip(v) {
        *o = *i as Dim;
    }
    d
}
