//! Memory for oneDNN calls: a pool that recycles temporaries (scratchpads, buffers in oneDNN's
//! own layouts, the sgemm convolutions' work buffers) and output buffers that are never
//! zero-filled because oneDNN writes them completely.
//!
//! A fresh multi-megabyte buffer costs a page fault per 4 KiB on first touch, taken inside
//! oneDNN's kernels: the weight-gradient scratchpad of a 512×512 3×3 conv alone is tens of
//! megabytes (it holds a partial gradient per thread).

use super::OneDnn;
use crate::storage::CpuBuf;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Mutex;

/// A 64-byte-aligned chunk: scratchpads and intermediate buffers in oneDNN's own layouts are
/// allocated in these, aligned as oneDNN aligns its own allocations.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct Line([u8; 64]);

/// Room for `bytes` bytes, written and read only by oneDNN (never through Rust references, so
/// it is left uninitialised instead of paying for a memset per call).
pub(super) fn aligned_buffer(bytes: usize) -> Vec<Line> {
    Vec::with_capacity(bytes.div_ceil(64).max(1))
}

/// Temporaries recycled between calls.
#[derive(Default)]
pub(super) struct BufferPool {
    free: Mutex<PoolLists>,
}

#[derive(Default)]
struct PoolLists {
    /// Free buffers by length in lines.
    by_len: HashMap<usize, Vec<Vec<Line>>>,
    bytes: usize,
}

/// At most this many bytes wait in the pool; at most this many buffers of one length.
const POOL_MAX_BYTES: usize = 512 << 20;
const POOL_MAX_PER_LEN: usize = 4;

impl BufferPool {
    /// Room for `bytes` bytes (contents unspecified: only oneDNN writes and reads it).
    pub(super) fn take(&self, bytes: usize) -> Pooled<'_> {
        let lines = bytes.div_ceil(64).max(1);
        let mut f = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let reused = f.by_len.get_mut(&lines).and_then(Vec::pop);
        if reused.is_some() {
            f.bytes -= lines * 64;
        }
        drop(f);
        Pooled {
            buf: reused.unwrap_or_else(|| aligned_buffer(bytes)),
            pool: self,
        }
    }
}

/// A pooled buffer, returned to its pool on drop.
pub(super) struct Pooled<'a> {
    buf: Vec<Line>,
    pool: &'a BufferPool,
}

impl Pooled<'_> {
    pub(super) fn ptr(&mut self) -> *mut c_void {
        self.buf.as_mut_ptr() as *mut c_void
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let lines = buf.capacity();
        let mut f = self.pool.free.lock().unwrap_or_else(|e| e.into_inner());
        if f.bytes + lines * 64 > POOL_MAX_BYTES {
            return;
        }
        let list = f.by_len.entry(lines).or_default();
        if list.len() < POOL_MAX_PER_LEN {
            list.push(buf);
            f.bytes += lines * 64;
        }
    }
}

/// A pooled `f32` buffer for the convolutions built on oneDNN's sgemm ([`super::winograd`],
/// [`super::small_map`]), recycled like oneDNN's own temporaries. Its contents are whatever the
/// previous user left (zeros when freshly allocated): callers write before they read.
pub struct Scratch<'a> {
    buf: Pooled<'a>,
    len: usize,
}

impl std::ops::Deref for Scratch<'_> {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        // SAFETY: `OneDnn::scratch` initialised at least `len` floats of the 64-byte-aligned
        // buffer, which lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.buf.buf.as_ptr() as *const f32, self.len) }
    }
}

impl std::ops::DerefMut for Scratch<'_> {
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.buf.buf.as_mut_ptr() as *mut f32, self.len) }
    }
}

impl OneDnn {
    /// A buffer of `len` floats from the pool of temporaries (contents unspecified).
    pub fn scratch(&self, len: usize) -> Scratch<'_> {
        let mut buf = self.pool.take(len * 4);
        let lines = buf.buf.capacity();
        // Buffers that oneDNN used are uninitialised (length 0); make every line a valid float
        // once, so that the buffer can be handed out as a slice. Recycled ones keep their length.
        if buf.buf.len() < lines {
            buf.buf.resize(lines, Line([0; 64]));
        }
        Scratch { buf, len }
    }
}

/// An output that oneDNN writes completely: allocated without zero-filling (a pass over the
/// whole buffer, and its page faults, for nothing); its length is set once it has been written.
pub(super) struct OutBuf(Vec<f32>, usize);

impl OutBuf {
    pub(super) fn new(n: usize) -> Self {
        OutBuf(Vec::with_capacity(n), n)
    }
    pub(super) fn ptr(&mut self) -> *mut c_void {
        self.0.as_mut_ptr() as *mut c_void
    }
    /// # Safety
    /// Every one of the `n` elements must have been written (through [`OutBuf::ptr`]).
    pub(super) unsafe fn written(mut self) -> CpuBuf {
        // SAFETY: the caller guarantees the first `n` elements are initialised; capacity ≥ n.
        unsafe { self.0.set_len(self.1) };
        CpuBuf::new(std::mem::take(&mut self.0))
    }
}
