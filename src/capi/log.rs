//! `rf_log_set`: routing the library's log to the embedder.

use std::ffi::{CString, c_char, c_void};
use std::sync::Arc;

use crate::log::{self, Level};

/// Severity of a log message.
pub type rf_log_level = i32;
/// Detail for developers.
pub const RF_LOG_DEBUG: rf_log_level = 0;
/// Normal progress (a model was loaded).
pub const RF_LOG_INFO: rf_log_level = 1;
/// Something unexpected that the library worked around.
pub const RF_LOG_WARN: rf_log_level = 2;
/// A failure; the failing call also returns an error status.
pub const RF_LOG_ERROR: rf_log_level = 3;

/// Receives one log message: `text` is NUL-terminated UTF-8, valid only during the call.
/// May be called from any thread, concurrently; must not call `rf_*` functions.
pub type rf_log_callback =
    Option<unsafe extern "C" fn(level: rf_log_level, text: *const c_char, user_data: *mut c_void)>;

/// The embedder's `user_data`, carried to whichever thread logs.
struct UserData(*mut c_void);
// SAFETY: the pointer is only handed back to the embedder's callback, which rf_log_set's
// contract requires to be callable from any thread with this user_data.
unsafe impl Send for UserData {}
// SAFETY: as above; the library never dereferences it.
unsafe impl Sync for UserData {}

impl UserData {
    // A method, so closures capture the whole Send + Sync wrapper, not its raw-pointer field.
    fn get(&self) -> *mut c_void {
        self.0
    }
}

/// Sends the library's log messages to `callback` with `user_data`, for all threads, from now
/// on. NULL restores the default: warnings and errors to stderr, nothing else. To silence the
/// library, pass a callback that does nothing. Thread-safe; the callback must stay callable
/// until it is replaced.
#[unsafe(no_mangle)]
pub extern "C" fn rf_log_set(callback: rf_log_callback, user_data: *mut c_void) {
    super::guard_void(|| {
        let Some(cb) = callback else {
            log::set_sink(None);
            return;
        };
        let user_data = UserData(user_data);
        log::set_sink(Some(Arc::new(move |level: Level, text: &str| {
            let text = CString::new(text.replace('\0', "\\0")).unwrap_or_default();
            // SAFETY: cb is the embedder's function with the documented signature; text is a
            // valid NUL-terminated string for the duration of the call.
            unsafe { cb(level as rf_log_level, text.as_ptr(), user_data.get()) };
        })));
    })
}
