//! The tensor handle: shape, layout, device, storage and (when recorded) the op that made it.

use crate::backend::BackendStorage;
use crate::backprop::{self, Node};
use crate::layout::{Layout, BLOCK};
use crate::storage::{dispatch, Storage};
use crate::{Device, Error, Result, Shape};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Identity of a tensor value; clones of a handle share it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u64);

impl TensorId {
    fn fresh() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        TensorId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// A storage shared by tensor handles, with a count of the writes it has seen: caches of data
/// derived from it (oneDNN's reordered weights) are valid for one count.
pub(crate) struct SharedStorage {
    data: RwLock<Storage>,
    writes: AtomicU64,
}

/// Which data a tensor holds, for caches keyed by it: the storage (held weakly, so that its
/// address is not reused while a cache entry lives) and its write count when stamped.
#[derive(Clone)]
pub struct StorageStamp {
    pub(crate) owner: std::sync::Weak<SharedStorage>,
    pub(crate) writes: u64,
}

impl StorageStamp {
    /// Whether `self` and `other` name the same storage in the same state.
    pub(crate) fn same_data(&self, other: &StorageStamp) -> bool {
        self.writes == other.writes && std::sync::Weak::ptr_eq(&self.owner, &other.owner)
    }
    /// Whether the storage still exists.
    pub(crate) fn alive(&self) -> bool {
        self.owner.strong_count() > 0
    }
    /// The storage's address: a key that stays unique while the stamp lives.
    pub(crate) fn key(&self) -> usize {
        self.owner.as_ptr() as *const () as usize
    }
}

pub(crate) struct Inner {
    id: TensorId,
    shape: Shape,
    layout: Layout,
    device: Device,
    storage: Arc<SharedStorage>,
    pub(crate) node: Option<Node>,
    variable: bool,
}

/// A dense f32 tensor. Cloning is cheap (a reference count); the data is shared.
#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<Inner>);

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor({}, {:?}, {}{})",
            self.shape(),
            self.layout(),
            self.device(),
            if self.tracks_grad() { ", grad" } else { "" }
        )
    }
}

impl Tensor {
    // ----- construction -------------------------------------------------------------------

    pub(crate) fn from_parts(
        storage: Storage,
        shape: Shape,
        layout: Layout,
        device: Device,
        node: Option<Node>,
        variable: bool,
    ) -> Tensor {
        Tensor(Arc::new(Inner {
            id: TensorId::fresh(),
            shape,
            layout,
            device,
            storage: Arc::new(SharedStorage {
                data: RwLock::new(storage),
                writes: AtomicU64::new(0),
            }),
            node,
            variable,
        }))
    }

    /// A tensor with no recorded history from a storage of the right size.
    pub fn from_storage(storage: Storage, shape: Shape, layout: Layout, device: Device) -> Tensor {
        Self::from_parts(storage, shape, layout, device, None, false)
    }

    /// The result of an op: records `backward` on the tape when gradients are enabled and any
    /// input tracks gradients, otherwise a plain tensor.
    pub fn from_op<F>(
        storage: Storage,
        shape: Shape,
        layout: Layout,
        device: Device,
        name: &'static str,
        inputs: &[&Tensor],
        backward: F,
    ) -> Tensor
    where
        F: Fn(&backprop::BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
    {
        let node = if backprop::is_grad_enabled() && inputs.iter().any(|t| t.tracks_grad()) {
            Some(Node::new(name, inputs, backward))
        } else {
            None
        };
        Self::from_parts(storage, shape, layout, device, node, false)
    }

    /// `self` (a freshly computed, untracked result) with `backward` recorded as the op that
    /// made it from `inputs`, when gradients are enabled and any input tracks gradients.
    pub fn with_history<F>(self, name: &'static str, inputs: &[&Tensor], backward: F) -> Tensor
    where
        F: Fn(&backprop::BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
    {
        if !(backprop::is_grad_enabled() && inputs.iter().any(|t| t.tracks_grad())) {
            return self;
        }
        Tensor(Arc::new(Inner {
            id: TensorId::fresh(),
            shape: self.0.shape.clone(),
            layout: self.0.layout,
            device: self.0.device,
            storage: self.0.storage.clone(),
            node: Some(Node::new(name, inputs, backward)),
            variable: false,
        }))
    }

    /// A host vector as a tensor on `device`, in the plain layout.
    pub fn from_vec(data: Vec<f32>, shape: impl Into<Shape>, device: Device) -> Result<Tensor> {
        let shape = shape.into();
        if data.len() != shape.elem_count() {
            return Err(Error::DataLength {
                len: data.len(),
                expected: shape.elem_count(),
                shape,
            });
        }
        let storage = Storage::from_host(device, data)?;
        Ok(Self::from_storage(storage, shape, Layout::Plain, device))
    }

    /// A tensor of `shape` on `device` with every value `value`.
    ///
    /// # Errors
    /// [`Error::CudaNotCompiled`] or [`Error::Cuda`] when `device` cannot hold it.
    pub fn full(value: f32, shape: impl Into<Shape>, device: Device) -> Result<Tensor> {
        let shape = shape.into();
        Self::from_vec(vec![value; shape.elem_count()], shape, device)
    }
    /// A tensor of zeros (see [`Tensor::full`]).
    pub fn zeros(shape: impl Into<Shape>, device: Device) -> Result<Tensor> {
        Self::full(0.0, shape, device)
    }
    /// A tensor of ones (see [`Tensor::full`]).
    pub fn ones(shape: impl Into<Shape>, device: Device) -> Result<Tensor> {
        Self::full(1.0, shape, device)
    }
    /// A rank-0 tensor holding `value` (see [`Tensor::full`]).
    pub fn scalar(value: f32, device: Device) -> Result<Tensor> {
        Self::from_vec(vec![value], Shape::scalar(), device)
    }
    /// Zeros with the shape, layout and device of `self`.
    pub fn zeros_like(&self) -> Result<Tensor> {
        Self::zeros(self.shape().clone(), self.device())?.to_layout(self.layout())
    }
    /// Ones with the shape, layout and device of `self`.
    pub fn ones_like(&self) -> Result<Tensor> {
        Self::ones(self.shape().clone(), self.device())?.to_layout(self.layout())
    }

    // ----- metadata ------------------------------------------------------------------------

    /// This tensor's identity: clones share it, every op result gets a new one. Gradients are
    /// keyed by it.
    pub fn id(&self) -> TensorId {
        self.0.id
    }
    /// The logical shape (NCHW for activations, whatever the [`Layout`]).
    pub fn shape(&self) -> &Shape {
        &self.0.shape
    }
    /// The dimensions of [`Tensor::shape`].
    pub fn dims(&self) -> &[usize] {
        self.0.shape.dims()
    }
    /// The number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.shape.rank()
    }
    /// The number of elements.
    pub fn elem_count(&self) -> usize {
        self.0.shape.elem_count()
    }
    /// How the values are ordered in memory.
    pub fn layout(&self) -> Layout {
        self.0.layout
    }
    /// Where the values live.
    pub fn device(&self) -> Device {
        self.0.device
    }
    /// A leaf whose gradient [`Tensor::backward`] reports.
    pub fn is_variable(&self) -> bool {
        self.0.variable
    }
    /// Whether ops on this tensor are recorded for autodiff.
    pub fn tracks_grad(&self) -> bool {
        self.0.variable || self.0.node.is_some()
    }
    pub(crate) fn node(&self) -> Option<&Node> {
        self.0.node.as_ref()
    }

    // ----- storage access -----------------------------------------------------------------

    /// Read access to the buffer, in this tensor's layout. Ops and kernels use it; others should
    /// prefer [`Tensor::to_vec`]. Holding the guard blocks [`Tensor::storage_mut`] on this data (and
    /// on every tensor sharing it).
    pub fn storage(&self) -> RwLockReadGuard<'_, Storage> {
        // A poisoned lock means a kernel panicked mid-write; the data is still well-formed f32s.
        self.0
            .storage
            .data
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }
    /// Write access to the buffer, shared by every clone and view of this tensor. Writing is not
    /// recorded for autodiff (for optimiser updates and loading, under [`crate::no_grad`]) and
    /// invalidates caches keyed by a [`StorageStamp`] of this data.
    pub fn storage_mut(&self) -> RwLockWriteGuard<'_, Storage> {
        let guard = self
            .0
            .storage
            .data
            .write()
            .unwrap_or_else(|e| e.into_inner());
        // Counted under the lock, so a stamp taken while holding a read guard names exactly the
        // data that guard sees.
        self.0.storage.writes.fetch_add(1, Ordering::AcqRel);
        guard
    }

    /// The identity of this tensor's data as it is now (see [`StorageStamp`]). Take it while
    /// holding [`Tensor::storage`]'s guard when the data read under that guard is cached under it.
    pub fn storage_stamp(&self) -> StorageStamp {
        StorageStamp {
            owner: Arc::downgrade(&self.0.storage),
            writes: self.0.storage.writes.load(Ordering::Acquire),
        }
    }

    /// Runs `f` on the host data (in this tensor's layout). Errors for non-CPU tensors.
    pub fn with_cpu<R>(&self, op: &'static str, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
        Ok(f(self.storage().host(op)?))
    }

    /// The values in plain row-major order, copied to the host.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        let t = self.to_layout_untracked(Layout::Plain)?;
        let s = t.storage();
        s.to_host()
    }

    /// The single value of a one-element tensor.
    pub fn to_scalar(&self) -> Result<f32> {
        if self.elem_count() != 1 {
            return Err(Error::ShapeMismatch {
                op: "to_scalar",
                expected: "a tensor with one element".into(),
                got: self.shape().clone(),
            });
        }
        Ok(self.to_vec()?[0])
    }

    /// Overwrites this tensor's data with `src`'s (same shape; any layout or device). Used by
    /// optimisers and checkpoint loading; not recorded on the tape.
    pub fn assign(&self, src: &Tensor) -> Result<()> {
        if src.shape() != self.shape() {
            return Err(Error::ShapeMismatch {
                op: "assign",
                expected: self.shape().to_string(),
                got: src.shape().clone(),
            });
        }
        let src = src
            .to_device_untracked(self.device())?
            .to_layout_untracked(self.layout())?;
        if Arc::ptr_eq(&src.0.storage, &self.0.storage) {
            return Ok(());
        }
        let s = src.storage();
        let mut d = self.storage_mut();
        dispatch!("assign", (db = &mut *d, sb = &*s) => db.copy_from(sb))
    }

    /// Applies `f` to the host data in place (CPU tensors only). Not recorded on the tape.
    pub fn update_cpu(&self, f: impl FnOnce(&mut [f32])) -> Result<()> {
        f(self.storage_mut().host_mut("update_cpu")?);
        Ok(())
    }

    // ----- graph handling ------------------------------------------------------------------

    /// The same data, cut from the graph.
    pub fn detach(&self) -> Tensor {
        Tensor(Arc::new(Inner {
            id: TensorId::fresh(),
            shape: self.0.shape.clone(),
            layout: self.0.layout,
            device: self.0.device,
            storage: self.0.storage.clone(),
            node: None,
            variable: false,
        }))
    }

    /// A leaf variable sharing this tensor's data: gradients flow to it and stop there.
    pub fn into_variable(self) -> Tensor {
        Tensor(Arc::new(Inner {
            id: TensorId::fresh(),
            shape: self.0.shape.clone(),
            layout: self.0.layout,
            device: self.0.device,
            storage: self.0.storage.clone(),
            node: None,
            variable: true,
        }))
    }

    /// Gradients of this scalar with respect to every variable it depends on.
    pub fn backward(&self) -> Result<backprop::Gradients> {
        backprop::backward(self, None)
    }

    /// Backpropagates `grad` (same shape as `self`) from a non-scalar output.
    pub fn backward_with_grad(&self, grad: &Tensor) -> Result<backprop::Gradients> {
        backprop::backward(self, Some(grad))
    }

    /// Checks that `other` is on the same device as `self`.
    pub fn same_device(&self, other: &Tensor, op: &'static str) -> Result<()> {
        if self.device() != other.device() {
            return Err(Error::DeviceMismatch {
                op,
                lhs: self.device(),
                rhs: other.device(),
            });
        }
        Ok(())
    }

    // ----- layout and device movement ------------------------------------------------------

    /// The tensor in `layout` (recorded; the gradient is converted back).
    pub fn to_layout(&self, layout: Layout) -> Result<Tensor> {
        if layout == self.layout() {
            return Ok(self.clone());
        }
        let out = self.to_layout_untracked(layout)?;
        let back = self.layout();
        Ok(out.with_history("to_layout", &[self], move |ctx| {
            Ok(vec![Some(ctx.grad.to_layout(back)?)])
        }))
    }

    /// The tensor in the plain layout.
    pub fn plain(&self) -> Result<Tensor> {
        self.to_layout(Layout::Plain)
    }

    /// Whether a tensor of this shape may use [`Layout::Blocked16`].
    pub fn can_block(shape: &Shape) -> bool {
        shape.rank() == 4 && shape.dim(1).is_multiple_of(BLOCK)
    }

    fn to_layout_untracked(&self, layout: Layout) -> Result<Tensor> {
        if layout == self.layout() {
            return Ok(self.clone());
        }
        let (n, c, h, w) = self.shape().dims4("to_layout")?;
        if !c.is_multiple_of(BLOCK) {
            return Err(Error::invalid(
                "to_layout",
                format!("the blocked layout needs a channel count divisible by {BLOCK}, got {c}"),
            ));
        }
        let (s, from) = (self.storage(), self.layout());
        let storage = dispatch!("to_layout", (b = &*s) => {
            b.relayout([n, c, h, w], from, layout).map(Storage::from)
        })?;
        Ok(Tensor::from_storage(
            storage,
            self.shape().clone(),
            layout,
            self.device(),
        ))
    }

    /// A copy on `device` (recorded; the gradient moves back).
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        if device == self.device() {
            return Ok(self.clone());
        }
        let out = self.to_device_untracked(device)?;
        let back = self.device();
        Ok(out.with_history("to_device", &[self], move |ctx| {
            Ok(vec![Some(ctx.grad.to_device(back)?)])
        }))
    }

    fn to_device_untracked(&self, device: Device) -> Result<Tensor> {
        if device == self.device() {
            return Ok(self.clone());
        }
        // CUDA tensors are always plain; move in the plain layout.
        let data = self.to_vec()?;
        Tensor::from_vec(data, self.shape().clone(), device)
    }
}
