//! cuDNN descriptors, owned and destroyed on drop: one generic wrapper ([`Desc`]) for the four
//! kinds the convolution and pooling use (tensor, filter, convolution, pooling), each created
//! only after the loader has made sure cuDNN is usable, so a missing or mismatched library is an
//! `Error::Cuda` naming it instead of a panic inside cuDNN.

use super::device::cuda_err;
use crate::{Error, Result};
use cudarc::cudnn::result::{self as dnn, CudnnError};
use cudarc::cudnn::sys;

/// `v` as cuDNN's `int`, or an error naming the op that asked.
pub(crate) fn cint(op: &'static str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::invalid(op, format!("size {v} exceeds cuDNN's limit")))
}

/// A cuDNN call's failure as `Error::Cuda`, naming what was asked.
pub(crate) fn dnn_err(what: &str, e: impl std::fmt::Debug) -> Error {
    cuda_err(format!("cuDNN {what}"), e)
}

/// What differs between cuDNN's descriptor types: the handle, and how one is made and freed.
pub(crate) trait Kind {
    type Raw: Copy;
    /// The kind's name in error messages.
    const WHAT: &'static str;
    fn create() -> std::result::Result<Self::Raw, CudnnError>;
    /// # Safety
    /// `raw` was made by [`Kind::create`] and is not used again.
    unsafe fn destroy(raw: Self::Raw);
}

/// A descriptor of kind `K`, destroyed on drop.
pub(crate) struct Desc<K: Kind>(pub(crate) K::Raw);

impl<K: Kind> Desc<K> {
    /// A fresh descriptor with `set` applied (`what` names it in errors).
    fn new(
        what: &str,
        set: impl FnOnce(K::Raw) -> std::result::Result<(), CudnnError>,
    ) -> Result<Self> {
        super::loader::ensure_cudnn()?;
        let d = Desc::<K>(K::create().map_err(|e| dnn_err(K::WHAT, e))?);
        set(d.0).map_err(|e| dnn_err(what, e))?;
        Ok(d)
    }
}

impl<K: Kind> Drop for Desc<K> {
    fn drop(&mut self) {
        // SAFETY: made by `K::create` in `Desc::new`, destroyed once, here.
        unsafe { K::destroy(self.0) }
    }
}

macro_rules! kind {
    ($kind:ident, $raw:ty, $what:literal, $create:path, $destroy:path) => {
        pub(crate) enum $kind {}
        impl Kind for $kind {
            type Raw = $raw;
            const WHAT: &'static str = $what;
            fn create() -> std::result::Result<$raw, CudnnError> {
                $create()
            }
            unsafe fn destroy(raw: $raw) {
                // SAFETY: forwarded to the caller's contract; a failure cannot be acted on.
                let _ = unsafe { $destroy(raw) };
            }
        }
    };
}

kind!(
    TensorKind,
    sys::cudnnTensorDescriptor_t,
    "tensor descriptor",
    dnn::create_tensor_descriptor,
    dnn::destroy_tensor_descriptor
);
kind!(
    FilterKind,
    sys::cudnnFilterDescriptor_t,
    "filter descriptor",
    dnn::create_filter_descriptor,
    dnn::destroy_filter_descriptor
);
kind!(
    ConvKind,
    sys::cudnnConvolutionDescriptor_t,
    "convolution descriptor",
    dnn::create_convolution_descriptor,
    dnn::destroy_convolution_descriptor
);
kind!(
    PoolKind,
    sys::cudnnPoolingDescriptor_t,
    "pooling descriptor",
    dnn::create_pooling_descriptor,
    sys::cudnnDestroyPoolingDescriptor
);

pub(crate) type TensorDesc = Desc<TensorKind>;
pub(crate) type FilterDesc = Desc<FilterKind>;
pub(crate) type ConvDesc = Desc<ConvKind>;
pub(crate) type PoolDesc = Desc<PoolKind>;

const NCHW: sys::cudnnTensorFormat_t = sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW;
const F32: sys::cudnnDataType_t = sys::cudnnDataType_t::CUDNN_DATA_FLOAT;

/// A 4-D f32 descriptor of `d` (`what` names it in errors), `set` given its handle and the sizes
/// as cuDNN's `int`s.
fn four_d<K: Kind>(
    what: &str,
    d: [usize; 4],
    set: impl FnOnce(K::Raw, [i32; 4]) -> std::result::Result<(), CudnnError>,
) -> Result<Desc<K>> {
    let c = |v| cint("conv2d", v);
    let dims = [c(d[0])?, c(d[1])?, c(d[2])?, c(d[3])?];
    Desc::new(&format!("{what} descriptor {d:?}"), |raw| set(raw, dims))
}

impl TensorDesc {
    /// A dense f32 NCHW tensor of shape `d`.
    pub(crate) fn nchw(d: [usize; 4]) -> Result<Self> {
        // SAFETY: the handle was just created.
        four_d("tensor", d, |t, dims| unsafe {
            dnn::set_tensor4d_descriptor(t, NCHW, F32, dims)
        })
    }
}

impl FilterDesc {
    /// A dense f32 filter `[o, c / groups, kh, kw]`.
    pub(crate) fn oihw(d: [usize; 4]) -> Result<Self> {
        // SAFETY: the handle was just created.
        four_d("filter", d, |f, dims| unsafe {
            dnn::set_filter4d_descriptor(f, F32, NCHW, dims)
        })
    }
}

impl ConvDesc {
    /// A 2-D f32 cross-correlation with symmetric padding `pad`, `stride`, `dilation` and
    /// `groups`, computed in `math`.
    pub(crate) fn cross_correlation(
        pad: (usize, usize),
        stride: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
        math: sys::cudnnMathType_t,
    ) -> Result<Self> {
        let c = |v| cint("conv2d", v);
        let (p, s, d) = (
            (c(pad.0)?, c(pad.1)?),
            (c(stride.0)?, c(stride.1)?),
            (c(dilation.0)?, c(dilation.1)?),
        );
        let groups = c(groups)?;
        let conv = Self::new("convolution descriptor", |cd| {
            // SAFETY: `cd` was just created.
            unsafe {
                dnn::set_convolution2d_descriptor(
                    cd,
                    p.0,
                    p.1,
                    s.0,
                    s.1,
                    d.0,
                    d.1,
                    sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                    F32,
                )
            }
        })?;
        // SAFETY: `conv.0` is a live descriptor.
        unsafe { dnn::set_convolution_group_count(conv.0, groups) }
            .map_err(|e| dnn_err("group count", e))?;
        conv.set_math(math)?;
        Ok(conv)
    }

    /// The math type cuDNN may use for this convolution.
    pub(crate) fn set_math(&self, m: sys::cudnnMathType_t) -> Result<()> {
        // SAFETY: `self.0` is a live descriptor.
        unsafe { dnn::set_convolution_math_type(self.0, m) }.map_err(|e| dnn_err("math type", e))
    }
}

impl PoolDesc {
    /// A 2-D pooling of `mode` over `kernel` windows moved by `stride` (padding is applied by
    /// the caller, so cuDNN's is 0). NaNs are not propagated.
    pub(crate) fn new_2d(
        mode: sys::cudnnPoolingMode_t,
        kernel: (usize, usize),
        stride: (usize, usize),
    ) -> Result<Self> {
        let c = |v| cint("pool2d", v);
        let window = [c(kernel.0)?, c(kernel.1)?];
        let strides = [c(stride.0)?, c(stride.1)?];
        Self::new("pooling descriptor", |d| {
            // SAFETY: `d` was just created; the arrays hold two entries as `nb_dims` says.
            unsafe {
                dnn::set_pooling_descriptor(
                    d,
                    mode,
                    sys::cudnnNanPropagation_t::CUDNN_NOT_PROPAGATE_NAN,
                    2,
                    &window,
                    &[0, 0],
                    &strides,
                )
            }
        })
    }
}
