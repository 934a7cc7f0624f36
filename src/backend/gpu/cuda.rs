//! NVIDIA GPUs through cudarc with dynamic loading: libcuda, libnvrtc and libcublas are
//! opened at run time, so a build needs no CUDA and a machine without it gets
//! `Error::Device` saying what is missing. This file and `hip.rs` are the only ones that name
//! vendor APIs.
//!
//! The module: NVRTC compiles `source::full_source()` for the device's exact architecture
//! (`sm_XY` machine code, no PTX JIT at load), cached on disk (`source`). One primary context
//! per device, made current on the calling thread by every entry point (the engine decodes on
//! its own thread, the loader on the caller's).

use std::ffi::{CString, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use cudarc::cublas::{result as blas, sys as blas_sys};
use cudarc::driver::{result as cu, sys};
use cudarc::nvrtc::{result as nvrtc, sys as nvrtc_sys};

use super::{DevPtr, Dims, Func, GpuDevice, GpuStream, GraphId, Graphs, source};
use crate::{Error, Result};

fn dev_err(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::Device(format!("{what}: {e:?}"))
}

pub struct CudaDevice {
    index: usize,
    device: sys::CUdevice,
    ctx: sys::CUcontext,
    module: sys::CUmodule,
    name: String,
    arch: String,
    /// Kernels launch with programmatic dependent launch (`CudaStream::pdl`).
    pdl: bool,
}

// SAFETY: the handles are plain driver handles, valid from any thread once the context is
// made current there (`bind`, called by every entry point).
unsafe impl Send for CudaDevice {}
// SAFETY: as above; the driver API is thread-safe for these calls.
unsafe impl Sync for CudaDevice {}

/// Whether a library cudarc would open dynamically is there (`present` is cudarc's check).
fn need(lib: &str, present: unsafe fn() -> bool) -> Result<()> {
    // SAFETY: the check only tries to open the library and closes it again.
    if unsafe { present() } {
        Ok(())
    } else {
        Err(Error::Device(format!(
            "the {lib} library was not found (is CUDA installed, and on LD_LIBRARY_PATH?)"
        )))
    }
}

impl CudaDevice {
    /// Opens device `index`: checks the libraries, retains its primary context and loads the
    /// kernel module (compiling it on first use). A panic inside cudarc (a symbol missing from
    /// an old driver) becomes `Error::Device`.
    pub fn open(index: usize) -> Result<CudaDevice> {
        need("CUDA driver (libcuda.so)", sys::is_culib_present)?;
        need("NVRTC (libnvrtc.so)", nvrtc_sys::is_culib_present)?;
        need("cuBLAS (libcublas.so)", blas_sys::is_culib_present)?;
        catch_unwind(AssertUnwindSafe(|| Self::open_inner(index))).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(Error::Device(format!("the CUDA libraries failed: {msg}")))
        })
    }

    fn open_inner(index: usize) -> Result<CudaDevice> {
        cu::init().map_err(|e| dev_err("cuInit", e))?;
        let count = cu::device::get_count().map_err(|e| dev_err("cuDeviceGetCount", e))?;
        if index >= count.max(0) as usize {
            return Err(Error::Device(format!(
                "CUDA device {index} was asked for; this machine has {count}"
            )));
        }
        let device = cu::device::get(index as i32).map_err(|e| dev_err("cuDeviceGet", e))?;
        // SAFETY: `device` is a valid device handle (just returned).
        let ctx = unsafe { cu::primary_ctx::retain(device) }
            .map_err(|e| dev_err("cuDevicePrimaryCtxRetain", e))?;
        let attr = |a| {
            // SAFETY: a valid device and attribute.
            unsafe { cu::device::get_attribute(device, a) }
                .map_err(|e| dev_err("cuDeviceGetAttribute", e))
        };
        use sys::CUdevice_attribute_enum as A;
        let (major, minor) = (
            attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        );
        let name = cu::device::get_name(device).unwrap_or_else(|_| "unknown".into());
        let mut d = CudaDevice {
            index,
            device,
            ctx,
            module: std::ptr::null_mut(),
            name,
            arch: format!("sm_{major}{minor}"),
            // griddepcontrol is sm_90 and later; RF_GPU_PDL=0 turns it off (to measure it:
            // docs/GPU.md, "Overlapped launches").
            pdl: major >= 9 && std::env::var("RF_GPU_PDL").map_or(true, |v| v != "0"),
        };
        d.bind()?;
        d.module = d.load_module()?;
        Ok(d)
    }

    fn bind(&self) -> Result<()> {
        // SAFETY: the context is retained for the device's lifetime.
        unsafe { cu::ctx::set_current(self.ctx) }.map_err(|e| dev_err("cuCtxSetCurrent", e))
    }

    fn nvrtc_version() -> String {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: two valid out-pointers.
        unsafe { nvrtc_sys::nvrtcVersion(&mut major, &mut minor) };
        format!("nvrtc-{major}.{minor}")
    }

    fn load_module(&self) -> Result<sys::CUmodule> {
        let src = source::full_source();
        let arch = source::variant(&self.arch);
        let cache = source::cache_path(&src, &arch, &Self::nvrtc_version(), "cubin");
        let image = match source::load_cached(&cache) {
            Some(image) => image,
            None => {
                let t = std::time::Instant::now();
                let image = self.compile(&src)?;
                crate::log::info(&format!(
                    "compiled the CUDA kernels for {} in {:.1} s",
                    self.arch,
                    t.elapsed().as_secs_f64()
                ));
                source::store_cached(&cache, &image);
                image
            }
        };
        // SAFETY: `image` is a cubin for this device's architecture, alive during the call.
        match unsafe { cu::module::load_data(image.as_ptr() as *const c_void) } {
            Ok(m) => Ok(m),
            Err(e) => {
                // A damaged cache file: compile afresh once.
                let image = self.compile(&src)?;
                source::store_cached(&cache, &image);
                // SAFETY: as above.
                unsafe { cu::module::load_data(image.as_ptr() as *const c_void) }
                    .map_err(|e2| dev_err(&format!("cuModuleLoadData (cached: {e:?})"), e2))
            }
        }
    }

    /// NVRTC: the source to a cubin for this architecture; the compiler's log on failure.
    fn compile(&self, src: &str) -> Result<Vec<u8>> {
        let csrc = CString::new(src).map_err(|_| Error::Internal("NUL in kernel source".into()))?;
        let prog = nvrtc::create_program(&csrc, Some(c"rocmforge.cu"))
            .map_err(|e| dev_err("nvrtcCreateProgram", e))?;
        let opts = [
            format!("--gpu-architecture={}", self.arch),
            "--std=c++17".into(),
            "-default-device".into(),
            format!("--fmad={}", source::contract()),
        ];
        // SAFETY: `prog` is a live program; the options are valid strings.
        let compiled = unsafe { nvrtc::compile_program(prog, &opts) };
        let result = match compiled {
            Ok(()) => {
                let mut size = 0usize;
                // SAFETY: live program, valid out-pointer; then a buffer of that size.
                unsafe {
                    nvrtc_sys::nvrtcGetCUBINSize(prog, &mut size)
                        .result()
                        .map_err(|e| dev_err("nvrtcGetCUBINSize", e))?;
                    let mut image = vec![0u8; size];
                    nvrtc_sys::nvrtcGetCUBIN(prog, image.as_mut_ptr() as *mut _)
                        .result()
                        .map_err(|e| dev_err("nvrtcGetCUBIN", e))?;
                    Ok(image)
                }
            }
            Err(e) => {
                // SAFETY: live program.
                let log = unsafe { nvrtc::get_program_log(prog) }
                    .map(|l| {
                        let bytes: Vec<u8> = l.iter().map(|&c| c as u8).collect();
                        String::from_utf8_lossy(&bytes).into_owned()
                    })
                    .unwrap_or_default();
                Err(Error::Device(format!(
                    "NVRTC could not compile the kernels for {} ({e:?}):\n{log}",
                    self.arch
                )))
            }
        };
        // SAFETY: destroyed once, after its last use.
        unsafe {
            let _ = nvrtc::destroy_program(prog);
        }
        result
    }
}

impl Drop for CudaDevice {
    fn drop(&mut self) {
        // SAFETY: every buffer and stream of this device holds an Arc to it, so nothing uses
        // the module or context any more.
        unsafe {
            if self.bind().is_ok() && !self.module.is_null() {
                let _ = cu::module::unload(self.module);
            }
            let _ = cu::primary_ctx::release(self.device);
        }
    }
}

impl GpuDevice for CudaDevice {
    fn describe(&self) -> String {
        format!("CUDA {}: {} ({})", self.index, self.name, self.arch)
    }

    fn mem_info(&self) -> Result<(usize, usize)> {
        self.bind()?;
        cu::mem_get_info().map_err(|e| dev_err("cuMemGetInfo", e))
    }

    fn alloc(&self, bytes: usize) -> Result<DevPtr> {
        self.bind()?;
        // SAFETY: a plain allocation of `bytes` (> 0: DevBuf asks for at least 1).
        unsafe { cu::malloc_sync(bytes) }.map_err(|e| match e.0 {
            sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => {
                Error::Oom(format!("{bytes} bytes of device memory on {}", self.name))
            }
            _ => dev_err(&format!("cuMemAlloc of {bytes} bytes"), e),
        })
    }

    unsafe fn free(&self, p: DevPtr) {
        if self.bind().is_ok() {
            // SAFETY: the caller's contract (allocated here, freed once, unused).
            let _ = unsafe { cu::free_sync(p) };
        }
    }

    fn function(&self, name: &str) -> Result<Func> {
        self.bind()?;
        let cname = CString::new(name).map_err(|_| Error::Internal("kernel name".into()))?;
        // SAFETY: a loaded module and a valid name.
        unsafe { cu::module::get_function(self.module, cname) }
            .map(|f| Func(f as u64))
            .map_err(|e| dev_err(&format!("kernel {name}"), e))
    }

    fn new_stream(&self) -> Result<Box<dyn GpuStream>> {
        self.bind()?;
        let stream = cu::stream::create(cu::stream::StreamKind::NonBlocking)
            .map_err(|e| dev_err("cuStreamCreate", e))?;
        let blas = match blas::create_handle() {
            Ok(h) => h,
            Err(e) => {
                // SAFETY: the stream was just created and is unused.
                unsafe {
                    let _ = cu::stream::destroy(stream);
                }
                return Err(dev_err("cublasCreate", e));
            }
        };
        let mut s = CudaStream {
            ctx: self.ctx,
            stream,
            blas,
            workspace: 0,
            graphs: Graphs::default(),
            pins: Vec::new(),
            refused: Vec::new(),
            pdl: self.pdl,
        };
        // SAFETY: a live handle and stream.
        unsafe { blas::set_stream(blas, stream as _) }
            .map_err(|e| dev_err("cublasSetStream", e))?;
        // A workspace of the stream's own, so that cuBLAS allocates nothing while a decode
        // is being recorded as a graph (the GEMMs of many-sequence steps are recorded too).
        s.workspace = self.alloc(BLAS_WORKSPACE)?;
        // SAFETY: a live handle; the workspace lives until the handle is destroyed (Drop).
        unsafe {
            blas_sys::cublasSetWorkspace_v2(blas, s.workspace as *mut c_void, BLAS_WORKSPACE)
        }
        .result()
        .map_err(|e| dev_err("cublasSetWorkspace", e))?;
        Ok(Box::new(s))
    }
}

/// cuBLAS's workspace per stream (what NVIDIA advises for Hopper).
const BLAS_WORKSPACE: usize = 32 << 20;

pub struct CudaStream {
    ctx: sys::CUcontext,
    stream: sys::CUstream,
    blas: blas_sys::cublasHandle_t,
    /// cuBLAS's workspace (`BLAS_WORKSPACE` bytes; 0 until allocated), freed after the handle.
    workspace: DevPtr,
    graphs: Graphs<sys::CUgraphExec>,
    /// Host memory this stream pinned (`pin_host`), and memory the driver refused to pin
    /// (not asked again until unpinned).
    pins: Vec<usize>,
    refused: Vec<usize>,
    /// Launch every kernel with programmatic stream serialization allowed: the next kernel's
    /// blocks may start once every block of the one before has begun (each kernel calls
    /// `rf_grid_go` first), and wait in `rf_grid_wait` until it has finished
    /// (kernels/compat.h). What overlaps is the launch itself and the products' requests
    /// for their weights; no kernel touches a buffer before its wait.
    pdl: bool,
}

// SAFETY: a stream and a BLAS handle may move between threads; `&mut self` keeps their use
// to one thread at a time.
unsafe impl Send for CudaStream {}

impl CudaStream {
    fn bind(&self) -> Result<()> {
        // SAFETY: the context outlives the stream (the device holds it).
        unsafe { cu::ctx::set_current(self.ctx) }.map_err(|e| dev_err("cuCtxSetCurrent", e))
    }

    /// `launch` with the programmatic-stream-serialization attribute (see `pdl`).
    ///
    /// # Safety
    /// `launch`'s contract.
    unsafe fn launch_pdl(&mut self, f: Func, d: Dims, args: &mut [*mut c_void]) -> Result<()> {
        use sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION as PSS;
        // SAFETY: an all-zero attribute value is a valid union value (every field is a plain
        // integer or struct of them).
        let mut value: sys::CUlaunchAttributeValue = unsafe { std::mem::zeroed() };
        value.programmaticStreamSerializationAllowed = 1;
        let mut attr = sys::CUlaunchAttribute {
            id: PSS,
            pad: [0; 4],
            value,
        };
        let cfg = sys::CUlaunchConfig {
            gridDimX: d.grid.0,
            gridDimY: d.grid.1,
            gridDimZ: d.grid.2,
            blockDimX: d.block,
            blockDimY: 1,
            blockDimZ: 1,
            sharedMemBytes: d.shared,
            hStream: self.stream,
            attrs: &mut attr,
            numAttrs: 1,
        };
        // SAFETY: the caller's contract on `f` and `args`; `cfg` and `attr` outlive the call.
        cu_check("cuLaunchKernelEx", unsafe {
            sys::cuLaunchKernelEx(
                &cfg,
                f.0 as sys::CUfunction,
                args.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        })
    }

    /// The first error a launch left behind surfaces at the next synchronizing call; this
    /// names the call that saw it.
    fn sync_err(&self, what: &str, e: impl std::fmt::Debug) -> Error {
        dev_err(&format!("{what} (or a kernel queued before it)"), e)
    }
}

impl Drop for CudaStream {
    fn drop(&mut self) {
        // SAFETY: waits for queued work, then destroys what this stream owns, once.
        unsafe {
            if self.bind().is_ok() {
                let _ = cu::stream::synchronize(self.stream);
                for g in self.graphs.drain() {
                    let _ = sys::cuGraphExecDestroy(g);
                }
                for p in self.pins.drain(..) {
                    let _ = sys::cuMemHostUnregister(p as *mut c_void);
                }
                let _ = blas::destroy_handle(self.blas);
                if self.workspace != 0 {
                    let _ = cu::free_sync(self.workspace);
                }
                let _ = cu::stream::destroy(self.stream);
            }
        }
    }
}

impl GpuStream for CudaStream {
    unsafe fn pin_host(&mut self, ptr: *mut u8, bytes: usize) -> bool {
        let p = ptr as usize;
        if bytes == 0 || self.pins.contains(&p) || self.refused.contains(&p) || self.bind().is_err()
        {
            return false;
        }
        // SAFETY: the caller keeps the range allocated until it is unpinned; the driver only
        // locks its pages.
        let r = unsafe { sys::cuMemHostRegister_v2(ptr as *mut c_void, bytes, 0) };
        let ok = r == sys::CUresult::CUDA_SUCCESS;
        if ok {
            self.pins.push(p);
        } else {
            self.refused.push(p);
        }
        ok
    }

    fn unpin_host(&mut self, ptr: *mut u8) {
        self.refused.retain(|&p| p != ptr as usize);
        if let Some(i) = self.pins.iter().position(|&p| p == ptr as usize) {
            self.pins.swap_remove(i);
            if self.bind().is_ok() {
                // SAFETY: `ptr` was pinned by this stream and is still allocated (the
                // caller's contract on `pin_host`).
                let _ = unsafe { sys::cuMemHostUnregister(ptr as *mut c_void) };
            }
        }
    }

    unsafe fn upload(&mut self, dst: DevPtr, src: &[u8]) -> Result<()> {
        if src.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: the caller's contract on `dst`; a pageable source is staged before the call
        // returns, so `src` may be reused afterwards.
        unsafe { cu::memcpy_htod_async(dst, src, self.stream) }
            .map_err(|e| self.sync_err("cuMemcpyHtoDAsync", e))
    }

    unsafe fn download(&mut self, dst: &mut [u8], src: DevPtr) -> Result<()> {
        self.bind()?;
        // SAFETY: the caller's contract on `src`; the stream is synchronized before `dst` is
        // read by anyone.
        unsafe {
            cu::memcpy_dtoh_async(dst, src, self.stream)
                .map_err(|e| self.sync_err("cuMemcpyDtoHAsync", e))?;
            cu::stream::synchronize(self.stream)
                .map_err(|e| self.sync_err("cuStreamSynchronize", e))
        }
    }

    unsafe fn copy(&mut self, dst: DevPtr, src: DevPtr, bytes: usize) -> Result<()> {
        self.bind()?;
        // SAFETY: the caller's contract.
        unsafe { cu::memcpy_dtod_async(dst, src, bytes, self.stream) }
            .map_err(|e| self.sync_err("cuMemcpyDtoDAsync", e))
    }

    unsafe fn launch(&mut self, f: Func, d: Dims, args: &mut [*mut c_void]) -> Result<()> {
        if self.pdl {
            // SAFETY: as below; the configuration and its one attribute live across the call.
            return unsafe { self.launch_pdl(f, d, args) };
        }
        // SAFETY: the caller's contract; `f` is a function of the loaded module.
        unsafe {
            cu::launch_kernel(
                f.0 as sys::CUfunction,
                d.grid,
                (d.block, 1, 1),
                d.shared,
                self.stream,
                args,
            )
        }
        .map_err(|e| dev_err("cuLaunchKernel", e))
    }

    unsafe fn gemm_f16(
        &mut self,
        m: usize,
        n: usize,
        k: usize,
        a: DevPtr,
        b: DevPtr,
        c: DevPtr,
    ) -> Result<()> {
        let dim =
            |v: usize| i32::try_from(v).map_err(|_| Error::Overflow(format!("GEMM size {v}")));
        let (mi, ni, ki) = (dim(m)?, dim(n)?, dim(k)?);
        let (alpha, beta) = (1.0f32, 0.0f32);
        use blas_sys::{cublasComputeType_t as C, cublasOperation_t as Op, cudaDataType as T};
        // Column-major view: C (m x n, ld m) = A^T (A: k x m, ld k) * B (k x n, ld k).
        // SAFETY: the caller's contract on the three buffers; alpha and beta live across
        // the call (host pointer mode).
        unsafe {
            blas::gemm_ex(
                self.blas,
                Op::CUBLAS_OP_T,
                Op::CUBLAS_OP_N,
                mi,
                ni,
                ki,
                &alpha as *const f32 as *const c_void,
                a as *const c_void,
                T::CUDA_R_16F,
                ki,
                b as *const c_void,
                T::CUDA_R_16F,
                ki,
                &beta as *const f32 as *const c_void,
                c as *mut c_void,
                T::CUDA_R_32F,
                mi,
                C::CUBLAS_COMPUTE_32F,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(|e| dev_err("cublasGemmEx", e))
    }

    fn synchronize(&mut self) -> Result<()> {
        self.bind()?;
        // SAFETY: a live stream.
        unsafe { cu::stream::synchronize(self.stream) }
            .map_err(|e| self.sync_err("cuStreamSynchronize", e))
    }

    fn begin_capture(&mut self) -> Result<()> {
        self.bind()?;
        // Thread-local: other threads' CUDA calls (another context's allocations) stay legal.
        let mode = sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL;
        // SAFETY: a live stream, not capturing (the caller pairs this with end_capture).
        cu_check("cuStreamBeginCapture", unsafe {
            sys::cuStreamBeginCapture_v2(self.stream, mode)
        })
    }

    fn end_capture(&mut self) -> Result<GraphId> {
        self.bind()?;
        let mut graph: sys::CUgraph = std::ptr::null_mut();
        // SAFETY: ends this stream's capture; `graph` receives the recording (or stays null
        // when the capture was invalidated by a failed call).
        let ended = cu_check("cuStreamEndCapture", unsafe {
            sys::cuStreamEndCapture(self.stream, &mut graph)
        });
        if graph.is_null() {
            ended?;
            return Err(Error::Device("cuStreamEndCapture: no graph".into()));
        }
        let mut exec: sys::CUgraphExec = std::ptr::null_mut();
        // SAFETY: `graph` is the live recording; the executable copies what it needs, so the
        // recording is destroyed right after, once.
        let made = unsafe {
            let r = ended.and_then(|()| {
                cu_check(
                    "cuGraphInstantiate",
                    sys::cuGraphInstantiateWithFlags(&mut exec, graph, 0),
                )
            });
            let _ = sys::cuGraphDestroy(graph);
            r
        };
        made?;
        Ok(self.graphs.add(exec))
    }

    fn replay(&mut self, g: GraphId) -> Result<()> {
        let exec = self.graphs.get(g)?;
        self.bind()?;
        // SAFETY: a live executable graph of this stream, whose buffers the caller keeps
        // alive (the recording's contract).
        cu_check("cuGraphLaunch", unsafe {
            sys::cuGraphLaunch(exec, self.stream)
        })
    }

    fn drop_graph(&mut self, g: GraphId) {
        if let Some(exec) = self.graphs.take(g) {
            // SAFETY: destroying an executable graph is deferred by the driver until its
            // queued launches are done; it is used by no one after this.
            unsafe {
                let _ = sys::cuGraphExecDestroy(exec);
            }
        }
    }
}

/// A driver call's status as a `Result`.
fn cu_check(what: &str, r: sys::CUresult) -> Result<()> {
    match r {
        sys::CUresult::CUDA_SUCCESS => Ok(()),
        e => Err(dev_err(what, e)),
    }
}
