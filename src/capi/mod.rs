//! The C boundary: opaque handles, statuses, the thread-local last error, panic catching and
//! argument checks. It contains no logic of its own: every function converts its arguments,
//! calls the safe Rust API and converts the result (see docs/C-API.md for the conventions).
//!
//! Every exported function runs its body through [`guard`] (or [`guard_void`]), which catches
//! panics so none crosses into C, and reports errors as a status plus a message.

// C names (rf_status, rf_model_t) are the API; cbindgen copies them into the header.
#![allow(non_camel_case_types)]

mod args;
mod context;
mod engine;
mod log;
mod model;
mod sampler;
mod status;
mod vocab;

pub use context::*;
pub use engine::*;
pub use log::*;
pub use model::*;
pub use sampler::*;
pub use status::*;
pub use vocab::*;

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::panic::{self, AssertUnwindSafe};

use crate::Error;
use crate::error::Status;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(msg: &str) {
    // A message from a hostile file may hold NUL bytes; they would end the C string early.
    let c = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

fn clear_last_error() {
    LAST_ERROR.with(|e| *e.borrow_mut() = CString::default());
}

/// The last error message of this thread; points into thread-local storage that stays valid
/// until the next call that sets or clears it.
fn last_error_ptr() -> *const std::ffi::c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

fn panic_text(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "unknown panic payload"
    }
}

/// Runs the body of an exported function: clears the last error, catches panics (reported as
/// `RF_ERR_INTERNAL`), and turns an error into its status with its message as the last error.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Error>) -> rf_status {
    clear_last_error();
    match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => RF_OK,
        Ok(Err(e)) => {
            set_last_error(&e.to_string());
            e.status() as rf_status
        }
        Err(payload) => {
            set_last_error(&format!("internal error: panic: {}", panic_text(&*payload)));
            Status::Internal as rf_status
        }
    }
}

/// `guard` for functions that return nothing: a panic is caught and logged.
pub(crate) fn guard_void(body: impl FnOnce()) {
    clear_last_error();
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(body)) {
        let msg = format!("internal error: panic: {}", panic_text(&*payload));
        set_last_error(&msg);
        crate::log::log(crate::log::Level::Error, &msg);
    }
}

/// A C string argument as a `CStr`, or `InvalidArg` naming the argument when it is NULL.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string that outlives the returned reference.
pub(crate) unsafe fn c_str<'a>(p: *const std::ffi::c_char, what: &str) -> Result<&'a CStr, Error> {
    if p.is_null() {
        return Err(Error::InvalidArg(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    Ok(unsafe { CStr::from_ptr(p) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        // SAFETY: the pointer is to this thread's NUL-terminated last error.
        unsafe { CStr::from_ptr(rf_last_error_message()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_internal_error_with_its_text() {
        let status = guard(|| panic!("boom at the boundary"));
        assert_eq!(status, RF_ERR_INTERNAL);
        assert!(
            last_error().contains("boom at the boundary"),
            "{}",
            last_error()
        );
        // The next call clears it.
        assert_eq!(guard(|| Ok(())), RF_OK);
        assert_eq!(last_error(), "");
    }

    #[test]
    fn errors_map_to_status_and_message_without_nul_truncation() {
        let status = guard(|| Err(Error::NotFound("key \"a\0b\"".into())));
        assert_eq!(status, RF_ERR_NOT_FOUND);
        assert_eq!(last_error(), "key \"a\\0b\"");
    }

    #[test]
    fn void_guard_swallows_panics() {
        guard_void(|| panic!("in a destructor"));
        assert!(last_error().contains("in a destructor"));
    }
}
