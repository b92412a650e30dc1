//! Device buffers and the caching allocator behind them.
//!
//! `cuMemAlloc`/`cuMemFree` synchronise and cost tens of microseconds; an unrolled ConvRNN
//! allocates thousands of activations per step. Freed buffers therefore go to per-device free
//! lists bucketed by size and are handed out again. Reuse without synchronisation is safe because
//! all work of a device runs on its one stream: a kernel that writes a recycled buffer is queued
//! after every kernel that used its previous owner.
//!
//! Buckets: requests round up to 256 elements (1 KiB) at least, then to the next size of the
//! form 2^k · {4, 5, 6, 7}/4, so at most 25 % of a buffer is slack and a handful of buckets cover
//! each power of two.

use super::device::{cuda_err, device, existing, guarded, Dev};
use crate::Result;
use cudarc::driver::{CudaSlice, DevicePtr};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const MIN_BUCKET: usize = 256;

/// The bucket (in elements) a request of `n` elements is served from.
pub(crate) fn bucket_len(n: usize) -> usize {
    if n <= MIN_BUCKET {
        return MIN_BUCKET;
    }
    // Largest power of two <= n, then quarter steps above it.
    let p = 1usize << (usize::BITS - 1 - n.leading_zeros());
    let q = (p / 4).max(1);
    n.div_ceil(q) * q
}

/// Free lists and byte counters of one device.
#[derive(Default)]
pub(crate) struct Pool {
    free: HashMap<usize, Vec<CudaSlice<f32>>>,
    live: usize,
    peak: usize,
    cached: usize,
}

impl Pool {
    fn take(&mut self, bucket: usize) -> Option<CudaSlice<f32>> {
        let s = self.free.get_mut(&bucket)?.pop()?;
        self.cached -= bucket * 4;
        Some(s)
    }
    fn note_live(&mut self, bytes: usize) {
        self.live += bytes;
        self.peak = self.peak.max(self.live);
    }
    /// Drops every cached buffer (the driver frees them in stream order).
    fn clear(&mut self) {
        self.free.clear();
        self.cached = 0;
    }
}

/// Counts allocations that reached the driver (for tests of the cache).
static DRIVER_ALLOCS: AtomicUsize = AtomicUsize::new(0);

/// Allocates `len` floats on `dev` (contents unspecified).
pub(crate) fn alloc(dev: &Arc<Dev>, len: usize) -> Result<CudaBuf> {
    if len == 0 {
        return Ok(CudaBuf {
            slice: None,
            len: 0,
            dev: dev.clone(),
        });
    }
    let bucket = bucket_len(len);
    let cached = {
        let mut pool = dev.pool.lock().unwrap_or_else(|e| e.into_inner());
        let s = pool.take(bucket);
        if s.is_some() {
            pool.note_live(bucket * 4);
        }
        s
    };
    let slice = match cached {
        Some(s) => s,
        None => {
            let fresh = guarded("allocating device memory", || {
                // SAFETY: the contents are unspecified until a kernel or copy writes them; every
                // caller overwrites the `len` elements it exposes before reading.
                match unsafe { dev.stream.alloc::<f32>(bucket) } {
                    Ok(s) => Ok(s),
                    Err(_) => {
                        // Out of memory (or fragmentation): give the cache back and retry once.
                        dev.pool.lock().unwrap_or_else(|e| e.into_inner()).clear();
                        dev.sync()?;
                        // SAFETY: as above.
                        unsafe { dev.stream.alloc::<f32>(bucket) }.map_err(|e| {
                            cuda_err(
                                format!(
                                    "allocating {} MiB on cuda:{} (after emptying the cache)",
                                    (bucket * 4) >> 20,
                                    dev.ordinal
                                ),
                                e,
                            )
                        })
                    }
                }
            })?;
            DRIVER_ALLOCS.fetch_add(1, Ordering::Relaxed);
            dev.pool
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .note_live(bucket * 4);
            fresh
        }
    };
    Ok(CudaBuf {
        slice: Some(slice),
        len,
        dev: dev.clone(),
    })
}

/// A device buffer of f32 on one CUDA device, returned to the device's cache when dropped.
pub struct CudaBuf {
    /// `None` only for empty buffers. The slice may be longer than `len` (its bucket).
    slice: Option<CudaSlice<f32>>,
    len: usize,
    dev: Arc<Dev>,
}

impl std::fmt::Debug for CudaBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaBuf(cuda:{}, {} floats)", self.dev.ordinal, self.len)
    }
}

impl Drop for CudaBuf {
    fn drop(&mut self) {
        if let Some(s) = self.slice.take() {
            let bucket = s.len();
            let mut pool = self.dev.pool.lock().unwrap_or_else(|e| e.into_inner());
            pool.live -= bucket * 4;
            pool.cached += bucket * 4;
            pool.free.entry(bucket).or_default().push(s);
        }
    }
}

impl CudaBuf {
    /// Copies `data` to a new buffer on device `ordinal`.
    pub fn from_host(ordinal: usize, data: &[f32]) -> Result<CudaBuf> {
        let dev = device(ordinal)?;
        let mut buf = alloc(&dev, data.len())?;
        buf.write_host(data)?;
        Ok(buf)
    }

    /// A zero-filled buffer of `len` floats on device `ordinal`.
    pub fn zeros(ordinal: usize, len: usize) -> Result<CudaBuf> {
        let dev = device(ordinal)?;
        Self::zeros_on(&dev, len)
    }

    pub(crate) fn zeros_on(dev: &Arc<Dev>, len: usize) -> Result<CudaBuf> {
        let mut buf = alloc(dev, len)?;
        buf.fill_zero()?;
        Ok(buf)
    }

    pub(crate) fn fill_zero(&mut self) -> Result<()> {
        let len = self.len;
        let stream = self.dev.stream.clone();
        if let Some(s) = self.slice.as_mut() {
            guarded("clearing device memory", || {
                stream
                    .memset_zeros(&mut s.slice_mut(0..len))
                    .map_err(|e| cuda_err("cuMemsetD8Async", e))
            })?;
        }
        Ok(())
    }

    /// Overwrites the buffer with `data` (same length).
    pub fn write_host(&mut self, data: &[f32]) -> Result<()> {
        if data.len() != self.len {
            return Err(crate::Error::invalid(
                "CudaBuf::write_host",
                format!("{} values for a buffer of {}", data.len(), self.len),
            ));
        }
        let len = self.len;
        let stream = self.dev.stream.clone();
        if let Some(s) = self.slice.as_mut() {
            guarded("copying to the device", || {
                stream
                    .memcpy_htod(data, &mut s.slice_mut(0..len))
                    .map_err(|e| cuda_err("cuMemcpyHtoDAsync", e))
            })?;
        }
        Ok(())
    }

    /// The values, copied to the host (waits for the queued work that produces them).
    pub fn to_host(&self) -> Result<Vec<f32>> {
        let mut out = vec![0.0f32; self.len];
        if let Some(s) = self.slice.as_ref() {
            guarded("copying to the host", || {
                self.dev
                    .stream
                    .memcpy_dtoh(&s.slice(0..self.len), &mut out)
                    .map_err(|e| cuda_err("cuMemcpyDtoHAsync", e))?;
                self.dev.sync()
            })?;
        }
        Ok(out)
    }

    /// Overwrites this buffer with `src` (same length; any CUDA device).
    pub fn copy_from(&mut self, src: &CudaBuf) -> Result<()> {
        if src.len != self.len {
            return Err(crate::Error::invalid(
                "CudaBuf::copy_from",
                format!("source has {} values, destination {}", src.len, self.len),
            ));
        }
        if src.dev.ordinal != self.dev.ordinal {
            let host = src.to_host()?;
            return self.write_host(&host);
        }
        let len = self.len;
        let stream = self.dev.stream.clone();
        if let (Some(d), Some(s)) = (self.slice.as_mut(), src.slice.as_ref()) {
            guarded("copying on the device", || {
                stream
                    .memcpy_dtod(&s.slice(0..len), &mut d.slice_mut(0..len))
                    .map_err(|e| cuda_err("cuMemcpyDtoDAsync", e))
            })?;
        }
        Ok(())
    }

    /// A copy of this buffer on the same device.
    pub fn try_clone(&self) -> Result<CudaBuf> {
        let mut out = alloc(&self.dev, self.len)?;
        out.copy_from(self)?;
        Ok(out)
    }

    /// The number of f32 values.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the buffer holds no value.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The device ordinal this buffer lives on.
    pub fn ordinal(&self) -> usize {
        self.dev.ordinal
    }
    pub(crate) fn dev(&self) -> &Arc<Dev> {
        &self.dev
    }

    /// The raw device address of element 0 (0 for an empty buffer). Kernels receive buffers as
    /// raw addresses; writes go only to buffers the caller holds mutably or just allocated.
    pub(crate) fn ptr(&self) -> u64 {
        match self.slice.as_ref() {
            Some(s) => {
                let (p, _no_event) = s.device_ptr(&self.dev.stream);
                p
            }
            None => 0,
        }
    }

    /// The raw device address of element 0 (0 when empty), for libraries that enqueue work on
    /// the device's stream themselves (NCCL). Reads and writes through it must be ordered on
    /// [`crate::cuda::stream`] and end before the buffer is dropped or borrowed elsewhere.
    pub fn device_address(&self) -> u64 {
        self.ptr()
    }

    /// The address of element `offset` (which must be `<= len`).
    pub(crate) fn ptr_at(&self, offset: usize) -> u64 {
        self.ptr() + (offset as u64) * 4
    }
}

/// Bytes of device `ordinal` held by live buffers (rounded up to their buckets). 0 for a device
/// that was never used.
pub fn live_bytes(ordinal: usize) -> usize {
    existing(ordinal)
        .map(|d| d.pool.lock().unwrap_or_else(|e| e.into_inner()).live)
        .unwrap_or(0)
}

/// Highest [`live_bytes`] since the device was opened or [`reset_peak`] was last called.
pub fn peak_bytes(ordinal: usize) -> usize {
    existing(ordinal)
        .map(|d| d.pool.lock().unwrap_or_else(|e| e.into_inner()).peak)
        .unwrap_or(0)
}

/// Starts a new peak measurement from the current live size.
pub fn reset_peak(ordinal: usize) {
    if let Some(d) = existing(ordinal) {
        let mut p = d.pool.lock().unwrap_or_else(|e| e.into_inner());
        p.peak = p.live;
    }
}

/// Bytes held in the free lists of device `ordinal`, ready for reuse.
pub fn cached_bytes(ordinal: usize) -> usize {
    existing(ordinal)
        .map(|d| d.pool.lock().unwrap_or_else(|e| e.into_inner()).cached)
        .unwrap_or(0)
}

/// Returns every cached (free) buffer of device `ordinal` to the driver.
pub fn empty_cache(ordinal: usize) -> Result<()> {
    if let Some(d) = existing(ordinal) {
        d.pool.lock().unwrap_or_else(|e| e.into_inner()).clear();
        d.sync()?;
    }
    Ok(())
}

/// How many allocations reached the driver since the process started (all devices).
pub fn driver_allocations() -> usize {
    DRIVER_ALLOCS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_buffers_are_reused_without_the_driver() {
        // The only test of the library that allocates device memory, so the counters are ours.
        let dev = match device(0) {
            Ok(d) => d,
            Err(e) => {
                println!("skipped: no CUDA device ({e})");
                return;
            }
        };
        let n = 12_345;
        let a = alloc(&dev, n).unwrap();
        let addr = a.ptr();
        assert!(live_bytes(0) >= bucket_len(n) * 4);
        drop(a);
        assert!(cached_bytes(0) >= bucket_len(n) * 4);
        let before = driver_allocations();
        // A slightly larger request falls in the same bucket and gets the same memory back.
        let b = CudaBuf::zeros(0, n + 10).unwrap();
        assert_eq!(b.ptr(), addr);
        assert_eq!(driver_allocations(), before);
        assert_eq!(b.to_host().unwrap(), vec![0.0; n + 10]);
        reset_peak(0);
        let c = alloc(&dev, 1 << 20).unwrap();
        assert!(peak_bytes(0) >= live_bytes(0));
        assert!(peak_bytes(0) >= (1 << 22) + bucket_len(n) * 4);
        drop((b, c));
        empty_cache(0).unwrap();
        assert_eq!(cached_bytes(0), 0);
        assert_eq!(live_bytes(0), 0);
        // Empty buffers never reach the driver.
        let before = driver_allocations();
        let e = CudaBuf::from_host(0, &[]).unwrap();
        assert!(e.is_empty() && e.to_host().unwrap().is_empty());
        assert_eq!(driver_allocations(), before);
    }

    #[test]
    fn buckets_round_up_by_at_most_a_quarter() {
        assert_eq!(bucket_len(0), 256);
        assert_eq!(bucket_len(256), 256);
        assert_eq!(bucket_len(257), 320);
        assert_eq!(bucket_len(1024), 1024);
        assert_eq!(bucket_len(1025), 1280);
        for n in [300usize, 777, 4097, 1 << 20, (1 << 20) + 1, 123_456_789] {
            let b = bucket_len(n);
            assert!(b >= n && (b - n) * 4 <= n, "{n} -> {b}");
        }
        // Few distinct buckets per power of two.
        let distinct: std::collections::HashSet<usize> = (4097..=8192).map(bucket_len).collect();
        assert_eq!(distinct.len(), 4);
    }
}
