//! oneDNN's sgemm (`dnnl_sgemm`): the products of the convolutions built on it
//! ([`super::small_map`], [`super::winograd`]) run at 120–140 GFLOP/s on two AVX2 cores, where
//! oneDNN's direct convolutions on the same shapes do not get there.

use super::ffi::{check, Dim};
use super::{thread_budget, OneDnn};
use crate::cpu::gemm::{Gemm, MatMut, MatRef};
use crate::Result;
use std::ffi::c_char;

impl OneDnn {
    /// `c = alpha·op(a)·op(b) + beta·c` (row-major; see [`Gemm`]) on the OpenMP threads this
    /// caller may use ([`thread_budget`]). Panics when an operand is smaller than its matrix.
    pub fn sgemm(&self, g: Gemm, a: MatRef<'_>, b: MatRef<'_>, mut c: MatMut<'_>) -> Result<()> {
        if !g.prepare(&a, &b, &mut c) {
            return Ok(());
        }
        self.set_threads(thread_budget());
        let t = |x: bool| (if x { b'T' } else { b'N' }) as c_char;
        // SAFETY: `prepare` checked that every element the sizes and leading dimensions reach
        // lies inside the three slices; `c` is a distinct mutable borrow, so it aliases neither
        // input.
        let st = unsafe {
            (self.api.sgemm)(
                t(a.trans),
                t(b.trans),
                g.m as Dim,
                g.n as Dim,
                g.k as Dim,
                g.alpha,
                a.data.as_ptr(),
                a.ld as Dim,
                b.data.as_ptr(),
                b.ld as Dim,
                g.beta,
                c.data.as_mut_ptr(),
                c.ld as Dim,
            )
        };
        check(st, "dnnl_sgemm")
    }
}
