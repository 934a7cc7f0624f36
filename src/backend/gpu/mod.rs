//! The GPU backend, vendor-neutral: weights uploaded once per model (`weights`), a decode's
//! work enqueued on one stream per context (`forward`), kernels compiled at run time from
//! `kernels/` (`source`) for the device's exact architecture.
//!
//! Vendor APIs appear only in `cuda.rs` (cudarc, dynamically loaded: a build needs no CUDA
//! and a machine without it reports `Error::Device`) and `hip.rs` (hip-runtime-sys, linked
//! against ROCm's libamdhip64; hipRTC looked up at run time). Everything else talks to
//! the two traits below through raw device addresses (`DevPtr`) wrapped in owning buffers
//! (`DevBuf`, freed on drop). Every size in bytes is computed with checked arithmetic before
//! it reaches the driver.
//!
//! Work is stream-ordered and asynchronous; the host waits only when it reads results back
//! (`GpuStream::download`), so a decode synchronizes once, to read its logits.

#[cfg(feature = "cuda")]
mod cuda;
#[cfg(feature = "gpu-emulator")]
mod emulator;
mod forward;
mod fused;
#[cfg(feature = "hip")]
mod hip;
mod kernels;
mod mmq;
mod moe;
#[cfg(any(feature = "cuda", feature = "hip", feature = "gpu-emulator", test))]
mod source;
mod timing;
mod weights;

use std::ffi::c_void;
use std::sync::Arc;

pub(crate) use forward::{GpuForward, Kept};
pub(crate) use weights::GpuWeights;

use crate::{Error, Result};

/// A device address.
pub type DevPtr = u64;

/// Which compute backend a model runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// A GPU when one works (CUDA, then HIP), else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
    Hip,
}

/// A compiled kernel of the loaded module (the driver's handle).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(
    not(any(feature = "cuda", feature = "hip", feature = "gpu-emulator")),
    allow(dead_code)
)]
pub struct Func(pub(crate) u64);

/// Grid and block sizes of a launch, and its dynamic shared memory.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub grid: (u32, u32, u32),
    pub block: u32,
    pub shared: u32,
}

/// One GPU: memory, the kernel module, streams.
pub trait GpuDevice: Send + Sync {
    /// "CUDA 0: NVIDIA H100 80GB HBM3 (sm_90)", for logs and `bench`.
    fn describe(&self) -> String;
    /// Bytes free and total on the device.
    fn mem_info(&self) -> Result<(usize, usize)>;
    fn alloc(&self, bytes: usize) -> Result<DevPtr>;
    /// # Safety
    /// `p` came from `alloc` on this device, is freed once, and no queued work still uses it.
    unsafe fn free(&self, p: DevPtr);
    fn function(&self, name: &str) -> Result<Func>;
    fn new_stream(&self) -> Result<Box<dyn GpuStream>>;
    /// Whether `GpuStream::gemm_f16` works here (a vendor BLAS is there).
    fn has_gemm(&self) -> bool {
        true
    }
}

/// An in-order queue of work, with its own BLAS handle. Used by one thread at a time.
pub trait GpuStream: Send {
    /// Copies `src` to device memory at `dst` (the host buffer may be reused on return).
    ///
    /// # Safety
    /// `dst` addresses at least `src.len()` bytes of live device memory.
    unsafe fn upload(&mut self, dst: DevPtr, src: &[u8]) -> Result<()>;
    /// Waits for the queued work, then copies device memory at `src` into `dst`.
    ///
    /// # Safety
    /// `src` addresses at least `dst.len()` bytes of live device memory.
    unsafe fn download(&mut self, dst: &mut [u8], src: DevPtr) -> Result<()>;
    /// # Safety
    /// Both ranges are live device memory of `bytes` bytes.
    unsafe fn copy(&mut self, dst: DevPtr, src: DevPtr, bytes: usize) -> Result<()>;
    /// # Safety
    /// `args` point at values laid out as the kernel's parameters, and every device address
    /// among them covers what the kernel reads and writes with these dims.
    unsafe fn launch(&mut self, f: Func, dims: Dims, args: &mut [*mut c_void]) -> Result<()>;
    /// `c[n][m] (f32) = sum_k a[m][k] * b[n][k]` with `a`, `b` f16, row-major: the products of
    /// `n` activation rows with the `m` weight rows of `a`.
    ///
    /// # Safety
    /// The three buffers hold those many elements.
    unsafe fn gemm_f16(
        &mut self,
        m: usize,
        n: usize,
        k: usize,
        a: DevPtr,
        b: DevPtr,
        c: DevPtr,
    ) -> Result<()>;
    /// Page-locks `bytes` of host memory at `ptr`, so that downloads into it go straight
    /// there instead of through the driver's staging copy; returns whether the driver did
    /// (best effort: where it refuses, downloads work as before). It stays pinned until
    /// `unpin_host` or the stream's drop.
    ///
    /// # Safety
    /// The memory stays allocated until it is unpinned.
    unsafe fn pin_host(&mut self, ptr: *mut u8, bytes: usize) -> bool;
    /// Undoes `pin_host` at `ptr` (nothing when this stream did not pin it).
    fn unpin_host(&mut self, ptr: *mut u8);
    /// Waits for everything queued.
    fn synchronize(&mut self) -> Result<()>;
    /// Starts recording this stream's launches and device copies into a graph instead of
    /// running them. Until `end_capture`: no uploads, downloads, synchronization, allocation
    /// or frees on this thread.
    fn begin_capture(&mut self) -> Result<()>;
    /// Ends the recording `begin_capture` started, also after a failed launch (the recording
    /// is then discarded): the instantiated graph, owned by this stream until `drop_graph`
    /// or the stream's drop.
    fn end_capture(&mut self) -> Result<GraphId>;
    /// Queues the graph's work again, with the arguments it was recorded with.
    fn replay(&mut self, g: GraphId) -> Result<()>;
    /// Frees a graph once the work queued before has finished with it.
    fn drop_graph(&mut self, g: GraphId);
}

/// A graph recorded on, and owned by, one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphId(pub u64);

/// Executable graphs by id, for the streams' implementations.
pub struct Graphs<T> {
    next: u64,
    live: Vec<(u64, T)>,
}

impl<T> Default for Graphs<T> {
    fn default() -> Graphs<T> {
        Graphs {
            next: 0,
            live: Vec::new(),
        }
    }
}

impl<T: Copy> Graphs<T> {
    pub fn add(&mut self, exec: T) -> GraphId {
        self.next += 1;
        self.live.push((self.next, exec));
        GraphId(self.next)
    }

    pub fn get(&self, g: GraphId) -> Result<T> {
        self.live
            .iter()
            .find(|(id, _)| *id == g.0)
            .map(|&(_, e)| e)
            .ok_or_else(|| Error::Internal(format!("no graph {}", g.0)))
    }

    pub fn take(&mut self, g: GraphId) -> Option<T> {
        let i = self.live.iter().position(|(id, _)| *id == g.0)?;
        Some(self.live.swap_remove(i).1)
    }

    /// Every graph, emptying the set (for the stream's drop).
    pub fn drain(&mut self) -> Vec<T> {
        self.live.drain(..).map(|(_, e)| e).collect()
    }
}

/// Device memory owned by the host: freed when dropped.
pub struct DevBuf {
    ptr: DevPtr,
    bytes: usize,
    dev: Arc<dyn GpuDevice>,
}

impl DevBuf {
    pub fn new(dev: &Arc<dyn GpuDevice>, bytes: usize) -> Result<DevBuf> {
        let ptr = dev.alloc(bytes.max(1))?;
        Ok(DevBuf {
            ptr,
            bytes,
            dev: dev.clone(),
        })
    }

    /// A buffer of `count` elements of `elem` bytes each.
    pub fn array(
        dev: &Arc<dyn GpuDevice>,
        count: usize,
        elem: usize,
        what: &str,
    ) -> Result<DevBuf> {
        let bytes = count
            .checked_mul(elem)
            .ok_or_else(|| Error::Overflow(format!("device buffer for {what}")))?;
        DevBuf::new(dev, bytes)
    }

    pub fn ptr(&self) -> DevPtr {
        self.ptr
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The address `offset` bytes in, checked to leave `len` bytes inside the buffer.
    pub fn at(&self, offset: usize, len: usize) -> Result<DevPtr> {
        match offset.checked_add(len) {
            Some(end) if end <= self.bytes => Ok(self.ptr + offset as u64),
            _ => Err(Error::Internal(format!(
                "device range {offset}+{len} outside a buffer of {} bytes",
                self.bytes
            ))),
        }
    }
}

impl Drop for DevBuf {
    fn drop(&mut self) {
        // SAFETY: the pointer came from this device's alloc and is freed only here; owners
        // synchronize their stream before dropping buffers that queued work uses.
        unsafe { self.dev.free(self.ptr) }
    }
}

/// Opens GPU `index` of the backend asked for. `Ok(None)`: the CPU (asked for, or `Auto`
/// with no GPU that works). A GPU asked for by name that cannot be used is `Error::Device`
/// saying why.
pub fn open(backend: Backend, index: usize) -> Result<Option<Arc<dyn GpuDevice>>> {
    #[cfg(feature = "gpu-emulator")]
    if let (Backend::Cuda | Backend::Auto, Some(warp)) = (backend, emulator::requested()) {
        return match emulator::EmuDevice::open(index, warp) {
            Ok(d) => Ok(Some(Arc::new(d) as Arc<dyn GpuDevice>)),
            Err(e) if backend == Backend::Auto => {
                crate::log::debug(&format!("no emulated GPU, using the CPU: {e}"));
                Ok(None)
            }
            Err(e) => Err(e),
        };
    }
    match backend {
        Backend::Cpu => Ok(None),
        Backend::Cuda => open_cuda(index).map(Some),
        Backend::Hip => open_hip(index).map(Some),
        Backend::Auto => match open_cuda(index) {
            Ok(d) => Ok(Some(d)),
            Err(cuda) => match open_hip(index) {
                Ok(d) => Ok(Some(d)),
                Err(hip) => {
                    crate::log::debug(&format!("no GPU, using the CPU: {cuda}; {hip}"));
                    Ok(None)
                }
            },
        },
    }
}

#[cfg(feature = "hip")]
fn open_hip(index: usize) -> Result<Arc<dyn GpuDevice>> {
    hip::HipDevice::open(index).map(|d| Arc::new(d) as Arc<dyn GpuDevice>)
}

#[cfg(not(feature = "hip"))]
fn open_hip(_index: usize) -> Result<Arc<dyn GpuDevice>> {
    Err(Error::Device(
        "this build of rocmforge has no HIP backend (build with --features hip, against \
         ROCm's libamdhip64)"
            .into(),
    ))
}

#[cfg(feature = "cuda")]
fn open_cuda(index: usize) -> Result<Arc<dyn GpuDevice>> {
    cuda::CudaDevice::open(index).map(|d| Arc::new(d) as Arc<dyn GpuDevice>)
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_index: usize) -> Result<Arc<dyn GpuDevice>> {
    Err(Error::Device(
        "this build of rocmforge has no CUDA backend (build with --features cuda)".into(),
    ))
}
