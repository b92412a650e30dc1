//! oneDNN's direct convolution: the forward, backward-data and backward-weights primitives of a
//! [`ConvGeom`] (every argument `format_tag_any`, so oneDNN picks its fastest layouts), and the
//! entry points that bind tensors in their own layouts to them.

use super::cache::{BoundWeights, ConvEntry, ConvKey};
use super::ffi::{check, dims, k, Dims, MemDesc, OpDesc};
use super::pool::OutBuf;
use super::primitives::{Bound, Prim, ReorderKey};
use super::{thread_budget, OneDnn};
use crate::layout::Layout;
use crate::ops::conv::Stage;
use crate::ops::conv::{Activation, ConvGeom, Weights};
use crate::storage::CpuBuf;
use crate::{Error, Result};
use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::Arc;

/// Below this many flops a convolution runs on one thread: an OpenMP fork/join and its barrier
/// cost more than they save (and much more when the cores are shared, because libgomp's threads
/// spin at the barrier while the thread they wait for is descheduled).
const SINGLE_THREAD_FLOPS: f64 = 4e6;

fn conv_threads(g: &ConvGeom) -> usize {
    if g.flops() < SINGLE_THREAD_FLOPS {
        1
    } else {
        thread_budget()
    }
}

/// Strides, dilations (oneDNN counts the gaps: dilation − 1) and (top,left)/(bottom,right)
/// padding.
fn conv_params(g: &ConvGeom) -> [Dims; 4] {
    [
        dims(&[g.sh, g.sw]),
        dims(&[g.dh - 1, g.dw - 1]),
        dims(&[g.pt, g.pl]),
        dims(&[g.pb, g.pr]),
    ]
}

impl Stage {
    /// The stage's part of its `*_desc_init` function's name, and its name in messages.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Stage::Forward => ("forward", "forward"),
            Stage::BackwardData => ("backward_data", "backward-data"),
            Stage::BackwardWeights => ("backward_weights", "backward-weights"),
        }
    }
}

/// Which product of an activation with the weights [`OneDnn::conv_product`] computes.
#[derive(Clone, Copy, Debug)]
pub enum WeightProduct<'a> {
    /// The forward convolution of x, plus the bias when there is one.
    Forward(Option<&'a [f32]>),
    /// The input gradient from dy, for a convolution with or without a bias (one primitive
    /// serves the three computations of a convolution, and the bias is part of its key).
    BackwardData {
        /// Whether the convolution has a bias (it selects the cached primitive, not the result).
        has_bias: bool,
    },
}

/// An output argument of one call: the caller's buffer, the memory oneDNN writes (the buffer
/// itself or a temporary in oneDNN's layout), and what reorders the temporary back.
struct Output<'a> {
    buf: OutBuf,
    bound: Bound<'a>,
    user: Box<MemDesc>,
    key: ReorderKey,
}

impl OneDnn {
    fn weights_md(&self, g: &ConvGeom, tag_any: bool) -> Result<Box<MemDesc>> {
        if g.groups == 1 {
            self.md(
                &[g.o, g.c, g.kh, g.kw],
                if tag_any { k::TAG_ANY } else { k::TAG_ABCD },
            )
        } else {
            self.md(
                &[g.groups, g.og(), g.cg(), g.kh, g.kw],
                if tag_any { k::TAG_ANY } else { k::TAG_ABCDE },
            )
        }
    }

    /// The primitive of `stage` for `g`; `hint` is the forward primitive of a backward stage.
    fn make(&self, g: &ConvGeom, stage: Stage, bias: bool, hint: Option<&Prim>) -> Result<Prim> {
        let src = self.md(&[g.n, g.c, g.h, g.w], k::TAG_ANY)?;
        let wei = self.weights_md(g, true)?;
        let dst = self.md(&[g.n, g.o, g.ho, g.wo], k::TAG_ANY)?;
        let b_md = self.md(&[g.o], k::TAG_A)?;
        let b: *const MemDesc = if bias { &*b_md } else { ptr::null() };
        let [st, di, pl, pr] = conv_params(g);
        let (st, di, pl, pr) = (st.as_ptr(), di.as_ptr(), pl.as_ptr(), pr.as_ptr());
        let (s, w, d) = (
            &*src as *const MemDesc,
            &*wei as *const MemDesc,
            &*dst as *const MemDesc,
        );
        let (kind, alg) = (k::FORWARD_TRAINING, k::CONV_DIRECT);
        let mut od = OpDesc::zeroed();
        let (api, od_ptr) = (&self.api, &mut *od as *mut OpDesc);
        // SAFETY: every descriptor is initialised; parameter arrays hold 2 spatial entries.
        let status = unsafe {
            match stage {
                Stage::Forward => {
                    (api.conv_fwd_init)(od_ptr, kind, alg, s, w, b, d, st, di, pl, pr)
                }
                Stage::BackwardData => {
                    (api.conv_bwd_data_init)(od_ptr, alg, s, w, d, st, di, pl, pr)
                }
                Stage::BackwardWeights => {
                    (api.conv_bwd_weights_init)(od_ptr, alg, s, w, b, d, st, di, pl, pr)
                }
            }
        };
        let (init, name) = stage.names();
        check(
            status,
            &format!("dnnl_dilated_convolution_{init}_desc_init"),
        )?;
        let hint = hint.map_or(ptr::null_mut(), |p| p.pd);
        self.pd_from_op(&od, hint, &format!("creating the {name} convolution"))
    }

    /// The cached primitives of `g`, with the calling thread's OpenMP count set to theirs.
    fn prepare(&self, g: &ConvGeom, bias: bool) -> Result<Arc<ConvEntry>> {
        let threads = conv_threads(g);
        self.set_threads(threads);
        let key = ConvKey {
            geom: *g,
            bias,
            threads,
        };
        self.conv_entry(key, || self.make(g, Stage::Forward, bias, None))
    }

    /// The backward primitive of `stage` of `e`.
    fn backward<'e>(
        &self,
        e: &'e ConvEntry,
        g: &ConvGeom,
        stage: Stage,
        bias: bool,
    ) -> Result<&'e Prim> {
        e.backward(stage, || self.make(g, stage, bias, Some(&e.fwd)))
            .map_err(|msg| Error::OneDnn(format!("{msg} (convolution {g:?})")))
    }

    /// Activation `a` of `shape` as argument `query` of `p`, the primitive of `stage`.
    fn bind_activation(
        &self,
        e: &ConvEntry,
        p: &Prim,
        (stage, query): (Stage, c_int),
        shape: [usize; 4],
        a: Activation<'_>,
    ) -> Result<Bound<'_>> {
        let user = self.activation_md(shape, a.layout)?;
        let key = ReorderKey::into_onednn(stage, query, a.layout);
        self.bind_input(&e.reorders, key, self.md_of(p, query), &user, a.data)
    }

    /// The plain weights `w` of `g` as the weights argument of `p`, the primitive of `stage`.
    fn bind_conv_weights(
        &self,
        e: &Arc<ConvEntry>,
        p: &Prim,
        stage: Stage,
        g: &ConvGeom,
        w: Weights<'_>,
    ) -> Result<BoundWeights> {
        let user = self.weights_md(g, false)?;
        self.bind_weights(e, (stage, self.md_of(p, k::Q_WEIGHTS)), &user, w)
    }

    /// A fresh output of `len` floats (laid out as `user`, a tensor in `layout`) for argument
    /// `query` of `p`, the primitive of `stage`.
    fn bind_out(
        &self,
        p: &Prim,
        (stage, query): (Stage, c_int),
        user: Box<MemDesc>,
        layout: Layout,
        len: usize,
    ) -> Result<Output<'_>> {
        let mut buf = OutBuf::new(len);
        let bound = self.bind_output(self.md_of(p, query), &user, buf.ptr())?;
        Ok(Output {
            buf,
            bound,
            user,
            key: ReorderKey::out_of_onednn(stage, query, layout),
        })
    }

    /// The output of an executed primitive, reordered into the caller's layout if it was
    /// computed in a temporary.
    fn finish(&self, e: &ConvEntry, mut o: Output) -> Result<CpuBuf> {
        let ptr = o.buf.ptr();
        self.finish_output(&e.reorders, o.key, o.bound, &o.user, ptr)?;
        // SAFETY: the primitive (or the reorder after it) wrote every element of the buffer.
        Ok(unsafe { o.buf.written() })
    }

    /// One of the two products of an activation `a` with the weights `w`: the forward
    /// convolution of x or the input gradient from dy (see [`WeightProduct`]). The result is in
    /// `layout`.
    pub fn conv_product(
        &self,
        g: &ConvGeom,
        which: WeightProduct<'_>,
        a: Activation<'_>,
        w: Weights<'_>,
        layout: Layout,
    ) -> Result<CpuBuf> {
        let (stage, has_bias, bias) = match which {
            WeightProduct::Forward(bias) => (Stage::Forward, bias.is_some(), bias),
            WeightProduct::BackwardData { has_bias } => (Stage::BackwardData, has_bias, None),
        };
        let e = self.prepare(g, has_bias)?;
        // The primitive, and (query, argument, shape) of the activation it reads and of its result.
        let (p, input, output) = if stage == Stage::Forward {
            let input = (k::Q_SRC, k::ARG_SRC, g.in_shape());
            (&e.fwd, input, (k::Q_DST, k::ARG_DST, g.out_shape()))
        } else {
            let p = self.backward(&e, g, stage, has_bias)?;
            let input = (k::Q_DIFF_DST, k::ARG_DIFF_DST, g.out_shape());
            (p, input, (k::Q_DIFF_SRC, k::ARG_DIFF_SRC, g.in_shape()))
        };
        let xs = self.bind_activation(&e, p, (stage, input.0), input.2, a)?;
        let ws = self.bind_conv_weights(&e, p, stage, g, w)?;
        let out_md = self.activation_md(output.2, layout)?;
        let len = output.2.iter().product();
        let out = self.bind_out(p, (stage, output.0), out_md, layout, len)?;
        let b_md;
        let bs = match bias {
            Some(b) => {
                b_md = self.md(&[g.o], k::TAG_A)?;
                Some(self.memory(&*b_md, b.as_ptr() as *mut c_void)?)
            }
            None => None,
        };
        let mut args = vec![
            (input.1, &xs.mem),
            (k::ARG_WEIGHTS, &ws.mem),
            (output.1, &out.bound.mem),
        ];
        args.extend(bs.as_ref().map(|b| (k::ARG_BIAS, b)));
        self.execute(p, &args)?;
        self.finish(&e, out)
    }

    /// Gradients of the weights (plain `[O, C/g, kh, kw]`) and, for a convolution with bias, of
    /// the bias.
    pub fn conv_backward_weights(
        &self,
        g: &ConvGeom,
        has_bias: bool,
        x: Activation<'_>,
        dy: Activation<'_>,
    ) -> Result<(CpuBuf, Option<CpuBuf>)> {
        if g.n == 0 {
            // Nothing to sum over; oneDNN may not touch the outputs at all.
            return Ok((
                CpuBuf::zeros(g.weight_len()),
                has_bias.then(|| CpuBuf::zeros(g.o)),
            ));
        }
        let e = self.prepare(g, has_bias)?;
        let st = Stage::BackwardWeights;
        let p = self.backward(&e, g, st, has_bias)?;
        let xs = self.bind_activation(&e, p, (st, k::Q_SRC), g.in_shape(), x)?;
        let dys = self.bind_activation(&e, p, (st, k::Q_DIFF_DST), g.out_shape(), dy)?;
        let w_md = self.weights_md(g, false)?;
        let dw = self.bind_out(
            p,
            (st, k::Q_DIFF_WEIGHTS),
            w_md,
            Layout::Plain,
            g.weight_len(),
        )?;
        let b_md = self.md(&[g.o], k::TAG_A)?;
        let mut db = has_bias.then(|| OutBuf::new(g.o));
        let dbm = db
            .as_mut()
            .map(|b| self.memory(&*b_md, b.ptr()))
            .transpose()?;
        let mut args = vec![
            (k::ARG_SRC, &xs.mem),
            (k::ARG_DIFF_DST, &dys.mem),
            (k::ARG_DIFF_WEIGHTS, &dw.bound.mem),
        ];
        args.extend(dbm.as_ref().map(|m| (k::ARG_DIFF_BIAS, m)));
        self.execute(p, &args)?;
        let dw = self.finish(&e, dw)?;
        // SAFETY: the primitive wrote every element of the bias gradient (an empty batch
        // returned zeros above).
        Ok((dw, db.map(|b| unsafe { b.written() })))
    }

    /// Whether oneDNN's forward convolution reads and writes [`Layout::Blocked16`] as is (no
    /// reorder on either side): true where its preferred block is the tensor's block size (16 on
    /// AVX-512 machines), false on AVX2, which blocks by 8.
    pub fn runs_blocked_natively(&self, g: &ConvGeom, has_bias: bool) -> Result<bool> {
        let e = self.prepare(g, has_bias)?;
        let x = self.activation_md(g.in_shape(), Layout::Blocked16)?;
        let y = self.activation_md(g.out_shape(), Layout::Blocked16)?;
        Ok(self.same_md(self.md_of(&e.fwd, k::Q_SRC), &*x)
            && self.same_md(self.md_of(&e.fwd, k::Q_DST), &*y))
    }

    /// The implementations oneDNN picked for forward, backward-data and backward-weights.
    pub fn conv_impl_info(&self, g: &ConvGeom, has_bias: bool) -> Result<[String; 3]> {
        let e = self.prepare(g, has_bias)?;
        let name = |stage: Stage| match e
            .backward(stage, || self.make(g, stage, has_bias, Some(&e.fwd)))
        {
            Ok(p) => self.impl_info(p),
            Err(msg) => format!("error: {msg}"),
        };
        Ok([
            self.impl_info(&e.fwd),
            name(Stage::BackwardData),
            name(Stage::BackwardWeights),
        ])
    }
}
