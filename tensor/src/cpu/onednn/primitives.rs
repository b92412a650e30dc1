//! Building and running oneDNN objects: memory descriptors, primitives (owned, destroyed on
//! drop), memory objects over caller buffers, streams, and the reorders that move an argument
//! between a tensor's layout and the one a primitive chose.

use super::ffi::{check, dims, k, DestroyFn, ExecArg, Handle, MemDesc, OpDesc};
use super::pool::Pooled;
use super::OneDnn;
use crate::layout::{Layout, BLOCK};
use crate::ops::conv::Stage;
use crate::Result;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;
use std::sync::Arc;

/// A primitive with its descriptor. The handles are owned and destroyed with it.
pub(super) struct Prim {
    pub(super) pd: Handle,
    prim: Handle,
    scratch_bytes: usize,
    pd_destroy: DestroyFn,
    primitive_destroy: DestroyFn,
}

// SAFETY: oneDNN primitives and primitive descriptors are immutable after creation and safe to
// use from several threads at once (each execute call here supplies its own scratchpad).
unsafe impl Send for Prim {}
unsafe impl Sync for Prim {}

impl Drop for Prim {
    fn drop(&mut self) {
        // SAFETY: both handles were created by oneDNN, are owned by this value and not used after.
        unsafe {
            (self.primitive_destroy)(self.prim);
            (self.pd_destroy)(self.pd);
        }
    }
}

/// A memory object over caller-owned data, destroyed on drop.
pub(super) struct Mem {
    handle: Handle,
    destroy: DestroyFn,
}

impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: created by dnnl_memory_create and owned here.
        unsafe {
            (self.destroy)(self.handle);
        }
    }
}

/// An argument as oneDNN wants it: a memory object, and the buffer behind it when that buffer is
/// a temporary in oneDNN's preferred layout.
pub(super) struct Bound<'a> {
    pub(super) mem: Mem,
    tmp: Option<(Pooled<'a>, *const MemDesc)>,
}

/// A reorder between a tensor-side layout and the layout oneDNN chose for one argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct ReorderKey {
    stage: Stage,
    query: c_int,
    user: Layout,
    into_onednn: bool,
}

impl ReorderKey {
    /// Into the layout `stage`'s primitive chose for argument `query`, from the tensor's `user`.
    pub(super) fn into_onednn(stage: Stage, query: c_int, user: Layout) -> Self {
        ReorderKey {
            stage,
            query,
            user,
            into_onednn: true,
        }
    }
    /// Out of the layout `stage`'s primitive chose for argument `query`, into the tensor's `user`.
    pub(super) fn out_of_onednn(stage: Stage, query: c_int, user: Layout) -> Self {
        ReorderKey {
            stage,
            query,
            user,
            into_onednn: false,
        }
    }
}

/// The reorders a primitive's arguments have needed so far, compiled once each.
pub(super) type Reorders = std::sync::Mutex<std::collections::HashMap<ReorderKey, Arc<Prim>>>;

/// The tag of [`Layout::Blocked16`] (`nChw{BLOCK}c`).
fn blocked_tag() -> c_int {
    if BLOCK == 8 {
        k::TAG_NCHW8C
    } else {
        k::TAG_NCHW16C
    }
}

impl OneDnn {
    /// The memory descriptor primitive `p` chose for argument `what`.
    pub(super) fn md_of(&self, p: &Prim, what: c_int) -> *const MemDesc {
        // SAFETY: `pd` is a live primitive descriptor; the returned pointer lives as long as it.
        unsafe { (self.api.pd_query_md)(p.pd, what, 0) }
    }

    /// The name of the implementation oneDNN picked for `p` (`"?"` when it does not say).
    pub(super) fn impl_info(&self, p: &Prim) -> String {
        let mut s: *const c_char = ptr::null();
        // SAFETY: the impl_info_str query writes a pointer to a NUL-terminated string owned by pd.
        let st = unsafe {
            (self.api.pd_query)(
                p.pd,
                k::QUERY_IMPL_INFO_STR,
                0,
                &mut s as *mut *const c_char as *mut c_void,
            )
        };
        if st != k::SUCCESS || s.is_null() {
            return "?".into();
        }
        // SAFETY: checked non-null above; oneDNN returns a valid C string.
        unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
    }

    /// Whether two live descriptors describe the same memory layout.
    pub(super) fn same_md(&self, a: *const MemDesc, b: *const MemDesc) -> bool {
        // SAFETY: the callers pass live descriptors.
        unsafe { (self.api.md_equal)(a, b) != 0 }
    }

    /// Bytes of a buffer laid out as the live descriptor `md`.
    pub(super) fn md_size(&self, md: *const MemDesc) -> usize {
        // SAFETY: the callers pass a live descriptor.
        unsafe { (self.api.md_get_size)(md) }
    }

    /// An f32 descriptor of `shape` in the layout `tag`.
    pub(super) fn md(&self, shape: &[usize], tag: c_int) -> Result<Box<MemDesc>> {
        let mut md = MemDesc::zeroed();
        let d = dims(shape);
        // SAFETY: md has room for a dnnl_memory_desc_t; dims holds `shape.len()` entries.
        check(
            unsafe {
                (self.api.md_init_by_tag)(&mut *md, shape.len() as c_int, d.as_ptr(), k::F32, tag)
            },
            "dnnl_memory_desc_init_by_tag",
        )?;
        Ok(md)
    }

    /// The descriptor of an activation `[n, c, h, w]` in a tensor layout.
    pub(super) fn activation_md(&self, shape: [usize; 4], layout: Layout) -> Result<Box<MemDesc>> {
        let tag = match layout {
            Layout::Plain => k::TAG_ABCD,
            Layout::Blocked16 => blocked_tag(),
        };
        self.md(&shape, tag)
    }

    fn prim(&self, pd: Handle) -> Result<Prim> {
        let mut prim: Handle = ptr::null_mut();
        // SAFETY: pd is a live primitive descriptor.
        let st = unsafe { (self.api.primitive_create)(&mut prim, pd) };
        if st != k::SUCCESS {
            // SAFETY: pd is owned here and not used after.
            unsafe { (self.api.pd_destroy)(pd) };
            check(st, "dnnl_primitive_create")?;
        }
        // SAFETY: pd is live; the scratchpad query returns a descriptor owned by pd.
        let scratch_bytes = unsafe {
            let md = (self.api.pd_query_md)(pd, k::Q_SCRATCHPAD, 0);
            if md.is_null() {
                0
            } else {
                (self.api.md_get_size)(md)
            }
        };
        Ok(Prim {
            pd,
            prim,
            scratch_bytes,
            pd_destroy: self.api.pd_destroy,
            primitive_destroy: self.api.primitive_destroy,
        })
    }

    /// The primitive of an operation descriptor `od` initialised by a `*_desc_init` call;
    /// `hint` is the forward primitive's descriptor for a backward one (else null).
    pub(super) fn pd_from_op(&self, od: &OpDesc, hint: Handle, what: &str) -> Result<Prim> {
        let mut pd: Handle = ptr::null_mut();
        // SAFETY: od was initialised by a *_desc_init call; attr and engine are live.
        check(
            unsafe {
                (self.api.pd_create)(
                    &mut pd,
                    od as *const OpDesc as *const c_void,
                    self.attr,
                    self.engine,
                    hint,
                )
            },
            what,
        )?;
        self.prim(pd)
    }

    fn stream(&self) -> Result<usize> {
        if let Some(s) = self.streams.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(s);
        }
        let mut s: Handle = ptr::null_mut();
        // SAFETY: engine is live.
        check(
            unsafe { (self.api.stream_create)(&mut s, self.engine, k::STREAM_DEFAULT) },
            "dnnl_stream_create",
        )?;
        Ok(s as usize)
    }

    /// A memory object over `data`, laid out as `md`.
    pub(super) fn memory(&self, md: *const MemDesc, data: *mut c_void) -> Result<Mem> {
        let mut m: Handle = ptr::null_mut();
        // SAFETY: md is a live descriptor; data points to at least md_get_size(md) bytes (the
        // callers size every buffer from the descriptor or the tensor shape it describes).
        check(
            unsafe { (self.api.memory_create)(&mut m, md, self.engine, data) },
            "dnnl_memory_create",
        )?;
        Ok(Mem {
            handle: m,
            destroy: self.api.memory_destroy,
        })
    }

    /// Runs a primitive with its own scratchpad and waits for it.
    pub(super) fn execute(&self, p: &Prim, args: &[(c_int, &Mem)]) -> Result<()> {
        let mut scratch = self.pool.take(p.scratch_bytes);
        let mut exec: Vec<ExecArg> = args
            .iter()
            .map(|(a, m)| ExecArg {
                arg: *a,
                memory: m.handle,
            })
            .collect();
        let scratch_mem;
        if p.scratch_bytes > 0 {
            let md = self.md_of(p, k::Q_SCRATCHPAD);
            scratch_mem = self.memory(md, scratch.ptr())?;
            exec.push(ExecArg {
                arg: k::ARG_SCRATCHPAD,
                memory: scratch_mem.handle,
            });
        }
        let stream = self.stream()?;
        // SAFETY: all memory objects in `exec` wrap buffers that outlive this call; the stream is
        // used by this thread only until it is returned to the pool.
        let res = unsafe {
            let st = (self.api.primitive_execute)(
                p.prim,
                stream as Handle,
                exec.len() as c_int,
                exec.as_ptr(),
            );
            check(st, "dnnl_primitive_execute")
                .and_then(|_| check((self.api.stream_wait)(stream as Handle), "dnnl_stream_wait"))
        };
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(stream);
        res
    }

    /// The reorder `key` from `from` to `to`, compiled on first use and kept in `reorders`.
    fn reorder(
        &self,
        reorders: &Reorders,
        key: ReorderKey,
        from: *const MemDesc,
        to: *const MemDesc,
    ) -> Result<Arc<Prim>> {
        let mut map = reorders.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get(&key) {
            return Ok(p.clone());
        }
        let mut pd: Handle = ptr::null_mut();
        // SAFETY: both descriptors are live; engine and attr are live.
        check(
            unsafe {
                (self.api.reorder_pd_create)(&mut pd, from, self.engine, to, self.engine, self.attr)
            },
            "dnnl_reorder_primitive_desc_create",
        )?;
        let p = Arc::new(self.prim(pd)?);
        map.insert(key, p.clone());
        Ok(p)
    }

    /// Memory for argument `chosen` over `data` (laid out as `user`) when the two layouts agree,
    /// else over a pooled temporary in `chosen`'s layout.
    fn bind(&self, chosen: *const MemDesc, user: &MemDesc, data: *mut c_void) -> Result<Bound<'_>> {
        if self.same_md(chosen, user) {
            return Ok(Bound {
                mem: self.memory(chosen, data)?,
                tmp: None,
            });
        }
        let mut tmp = self.pool.take(self.md_size(chosen));
        let mem = self.memory(chosen, tmp.ptr())?;
        Ok(Bound {
            mem,
            tmp: Some((tmp, chosen)),
        })
    }

    /// `data` (in the layout `user` describes) as the argument `chosen` of the reorder key's
    /// stage and query, reordered into a temporary when the layouts differ.
    pub(super) fn bind_input(
        &self,
        reorders: &Reorders,
        key: ReorderKey,
        chosen: *const MemDesc,
        user: &MemDesc,
        data: &[f32],
    ) -> Result<Bound<'_>> {
        let bound = self.bind(chosen, user, data.as_ptr() as *mut c_void)?;
        if bound.tmp.is_some() {
            self.reorder_into(reorders, key, user, data, chosen, &bound.mem)?;
        }
        Ok(bound)
    }

    /// Reorders `data` (laid out as `user`) into `dst` (laid out as `chosen`).
    pub(super) fn reorder_into(
        &self,
        reorders: &Reorders,
        key: ReorderKey,
        user: &MemDesc,
        data: &[f32],
        chosen: *const MemDesc,
        dst: &Mem,
    ) -> Result<()> {
        let src = self.memory(user, data.as_ptr() as *mut c_void)?;
        let r = self.reorder(reorders, key, user, chosen)?;
        self.execute(&r, &[(k::ARG_SRC, &src), (k::ARG_DST, dst)])
    }

    /// Memory for output argument `chosen`: `out` itself when the layouts agree, else a temporary
    /// that [`Self::finish_output`] reorders into `out`.
    pub(super) fn bind_output(
        &self,
        chosen: *const MemDesc,
        user: &MemDesc,
        out: *mut c_void,
    ) -> Result<Bound<'_>> {
        self.bind(chosen, user, out)
    }

    /// Moves an output bound by [`Self::bind_output`] into `out` (laid out as `user`) when it
    /// was computed in a temporary.
    pub(super) fn finish_output(
        &self,
        reorders: &Reorders,
        key: ReorderKey,
        bound: Bound,
        user: &MemDesc,
        out: *mut c_void,
    ) -> Result<()> {
        let Some((_, chosen)) = &bound.tmp else {
            return Ok(());
        };
        let dst = self.memory(user, out)?;
        let r = self.reorder(reorders, key, *chosen, user)?;
        self.execute(&r, &[(k::ARG_SRC, &bound.mem), (k::ARG_DST, &dst)])
    }
}
