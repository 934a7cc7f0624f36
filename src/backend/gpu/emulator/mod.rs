//! A GPU on the CPU, for testing the GPU backend where there is no GPU (feature
//! `gpu-emulator`; a development tool, not a backend for users).
//!
//! With `ROCMFORGE_GPU_EMULATOR=1` (or `wave32`) or `=wave64` in the environment, a request
//! for CUDA (`Backend::Cuda`, or `Auto`) opens this device instead (HIP stays what the build
//! makes it, so its errors can still be tested): the
//! library's kernel source (`source::full_source()`, unchanged) is compiled with the host's
//! C++ compiler (`$CXX`, else `c++`) against `runtime.hpp`, which supplies CUDA's names and
//! runs each block's threads as fibers with real barriers and warp shuffles; the module is
//! cached on disk like NVRTC's. Everything above the two traits — weights upload, the
//! per-kernel buffer checks, the decode's tables, partial offload, graph capture and replay,
//! the KV cache's device copies — runs exactly as on a GPU, so `tests/gpu.rs` runs in CI.
//! `wave64` runs the kernels with AMD CDNA's 64-lane warps (`RF_WARP` 64), the one
//! configuration no machine here has, and without a BLAS, as the HIP backend runs.
//!
//! What it checks beyond the arithmetic: every allocation ends just below an inaccessible
//! page (a kernel that writes or reads past a buffer's end by more than its 256-byte
//! rounding faults), and new memory is filled with 0xff bytes (NaN as f32 and f16), as
//! device memory is not zeroed; a capture that uploads, downloads or synchronizes fails as
//! CUDA's does; threads that wait at different barriers are reported as a deadlock.
//! What it cannot check: timing, races between blocks (they run one after another) and
//! memory ordering within a block beyond its barriers. cuBLAS's GEMM is a plain f32-accumulated
//! loop here. x86-64 hosts only (the fiber switch is a few lines of assembly).

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_void};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;

use super::{DevPtr, Dims, Func, GpuDevice, GpuStream, GraphId, Graphs, source};
use crate::{Error, Result};

const RUNTIME: &str = include_str!("runtime.hpp");
/// What `mem_info` reports as the device's size.
const TOTAL: usize = 1 << 36;
const PAGE: usize = 4096;
/// Allocation granularity (cudaMalloc aligns to 256 bytes).
const ALIGN: usize = 256;

/// The warp width the environment asks the emulator for, if it asks for it.
pub fn requested() -> Option<u32> {
    match std::env::var("ROCMFORGE_GPU_EMULATOR").ok()?.as_str() {
        "1" | "wave32" => Some(32),
        "wave64" => Some(64),
        _ => None,
    }
}

type RunFn = unsafe extern "C" fn(*mut c_void, u32, u32, u32, u32, *mut c_char, usize) -> i32;
type FreeFn = unsafe extern "C" fn(*mut c_void);
type BindFn = unsafe extern "C" fn(i32, *mut *mut c_void) -> *mut c_void;

/// The compiled kernel module: its entry points and kernel names (index = `Func`).
struct Module {
    run: RunFn,
    free: FreeFn,
    bind: BindFn,
    names: Vec<String>,
}

/// A launch's kernel with its arguments copied (the module's `Launch`), freed on drop.
struct Bound {
    ptr: *mut c_void,
    module: Arc<Module>,
}

impl Drop for Bound {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from the module's bind and is freed once, here.
        unsafe { (self.module.free)(self.ptr) }
    }
}

impl Bound {
    fn run(&self, d: Dims, name: &str) -> Result<()> {
        if d.shared != 0 {
            return Err(Error::Device(format!(
                "{name}: the emulator has no dynamic shared memory ({} bytes asked)",
                d.shared
            )));
        }
        let mut err = [0 as c_char; 512];
        // SAFETY: a live launch of this module; `err` is writable for its length.
        let rc = unsafe {
            (self.module.run)(
                self.ptr,
                d.grid.0,
                d.grid.1,
                d.grid.2,
                d.block,
                err.as_mut_ptr(),
                err.len(),
            )
        };
        if rc == 0 {
            return Ok(());
        }
        // SAFETY: the module wrote a NUL-terminated message (snprintf) into `err`.
        let why = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy();
        Err(Error::Device(format!("{name}: {why}")))
    }
}

/// One mapping per allocation: the buffer ends right below an inaccessible page.
struct Mapping {
    base: usize,
    len: usize,
}

/// The emulated device's allocations, by address. One device: every `EmuDevice` opened in
/// the process shares it, as every handle to a GPU shares that GPU's memory.
static LIVE: LazyLock<Mutex<HashMap<u64, Mapping>>> = LazyLock::new(Default::default);

pub struct EmuDevice {
    module: Arc<Module>,
    warp: u32,
}

impl EmuDevice {
    pub fn open(index: usize, warp: u32) -> Result<EmuDevice> {
        if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
            return Err(Error::Device(
                "the GPU emulator runs on x86-64 Linux hosts only".into(),
            ));
        }
        if index != 0 {
            return Err(Error::Device(format!(
                "emulated GPU {index} was asked for; the emulator has 1"
            )));
        }
        Ok(EmuDevice {
            module: Arc::new(load_module(warp)?),
            warp,
        })
    }
}

fn compiler() -> String {
    std::env::var("CXX")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "c++".into())
}

fn run_tool(cmd: &mut Command, what: &str) -> Result<Vec<u8>> {
    let out = cmd.output().map_err(|e| {
        Error::Device(format!(
            "the GPU emulator could not run the C++ compiler ({what}): {e}"
        ))
    })?;
    if !out.status.success() {
        return Err(Error::Device(format!(
            "the GPU emulator's {what} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(out.stdout)
}

/// The names of the source's kernels: `extern "C"` functions once the dialect's keywords
/// are gone (the kernels of a format are stamped out by macros, so the preprocessor names
/// them).
fn kernel_names(cxx: &str, dir: &Path, src: &str, warp: u32) -> Result<Vec<String>> {
    let file = dir.join("names.cpp");
    let text = format!(
        "#define RF_EMU 1\n#define RF_EMU_WARP {warp}\n#define __global__\n#define __device__\n\
         #define __forceinline__ inline\n#define __launch_bounds__(...)\n{src}"
    );
    std::fs::write(&file, text).map_err(|e| Error::Device(format!("emulator scratch: {e}")))?;
    let out = run_tool(
        Command::new(cxx).args(["-E", "-P", "-x", "c++"]).arg(&file),
        "preprocessing",
    )?;
    let text = String::from_utf8_lossy(&out);
    let re = regex::Regex::new(r#"extern\s+"C"\s+void\s+([A-Za-z_][A-Za-z0-9_]*)\s*\("#)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let names: Vec<String> = re.captures_iter(&text).map(|c| c[1].to_string()).collect();
    if names.is_empty() {
        return Err(Error::Device(
            "the emulator found no kernels in the source".into(),
        ));
    }
    Ok(names)
}

/// The translation unit: the runtime, the kernel source, and a table binding each kernel's
/// arguments by its own parameter types.
fn translation_unit(src: &str, names: &[String], warp: u32) -> String {
    let mut t = format!("#define RF_EMU_WARP {warp}\n{RUNTIME}\n{src}\n");
    t.push_str("static const char* const rfemu_names[] = {\n");
    for n in names {
        t.push_str(&format!("    \"{n}\",\n"));
    }
    t.push_str("};\nextern \"C\" {\n");
    t.push_str(&format!(
        "__attribute__((visibility(\"default\"))) int rfemu_count() {{ return {}; }}\n",
        names.len()
    ));
    t.push_str(
        "__attribute__((visibility(\"default\"))) const char* rfemu_name(int i) { return \
         rfemu_names[i]; }\n",
    );
    t.push_str(
        "__attribute__((visibility(\"default\"))) void* rfemu_bind(int i, void** a) {\n    \
         switch (i) {\n",
    );
    for (i, n) in names.iter().enumerate() {
        t.push_str(&format!("    case {i}: return rfemu::bind(&{n}, a);\n"));
    }
    t.push_str("    }\n    return nullptr;\n}\n}\n");
    t
}

/// A fresh scratch directory (removed by the caller).
fn scratch() -> Result<PathBuf> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("rocmforge-emu-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::Device(format!("emulator scratch: {e}")))?;
    Ok(dir)
}

fn load_module(warp: u32) -> Result<Module> {
    let cxx = compiler();
    let version = run_tool(Command::new(&cxx).arg("--version"), "version query")?;
    let version = String::from_utf8_lossy(&version);
    let version = version.lines().next().unwrap_or("");
    let src = source::full_source();
    // Extra compiler flags for debugging the emulator or a kernel (`-O0 -g`), part of the key.
    let extra = std::env::var("ROCMFORGE_GPU_EMULATOR_CFLAGS").unwrap_or_default();
    let keyed = format!("{RUNTIME}{src}{extra}");
    let arch = source::variant(&format!("emu-wave{warp}"));
    let cache = source::cache_path(&keyed, &arch, version, "so");
    let dir = scratch()?;
    let result = (|| {
        let path = match &cache {
            Some(p) if p.is_file() => p.clone(),
            _ => {
                let t = std::time::Instant::now();
                let names = kernel_names(&cxx, &dir, &src, warp)?;
                let tu = dir.join("kernels.cpp");
                std::fs::write(&tu, translation_unit(&src, &names, warp))
                    .map_err(|e| Error::Device(format!("emulator scratch: {e}")))?;
                let so = dir.join("kernels.so");
                run_tool(
                    Command::new(&cxx)
                        .args([
                            "-std=c++17",
                            "-O2",
                            "-g0",
                            "-fPIC",
                            "-shared",
                            "-fno-strict-aliasing",
                            // As the GPU compilers are told (source::contract).
                            if source::contract() {
                                "-ffp-contract=fast"
                            } else {
                                "-ffp-contract=off"
                            },
                            "-fvisibility=hidden",
                            "-w",
                            "-o",
                        ])
                        .arg(&so)
                        .args(extra.split_whitespace())
                        .arg(&tu),
                    "kernel compile",
                )?;
                crate::log::info(&format!(
                    "compiled the emulated GPU's kernels (wave{warp}) in {:.1} s",
                    t.elapsed().as_secs_f64()
                ));
                let image = std::fs::read(&so)
                    .map_err(|e| Error::Device(format!("emulator module: {e}")))?;
                source::store_cached(&cache, &image);
                match &cache {
                    Some(p) if p.is_file() => p.clone(),
                    _ => so,
                }
            }
        };
        open_module(&path)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Opens the shared object (it stays loaded for the life of the process: launches bound by
/// it may outlive any one device).
fn open_module(path: &Path) -> Result<Module> {
    let cpath = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Device("emulator module path".into()))?;
    // SAFETY: a valid path string; the object is ours (compiled above or cached from it).
    let h = unsafe { libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if h.is_null() {
        // SAFETY: dlerror returns a message string or NULL.
        let why = unsafe {
            let e = libc::dlerror();
            if e.is_null() {
                String::new()
            } else {
                CStr::from_ptr(e).to_string_lossy().into_owned()
            }
        };
        return Err(Error::Device(format!(
            "the emulator could not load {}: {why}",
            path.display()
        )));
    }
    let sym = |name: &CStr| -> Result<*mut c_void> {
        // SAFETY: a live handle and a NUL-terminated name.
        let p = unsafe { libc::dlsym(h, name.as_ptr()) };
        if p.is_null() {
            Err(Error::Device(format!(
                "the emulator module lacks {}",
                name.to_string_lossy()
            )))
        } else {
            Ok(p)
        }
    };
    // SAFETY: the symbols are the runtime's and the table's functions, with these
    // signatures (runtime.hpp, `translation_unit`).
    unsafe {
        let count: unsafe extern "C" fn() -> i32 = std::mem::transmute(sym(c"rfemu_count")?);
        let name: unsafe extern "C" fn(i32) -> *const c_char =
            std::mem::transmute(sym(c"rfemu_name")?);
        let names = (0..count())
            .map(|i| CStr::from_ptr(name(i)).to_string_lossy().into_owned())
            .collect();
        Ok(Module {
            run: std::mem::transmute::<*mut c_void, RunFn>(sym(c"rfemu_run")?),
            free: std::mem::transmute::<*mut c_void, FreeFn>(sym(c"rfemu_free")?),
            bind: std::mem::transmute::<*mut c_void, BindFn>(sym(c"rfemu_bind")?),
            names,
        })
    }
}

impl GpuDevice for EmuDevice {
    fn describe(&self) -> String {
        format!("emulated GPU 0 on the CPU ({}-lane warps)", self.warp)
    }

    fn mem_info(&self) -> Result<(usize, usize)> {
        let used: usize = LIVE.lock().values().map(|m| m.len).sum();
        Ok((TOTAL.saturating_sub(used), TOTAL))
    }

    fn alloc(&self, bytes: usize) -> Result<DevPtr> {
        let oom = || Error::Oom(format!("{bytes} bytes of emulated device memory"));
        let rounded = bytes.checked_next_multiple_of(ALIGN).ok_or_else(oom)?;
        let len = rounded
            .checked_next_multiple_of(PAGE)
            .and_then(|l| l.checked_add(PAGE))
            .ok_or_else(oom)?;
        let (free, _) = self.mem_info()?;
        if len > free {
            return Err(oom());
        }
        // SAFETY: a fresh private anonymous mapping; its last page is made inaccessible.
        let base = unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                return Err(oom());
            }
            libc::mprotect(
                (p as *mut u8).add(len - PAGE) as *mut c_void,
                PAGE,
                libc::PROT_NONE,
            );
            p as usize
        };
        let ptr = base + len - PAGE - rounded;
        // SAFETY: `rounded` bytes at `ptr` lie inside the accessible part of the mapping.
        unsafe { std::ptr::write_bytes(ptr as *mut u8, 0xff, rounded) };
        LIVE.lock().insert(ptr as u64, Mapping { base, len });
        Ok(ptr as u64)
    }

    unsafe fn free(&self, p: DevPtr) {
        if let Some(m) = LIVE.lock().remove(&p) {
            // SAFETY: the mapping was made by `alloc` and is unmapped once (removed from
            // `live`); the caller's contract says nothing uses it any more.
            unsafe { libc::munmap(m.base as *mut c_void, m.len) };
        }
    }

    fn function(&self, name: &str) -> Result<Func> {
        self.module
            .names
            .iter()
            .position(|n| n == name)
            .map(|i| Func(i as u64))
            .ok_or_else(|| Error::Device(format!("kernel {name}: not in the module")))
    }

    /// wave32 stands for an NVIDIA GPU (cuBLAS's GEMM, emulated), wave64 for an AMD CDNA one
    /// as the HIP backend drives it today: no BLAS, so batches take the matrix-vector and
    /// tiled int8 kernels.
    fn has_gemm(&self) -> bool {
        self.warp == 32
    }

    fn new_stream(&self) -> Result<Box<dyn GpuStream>> {
        Ok(Box::new(EmuStream {
            module: self.module.clone(),
            capture: None,
            capture_failed: false,
            graphs: Graphs::default(),
            recorded: HashMap::new(),
            next_graph: 0,
        }))
    }
}

enum Op {
    Kernel(Bound, Dims, u64),
    Copy {
        dst: DevPtr,
        src: DevPtr,
        bytes: usize,
    },
    Gemm {
        m: usize,
        n: usize,
        k: usize,
        a: DevPtr,
        b: DevPtr,
        c: DevPtr,
    },
}

pub struct EmuStream {
    module: Arc<Module>,
    /// The launches of a capture in progress.
    capture: Option<Vec<Op>>,
    /// A call the capture cannot hold was made: ending it fails, as CUDA's does.
    capture_failed: bool,
    graphs: Graphs<u64>,
    recorded: HashMap<u64, Vec<Op>>,
    next_graph: u64,
}

// SAFETY: the bound launches are owned by the stream, which one thread uses at a time.
unsafe impl Send for EmuStream {}

impl EmuStream {
    fn not_while_capturing(&mut self, what: &str) -> Result<()> {
        if self.capture.is_some() {
            self.capture_failed = true;
            return Err(Error::Device(format!("{what} during a graph capture")));
        }
        Ok(())
    }

    fn exec(&self, op: &Op) -> Result<()> {
        match op {
            Op::Kernel(b, d, f) => {
                let name = self
                    .module
                    .names
                    .get(*f as usize)
                    .map_or("?", String::as_str);
                b.run(*d, name)
            }
            // SAFETY: the recording's contract (the caller's on `copy`).
            Op::Copy { dst, src, bytes } => unsafe {
                std::ptr::copy(*src as *const u8, *dst as *mut u8, *bytes);
                Ok(())
            },
            // SAFETY: the caller's contract on `gemm_f16`.
            &Op::Gemm { m, n, k, a, b, c } => unsafe {
                gemm(m, n, k, a, b, c);
                Ok(())
            },
        }
    }

    fn queue(&mut self, op: Op) -> Result<()> {
        match &mut self.capture {
            Some(ops) => {
                ops.push(op);
                Ok(())
            }
            None => self.exec(&op),
        }
    }
}

/// `c[n][m] = sum_k a[m][k] * b[n][k]`, f16 inputs, f32 sums.
///
/// # Safety
/// The three addresses hold `m * k`, `n * k` f16 and `m * n` f32 values.
unsafe fn gemm(m: usize, n: usize, k: usize, a: DevPtr, b: DevPtr, c: DevPtr) {
    let widen = |p: DevPtr, len: usize| -> Vec<f32> {
        // SAFETY: the caller's contract: `len` f16 values at `p`.
        let s = unsafe { std::slice::from_raw_parts(p as *const u16, len) };
        s.iter()
            .map(|&h| half::f16::from_bits(h).to_f32())
            .collect()
    };
    let (a, b) = (widen(a, m * k), widen(b, n * k));
    // SAFETY: as above: `m * n` f32 values at `c`, not aliasing `a` or `b`'s copies.
    let c = unsafe { std::slice::from_raw_parts_mut(c as *mut f32, m * n) };
    for (j, out) in c.chunks_exact_mut(m).enumerate() {
        let bj = &b[j * k..(j + 1) * k];
        for (i, o) in out.iter_mut().enumerate() {
            *o = a[i * k..(i + 1) * k]
                .iter()
                .zip(bj)
                .map(|(x, y)| x * y)
                .sum();
        }
    }
}

impl GpuStream for EmuStream {
    unsafe fn upload(&mut self, dst: DevPtr, src: &[u8]) -> Result<()> {
        self.not_while_capturing("an upload")?;
        // SAFETY: the caller's contract on `dst`.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut u8, src.len()) };
        Ok(())
    }

    unsafe fn download(&mut self, dst: &mut [u8], src: DevPtr) -> Result<()> {
        self.not_while_capturing("a download")?;
        // SAFETY: the caller's contract on `src`.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    unsafe fn copy(&mut self, dst: DevPtr, src: DevPtr, bytes: usize) -> Result<()> {
        self.queue(Op::Copy { dst, src, bytes })
    }

    unsafe fn launch(&mut self, f: Func, dims: Dims, args: &mut [*mut c_void]) -> Result<()> {
        let Some(name) = self.module.names.get(f.0 as usize) else {
            return Err(Error::Device(format!("no kernel {}", f.0)));
        };
        // SAFETY: the caller's contract: `args` point at the kernel's parameters; the module
        // copies them by the kernel's own parameter types.
        let ptr = unsafe { (self.module.bind)(f.0 as i32, args.as_mut_ptr()) };
        if ptr.is_null() {
            return Err(Error::Oom(format!("binding the arguments of {name}")));
        }
        let bound = Bound {
            ptr,
            module: self.module.clone(),
        };
        self.queue(Op::Kernel(bound, dims, f.0))
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
        self.queue(Op::Gemm { m, n, k, a, b, c })
    }

    unsafe fn pin_host(&mut self, _ptr: *mut u8, _bytes: usize) -> bool {
        true
    }

    fn unpin_host(&mut self, _ptr: *mut u8) {}

    fn synchronize(&mut self) -> Result<()> {
        self.not_while_capturing("a synchronization")
    }

    fn begin_capture(&mut self) -> Result<()> {
        if self.capture.is_some() {
            return Err(Error::Device("a capture is already in progress".into()));
        }
        self.capture = Some(Vec::new());
        self.capture_failed = false;
        Ok(())
    }

    fn end_capture(&mut self) -> Result<GraphId> {
        let ops = self
            .capture
            .take()
            .ok_or_else(|| Error::Device("no capture in progress".into()))?;
        if std::mem::take(&mut self.capture_failed) {
            return Err(Error::Device(
                "the capture was invalidated by a call it cannot hold".into(),
            ));
        }
        self.next_graph += 1;
        self.recorded.insert(self.next_graph, ops);
        Ok(self.graphs.add(self.next_graph))
    }

    fn replay(&mut self, g: GraphId) -> Result<()> {
        let key = self.graphs.get(g)?;
        self.not_while_capturing("a graph replay")?;
        let ops = self
            .recorded
            .get(&key)
            .ok_or_else(|| Error::Internal(format!("graph {} has no recording", g.0)))?;
        ops.iter().try_for_each(|op| self.exec(op))
    }

    fn drop_graph(&mut self, g: GraphId) {
        if let Some(key) = self.graphs.take(g) {
            self.recorded.remove(&key);
        }
    }
}
