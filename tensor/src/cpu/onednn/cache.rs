//! What oneDNN calls reuse between calls: compiled convolution primitives per (geometry, bias,
//! thread count), and weights prepared for a primitive or a transform, per state of their
//! storage.
//!
//! A ConvRNN unroll runs the same convolution hundreds of times with the same weights, and
//! creating a primitive (JIT code generation) costs far more than running a small one; the
//! weights change only when the optimiser writes them, so a reorder into a primitive's layout (9 %
//! of oneDNN's time in `rgc_shallow` when it ran per call) or a Winograd filter transform is
//! done once per update.

use super::ffi::{k, MemDesc};
use super::pool::{aligned_buffer, Line};
use super::primitives::{Mem, Prim, ReorderKey, Reorders};
use super::OneDnn;
use crate::layout::Layout;
use crate::ops::conv::Stage;
use crate::ops::conv::{ConvGeom, Weights};
use crate::{Error, Result, StorageStamp};
use std::collections::HashMap;
use std::ffi::c_void;
use std::hash::Hash;
use std::sync::{Arc, Mutex, OnceLock};

/// The caches of one loaded library.
#[derive(Default)]
pub(super) struct Caches {
    convs: Mutex<HashMap<ConvKey, Arc<ConvEntry>>>,
    /// Weights in a primitive's chosen layout, by (storage, stage).
    weights: StampCache<Stage, CachedWeights>,
    /// Weights transformed for the sgemm-based convolutions (Winograd filters), by (storage,
    /// transform).
    derived: StampCache<DerivedKey, Arc<Vec<f32>>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct ConvKey {
    pub(super) geom: ConvGeom,
    pub(super) bias: bool,
    pub(super) threads: usize,
}

/// The primitives of one convolution: the forward one, made with the entry, and the backward
/// ones, made on first use (an inference-only run never needs them).
pub(super) struct ConvEntry {
    pub(super) fwd: Prim,
    bwd_data: OnceLock<std::result::Result<Prim, String>>,
    bwd_weights: OnceLock<std::result::Result<Prim, String>>,
    pub(super) reorders: Reorders,
}

impl ConvEntry {
    /// The backward primitive of `stage`, made by `make` on first use.
    pub(super) fn backward(
        &self,
        stage: Stage,
        make: impl FnOnce() -> Result<Prim>,
    ) -> std::result::Result<&Prim, &str> {
        let cell = match stage {
            Stage::BackwardData => &self.bwd_data,
            Stage::Forward | Stage::BackwardWeights => &self.bwd_weights,
        };
        cell.get_or_init(|| make().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(String::as_str)
    }
}

/// Above this many cached convolutions the cache is dropped and rebuilt (entries in use stay
/// alive through their `Arc`); only a workload of ever-changing shapes gets there.
const MAX_CACHED: usize = 512;

/// Values derived from a tensor's storage, keyed by the storage and a kind, and valid while the
/// storage's write count is the one they were made from. The storage is held weakly (through
/// the stamp), so its address is not reused while an entry lives; entries of dropped storages are
/// purged when a new one is added.
struct StampCache<K, V> {
    map: Mutex<HashMap<(usize, K), (StorageStamp, V)>>,
}

impl<K, V> Default for StampCache<K, V> {
    fn default() -> Self {
        StampCache {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Copy + Eq + Hash, V: Clone> StampCache<K, V> {
    /// The value of (`stamp`'s storage, `kind`) if it was made from the same data and `fits`.
    fn get(&self, stamp: &StorageStamp, kind: K, fits: impl FnOnce(&V) -> bool) -> Option<V> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&(stamp.key(), kind)) {
            Some((s, v)) if s.same_data(stamp) && fits(v) => Some(v.clone()),
            _ => None,
        }
    }

    fn insert(&self, stamp: &StorageStamp, kind: K, v: V) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (s, _)| s.alive());
        map.insert((stamp.key(), kind), (stamp.clone(), v));
    }
}

/// A weight tensor reordered into the layout of one primitive.
#[derive(Clone)]
struct CachedWeights {
    /// Keeps alive the primitive whose weight descriptor `md` points into.
    _entry: Arc<ConvEntry>,
    md: *const MemDesc,
    buf: Arc<Vec<Line>>,
}

/// Which transform of a weight tensor a [`OneDnn::derived_weights`] entry holds: a tag chosen by
/// the convolution that computes it, and the weight's shape `[O, C, kh, kw]` (one storage could be
/// read under another shape).
pub type DerivedKey = (u8, [usize; 4]);

/// The weights argument of one call: a memory object over the caller's data or a reordered
/// copy, kept alive until the call returns.
pub(super) struct BoundWeights {
    pub(super) mem: Mem,
    _cached: Option<Arc<Vec<Line>>>,
}

impl OneDnn {
    /// The cached primitives of `key`, made (forward by `make_fwd`) on first use.
    pub(super) fn conv_entry(
        &self,
        key: ConvKey,
        make_fwd: impl FnOnce() -> Result<Prim>,
    ) -> Result<Arc<ConvEntry>> {
        let mut convs = self.caches.convs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = convs.get(&key) {
            return Ok(e.clone());
        }
        if convs.len() >= MAX_CACHED {
            convs.clear();
        }
        let fwd = make_fwd().map_err(|e| {
            Error::OneDnn(format!(
                "{e} (convolution {:?}, bias {})",
                key.geom, key.bias
            ))
        })?;
        let e = Arc::new(ConvEntry {
            fwd,
            bwd_data: OnceLock::new(),
            bwd_weights: OnceLock::new(),
            reorders: Mutex::new(HashMap::new()),
        });
        convs.insert(key, e.clone());
        Ok(e)
    }

    /// The weights `w` (laid out as `user`) as the weights argument `chosen` of `stage`. The
    /// reordered copy is cached and reused while the weights' storage is unchanged.
    pub(super) fn bind_weights(
        &self,
        entry: &Arc<ConvEntry>,
        (stage, chosen): (Stage, *const MemDesc),
        user: &MemDesc,
        w: Weights<'_>,
    ) -> Result<BoundWeights> {
        let stamp = w.stamp;
        if self.same_md(chosen, user) {
            return Ok(BoundWeights {
                mem: self.memory(chosen, w.data.as_ptr() as *mut c_void)?,
                _cached: None,
            });
        }
        // A cached copy is valid for this primitive only if it was laid out for the same
        // descriptor (`c.md` lives as long as `c._entry`).
        let cached = self
            .caches
            .weights
            .get(stamp, stage, |c| self.same_md(chosen, c.md));
        let buf = match cached {
            Some(c) => c.buf,
            None => {
                let mut tmp = aligned_buffer(self.md_size(chosen));
                let mem = self.memory(chosen, tmp.as_mut_ptr() as *mut c_void)?;
                let key = ReorderKey::into_onednn(stage, k::Q_WEIGHTS, Layout::Plain);
                self.reorder_into(&entry.reorders, key, user, w.data, chosen, &mem)?;
                drop(mem);
                let buf = Arc::new(tmp);
                let c = CachedWeights {
                    _entry: entry.clone(),
                    md: chosen,
                    buf: buf.clone(),
                };
                self.caches.weights.insert(stamp, stage, c);
                buf
            }
        };
        Ok(BoundWeights {
            mem: self.memory(chosen, buf.as_ptr() as *mut c_void)?,
            _cached: Some(buf),
        })
    }

    /// `make`'s transform (into a zeroed buffer of `len` floats) of the weights with `stamp`,
    /// computed once per state of their storage: the unroll convolves with the same weights at
    /// every step, and they change only when the optimiser writes them.
    pub fn derived_weights(
        &self,
        stamp: &StorageStamp,
        key: DerivedKey,
        len: usize,
        make: impl FnOnce(&mut [f32]),
    ) -> Arc<Vec<f32>> {
        if let Some(data) = self.caches.derived.get(stamp, key, |d| d.len() == len) {
            return data;
        }
        let mut data = vec![0.0; len];
        make(&mut data);
        let data = Arc::new(data);
        self.caches.derived.insert(stamp, key, data.clone());
        data
    }
}
