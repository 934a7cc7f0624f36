//! AMD GPUs through the HIP runtime (hip-runtime-sys, feature `hip`): a build links
//! libamdhip64 (Debian: libamdhip64-dev), so a `hip` binary needs the ROCm runtime where it
//! runs. This file and `cuda.rs` are the only ones that name vendor APIs.
//!
//! The module: hipRTC compiles `source::full_source()` for the device's exact target (its
//! `gcnArchName`, e.g. `gfx90a:sramecc+:xnack-`) to a code object, cached on disk (`source`).
//! hipRTC is looked up at run time (libhiprtc.so on ROCm 6 and later, inside libamdhip64 on
//! ROCm 5), and needs no device: `compile_for` is tested on machines without an AMD GPU.
//! HIP keeps a current device per thread, so every entry point selects this one first.
//!
//! There is no BLAS here (Debian ships no hipBLAS): `gemm_f16` is `Unsupported` and the
//! forward pass takes the matrix-vector kernels for prefill too (`GpuDevice::has_gemm`).

use std::ffi::{CStr, CString, c_char, c_int, c_void};

use hip_runtime_sys as hip;

use super::{DevPtr, Dims, Func, GpuDevice, GpuStream, GraphId, Graphs, source};
use crate::{Error, Result};

fn check(what: &str, e: hip::hipError_t) -> Result<()> {
    if e == hip::hipError_t::hipSuccess {
        return Ok(());
    }
    // SAFETY: hipGetErrorString returns a static string for any code (or NULL).
    let msg = unsafe {
        let p = hip::hipGetErrorString(e);
        if p.is_null() {
            String::new()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    Err(match e {
        hip::hipError_t::hipErrorOutOfMemory => Error::Oom(format!("{what}: {msg}")),
        _ => Error::Device(format!("{what}: {e:?} ({msg})")),
    })
}

type CreateFn = unsafe extern "C" fn(
    *mut *mut c_void,
    *const c_char,
    *const c_char,
    c_int,
    *const *const c_char,
    *const *const c_char,
) -> c_int;
type CompileFn = unsafe extern "C" fn(*mut c_void, c_int, *const *const c_char) -> c_int;
type SizeFn = unsafe extern "C" fn(*mut c_void, *mut usize) -> c_int;
type BytesFn = unsafe extern "C" fn(*mut c_void, *mut c_char) -> c_int;
type DestroyFn = unsafe extern "C" fn(*mut *mut c_void) -> c_int;

/// hipRTC's entry points, found at run time.
struct Rtc {
    create: CreateFn,
    compile: CompileFn,
    code_size: SizeFn,
    code: BytesFn,
    log_size: SizeFn,
    log: BytesFn,
    destroy: DestroyFn,
}

impl Rtc {
    fn open() -> Result<Rtc> {
        for lib in [
            c"libhiprtc.so",
            c"libhiprtc.so.6",
            c"libamdhip64.so",
            c"libamdhip64.so.5",
        ] {
            // SAFETY: dlopen with a valid name; the handle is kept open for the process (the
            // functions below must stay valid).
            let h = unsafe { libc::dlopen(lib.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
            if h.is_null() {
                continue;
            }
            let sym = |name: &CStr| {
                // SAFETY: a live handle and a valid name.
                let p = unsafe { libc::dlsym(h, name.as_ptr()) };
                (!p.is_null()).then_some(p)
            };
            let names = [
                c"hiprtcCreateProgram",
                c"hiprtcCompileProgram",
                c"hiprtcGetCodeSize",
                c"hiprtcGetCode",
                c"hiprtcGetProgramLogSize",
                c"hiprtcGetProgramLog",
                c"hiprtcDestroyProgram",
            ];
            let Some(p) = names.iter().map(|n| sym(n)).collect::<Option<Vec<_>>>() else {
                continue;
            };
            // SAFETY: each symbol is the hipRTC function of that name, whose C signature is
            // the field's type (hiprtc.h).
            return Ok(unsafe {
                Rtc {
                    create: std::mem::transmute::<*mut c_void, CreateFn>(p[0]),
                    compile: std::mem::transmute::<*mut c_void, CompileFn>(p[1]),
                    code_size: std::mem::transmute::<*mut c_void, SizeFn>(p[2]),
                    code: std::mem::transmute::<*mut c_void, BytesFn>(p[3]),
                    log_size: std::mem::transmute::<*mut c_void, SizeFn>(p[4]),
                    log: std::mem::transmute::<*mut c_void, BytesFn>(p[5]),
                    destroy: std::mem::transmute::<*mut c_void, DestroyFn>(p[6]),
                }
            });
        }
        Err(Error::Device(
            "hipRTC was not found (libhiprtc.so or libamdhip64.so with hiprtc*)".into(),
        ))
    }
}

/// The kernel source compiled by hipRTC for `arch` (a gcnArchName): a code object for
/// hipModuleLoadData, or the compiler's log. Needs no GPU.
pub fn compile_for(src: &str, arch: &str) -> Result<Vec<u8>> {
    let rtc = Rtc::open()?;
    let csrc = CString::new(src).map_err(|_| Error::Internal("NUL in kernel source".into()))?;
    let opts: Vec<CString> = [
        format!("--offload-arch={arch}"),
        "-O3".into(),
        "-std=c++17".into(),
        // Fused multiply-adds only where the source asks (source::contract).
        format!(
            "-ffp-contract={}",
            if source::contract() { "fast" } else { "off" }
        ),
    ]
    .into_iter()
    .map(|o| CString::new(o).map_err(|_| Error::Internal("NUL in an option".into())))
    .collect::<Result<_>>()?;
    let opt_ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
    let mut prog: *mut c_void = std::ptr::null_mut();
    // SAFETY: valid strings, no headers; `prog` receives the program.
    let r = unsafe {
        (rtc.create)(
            &mut prog,
            csrc.as_ptr(),
            c"rocmforge.cu".as_ptr(),
            0,
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r != 0 || prog.is_null() {
        return Err(Error::Device(format!("hiprtcCreateProgram failed ({r})")));
    }
    // SAFETY: `prog` is live until destroyed at the end; buffers are sized by the getters.
    let result = unsafe {
        let r = (rtc.compile)(prog, opt_ptrs.len() as c_int, opt_ptrs.as_ptr());
        if r == 0 {
            let mut size = 0usize;
            if (rtc.code_size)(prog, &mut size) != 0 || size == 0 {
                Err(Error::Device("hiprtcGetCodeSize failed".into()))
            } else {
                let mut image = vec![0u8; size];
                if (rtc.code)(prog, image.as_mut_ptr() as *mut c_char) != 0 {
                    Err(Error::Device("hiprtcGetCode failed".into()))
                } else {
                    Ok(image)
                }
            }
        } else {
            let mut size = 0usize;
            let mut log = Vec::new();
            if (rtc.log_size)(prog, &mut size) == 0 && size > 0 {
                log = vec![0u8; size];
                if (rtc.log)(prog, log.as_mut_ptr() as *mut c_char) != 0 {
                    log.clear();
                }
            }
            Err(Error::Device(format!(
                "hipRTC could not compile the kernels for {arch} ({r}):\n{}",
                String::from_utf8_lossy(&log).trim_end_matches('\0')
            )))
        }
    };
    // SAFETY: destroyed once, after its last use.
    unsafe {
        (rtc.destroy)(&mut prog);
    }
    result
}

pub struct HipDevice {
    index: c_int,
    module: hip::hipModule_t,
    name: String,
    arch: String,
}

// SAFETY: the module handle is valid from any thread once the device is selected there
// (`bind`, called by every entry point); the runtime is thread-safe for these calls.
unsafe impl Send for HipDevice {}
// SAFETY: as above.
unsafe impl Sync for HipDevice {}

/// hipDeviceProp_t with room to spare, should the runtime's be larger than these bindings'.
#[repr(C)]
struct Props {
    p: hip::hipDeviceProp_t,
    _spare: [u8; 4096],
}

fn c_string(chars: &[c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

impl HipDevice {
    /// Opens device `index` and loads the kernel module (compiling it on first use).
    pub fn open(index: usize) -> Result<HipDevice> {
        // SAFETY: plain runtime calls with valid out-pointers.
        unsafe {
            check("hipInit", hip::hipInit(0))?;
            let mut count: c_int = 0;
            check("hipGetDeviceCount", hip::hipGetDeviceCount(&mut count))?;
            if index >= count.max(0) as usize {
                return Err(Error::Device(format!(
                    "HIP device {index} was asked for; this machine has {count}"
                )));
            }
        }
        let index = index as c_int;
        // SAFETY: a valid device index; `Props` is zeroable plain data with room to spare.
        let (name, arch) = unsafe {
            check("hipSetDevice", hip::hipSetDevice(index))?;
            let mut props: Box<Props> = Box::new(std::mem::zeroed());
            check(
                "hipGetDeviceProperties",
                hip::hipGetDeviceProperties(&mut props.p, index),
            )?;
            (c_string(&props.p.name), c_string(&props.p.gcnArchName))
        };
        if !arch.starts_with("gfx") {
            return Err(Error::Device(format!(
                "HIP device {index} reports the architecture {arch:?}, not a gfx target"
            )));
        }
        let mut d = HipDevice {
            index,
            module: std::ptr::null_mut(),
            name,
            arch,
        };
        d.module = d.load_module()?;
        Ok(d)
    }

    fn bind(&self) -> Result<()> {
        // SAFETY: a device index checked at open.
        check("hipSetDevice", unsafe { hip::hipSetDevice(self.index) })
    }

    fn runtime_version() -> String {
        let mut v: c_int = 0;
        // SAFETY: a valid out-pointer.
        unsafe { hip::hipRuntimeGetVersion(&mut v) };
        format!("hip-{v}")
    }

    fn load_module(&self) -> Result<hip::hipModule_t> {
        self.bind()?;
        let src = source::full_source();
        let arch = source::variant(&self.arch);
        let cache = source::cache_path(&src, &arch, &Self::runtime_version(), "co");
        let image = match source::load_cached(&cache) {
            Some(image) => image,
            None => {
                let t = std::time::Instant::now();
                let image = compile_for(&src, &self.arch)?;
                crate::log::info(&format!(
                    "compiled the HIP kernels for {} in {:.1} s",
                    self.arch,
                    t.elapsed().as_secs_f64()
                ));
                source::store_cached(&cache, &image);
                image
            }
        };
        let mut module: hip::hipModule_t = std::ptr::null_mut();
        // SAFETY: `image` is a code object for this device, alive during the call.
        let r = unsafe { hip::hipModuleLoadData(&mut module, image.as_ptr() as *const c_void) };
        if check("hipModuleLoadData", r).is_ok() {
            return Ok(module);
        }
        // A damaged cache file: compile afresh once.
        let image = compile_for(&src, &self.arch)?;
        source::store_cached(&cache, &image);
        // SAFETY: as above.
        check("hipModuleLoadData", unsafe {
            hip::hipModuleLoadData(&mut module, image.as_ptr() as *const c_void)
        })?;
        Ok(module)
    }
}

impl Drop for HipDevice {
    fn drop(&mut self) {
        // SAFETY: every buffer and stream of this device holds an Arc to it, so nothing uses
        // the module any more.
        unsafe {
            if self.bind().is_ok() && !self.module.is_null() {
                let _ = hip::hipModuleUnload(self.module);
            }
        }
    }
}

impl GpuDevice for HipDevice {
    fn describe(&self) -> String {
        format!("HIP {}: {} ({})", self.index, self.name, self.arch)
    }

    fn mem_info(&self) -> Result<(usize, usize)> {
        self.bind()?;
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: valid out-pointers.
        check("hipMemGetInfo", unsafe {
            hip::hipMemGetInfo(&mut free, &mut total)
        })?;
        Ok((free, total))
    }

    fn alloc(&self, bytes: usize) -> Result<DevPtr> {
        self.bind()?;
        let mut p: *mut c_void = std::ptr::null_mut();
        // SAFETY: a plain allocation of `bytes` (> 0: DevBuf asks for at least 1).
        check(
            &format!("hipMalloc of {bytes} bytes on {}", self.name),
            unsafe { hip::hipMalloc(&mut p, bytes) },
        )?;
        Ok(p as DevPtr)
    }

    unsafe fn free(&self, p: DevPtr) {
        if self.bind().is_ok() {
            // SAFETY: the caller's contract (allocated here, freed once, unused).
            let _ = unsafe { hip::hipFree(p as *mut c_void) };
        }
    }

    fn function(&self, name: &str) -> Result<Func> {
        self.bind()?;
        let cname = CString::new(name).map_err(|_| Error::Internal("kernel name".into()))?;
        let mut f: hip::hipFunction_t = std::ptr::null_mut();
        // SAFETY: a loaded module and a valid name.
        check(&format!("kernel {name}"), unsafe {
            hip::hipModuleGetFunction(&mut f, self.module, cname.as_ptr())
        })?;
        Ok(Func(f as u64))
    }

    fn new_stream(&self) -> Result<Box<dyn GpuStream>> {
        self.bind()?;
        let mut stream: hip::hipStream_t = std::ptr::null_mut();
        // SAFETY: a valid out-pointer.
        check("hipStreamCreateWithFlags", unsafe {
            hip::hipStreamCreateWithFlags(&mut stream, hip::hipStreamNonBlocking)
        })?;
        Ok(Box::new(HipStream {
            index: self.index,
            stream,
            graphs: Graphs::default(),
            pins: Vec::new(),
            refused: Vec::new(),
        }))
    }

    fn has_gemm(&self) -> bool {
        false
    }
}

pub struct HipStream {
    index: c_int,
    stream: hip::hipStream_t,
    graphs: Graphs<hip::hipGraphExec_t>,
    /// Host memory this stream pinned (`pin_host`), and memory the driver refused to pin
    /// (not asked again until unpinned).
    pins: Vec<usize>,
    refused: Vec<usize>,
}

// SAFETY: a stream may move between threads; `&mut self` keeps its use to one thread at a
// time.
unsafe impl Send for HipStream {}

impl HipStream {
    fn bind(&self) -> Result<()> {
        // SAFETY: the device index was checked when the device opened.
        check("hipSetDevice", unsafe { hip::hipSetDevice(self.index) })
    }
}

impl Drop for HipStream {
    fn drop(&mut self) {
        // SAFETY: waits for queued work, then destroys the stream, once.
        unsafe {
            if self.bind().is_ok() {
                let _ = hip::hipStreamSynchronize(self.stream);
                for g in self.graphs.drain() {
                    let _ = hip::hipGraphExecDestroy(g);
                }
                for p in self.pins.drain(..) {
                    let _ = hip::hipHostUnregister(p as *mut libc::c_void);
                }
                let _ = hip::hipStreamDestroy(self.stream);
            }
        }
    }
}

impl GpuStream for HipStream {
    unsafe fn pin_host(&mut self, ptr: *mut u8, bytes: usize) -> bool {
        let p = ptr as usize;
        if bytes == 0 || self.pins.contains(&p) || self.refused.contains(&p) || self.bind().is_err()
        {
            return false;
        }
        // SAFETY: the caller keeps the range allocated until it is unpinned; the runtime
        // only locks its pages (flags 0: hipHostRegisterDefault).
        let r = unsafe { hip::hipHostRegister(ptr as *mut libc::c_void, bytes, 0) };
        let ok = r == hip::hipError_t::hipSuccess;
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
                let _ = unsafe { hip::hipHostUnregister(ptr as *mut libc::c_void) };
            }
        }
    }

    unsafe fn upload(&mut self, dst: DevPtr, src: &[u8]) -> Result<()> {
        if src.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: the caller's contract on `dst`. The host buffer may be reused on return:
        // a pageable source is staged before hipMemcpyHtoDAsync returns, as with CUDA.
        check(
            "hipMemcpyHtoDAsync (or a kernel queued before it)",
            unsafe {
                hip::hipMemcpyHtoDAsync(
                    dst as hip::hipDeviceptr_t,
                    src.as_ptr() as *mut c_void,
                    src.len(),
                    self.stream,
                )
            },
        )
    }

    unsafe fn download(&mut self, dst: &mut [u8], src: DevPtr) -> Result<()> {
        self.bind()?;
        // SAFETY: the caller's contract on `src`; the stream is synchronized before `dst` is
        // read by anyone.
        unsafe {
            check(
                "hipMemcpyDtoHAsync (or a kernel queued before it)",
                hip::hipMemcpyDtoHAsync(
                    dst.as_mut_ptr() as *mut c_void,
                    src as hip::hipDeviceptr_t,
                    dst.len(),
                    self.stream,
                ),
            )?;
            check(
                "hipStreamSynchronize (or a kernel queued before it)",
                hip::hipStreamSynchronize(self.stream),
            )
        }
    }

    unsafe fn copy(&mut self, dst: DevPtr, src: DevPtr, bytes: usize) -> Result<()> {
        self.bind()?;
        // SAFETY: the caller's contract.
        check("hipMemcpyDtoDAsync", unsafe {
            hip::hipMemcpyDtoDAsync(
                dst as hip::hipDeviceptr_t,
                src as hip::hipDeviceptr_t,
                bytes,
                self.stream,
            )
        })
    }

    unsafe fn launch(&mut self, f: Func, d: Dims, args: &mut [*mut c_void]) -> Result<()> {
        self.bind()?;
        // SAFETY: the caller's contract; `f` is a function of the loaded module.
        check("hipModuleLaunchKernel", unsafe {
            hip::hipModuleLaunchKernel(
                f.0 as hip::hipFunction_t,
                d.grid.0,
                d.grid.1,
                d.grid.2,
                d.block,
                1,
                1,
                d.shared,
                self.stream,
                args.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        })
    }

    unsafe fn gemm_f16(
        &mut self,
        _m: usize,
        _n: usize,
        _k: usize,
        _a: DevPtr,
        _b: DevPtr,
        _c: DevPtr,
    ) -> Result<()> {
        Err(Error::Unsupported(
            "the HIP backend has no BLAS GEMM (the forward pass uses its own kernels)".into(),
        ))
    }

    fn synchronize(&mut self) -> Result<()> {
        self.bind()?;
        // SAFETY: a live stream.
        check("hipStreamSynchronize", unsafe {
            hip::hipStreamSynchronize(self.stream)
        })
    }

    fn begin_capture(&mut self) -> Result<()> {
        self.bind()?;
        let mode = hip::hipStreamCaptureMode::hipStreamCaptureModeThreadLocal;
        // SAFETY: a live stream, not capturing (the caller pairs this with end_capture).
        check("hipStreamBeginCapture", unsafe {
            hip::hipStreamBeginCapture(self.stream, mode)
        })
    }

    fn end_capture(&mut self) -> Result<GraphId> {
        self.bind()?;
        let mut graph: hip::hipGraph_t = std::ptr::null_mut();
        // SAFETY: ends this stream's capture; `graph` receives the recording, or stays null.
        let ended = check("hipStreamEndCapture", unsafe {
            hip::hipStreamEndCapture(self.stream, &mut graph)
        });
        if graph.is_null() {
            ended?;
            return Err(Error::Device("hipStreamEndCapture: no graph".into()));
        }
        let mut exec: hip::hipGraphExec_t = std::ptr::null_mut();
        // SAFETY: `graph` is the live recording; the executable copies what it needs, so the
        // recording is destroyed right after, once.
        let made = unsafe {
            let r = ended.and_then(|()| {
                check(
                    "hipGraphInstantiate",
                    hip::hipGraphInstantiate(
                        &mut exec,
                        graph,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        0,
                    ),
                )
            });
            let _ = hip::hipGraphDestroy(graph);
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
        check("hipGraphLaunch", unsafe {
            hip::hipGraphLaunch(exec, self.stream)
        })
    }

    fn drop_graph(&mut self, g: GraphId) {
        if let Some(exec) = self.graphs.take(g) {
            // SAFETY: the stream's queued work may still run the graph: wait for it first.
            unsafe {
                let _ = hip::hipStreamSynchronize(self.stream);
                let _ = hip::hipGraphExecDestroy(exec);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The library's own kernel source through hipRTC for an RDNA target, as a device would
    /// compile it at first use; needs ROCm's hipRTC but no GPU.
    #[test]
    fn hiprtc_compiles_the_kernels_without_a_device() {
        if Rtc::open().is_err() {
            eprintln!("SKIPPED: hipRTC not found");
            return;
        }
        let image = compile_for(&source::full_source(), "gfx1030").expect("hipRTC compile");
        assert!(
            image.len() > 100_000,
            "code object of {} bytes",
            image.len()
        );
        let bundle = b"__CLANG_OFFLOAD_BUNDLE__";
        assert!(
            image.starts_with(b"\x7fELF") || image.starts_with(bundle),
            "an AMDGPU code object (ELF or offload bundle)"
        );
        let err = compile_for("this is not C++", "gfx1030").unwrap_err();
        assert!(err.to_string().contains("could not compile"), "{err}");
    }
}
