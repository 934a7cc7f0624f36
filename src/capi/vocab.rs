//! Tokenizer, vocabulary and chat-template calls on a model. All are thread-safe: a model's
//! tokenizer is immutable.

use std::ffi::c_char;
use std::mem::size_of;

use super::args::{Versioned, input, write_bytes, write_slice, write_text, write_versioned};
use super::model::{model_ref, rf_model_t};
use super::{c_str, guard, rf_status};
use crate::tokenizer::{ChatMessage, TokenId};
use crate::{Error, Model};

/// Facts about a model's vocabulary. Set `struct_size = sizeof(rf_vocab_info)` first.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rf_vocab_info {
    /// `sizeof(rf_vocab_info)` as the caller was compiled; set by the caller.
    pub struct_size: u32,
    /// Tokens in the vocabulary (valid ids are 0 to n_tokens - 1).
    pub n_tokens: i32,
    /// Beginning-of-sequence token, or -1.
    pub bos: i32,
    /// End-of-sequence token, or -1.
    pub eos: i32,
    /// End-of-turn token, or -1.
    pub eot: i32,
    /// Padding token, or -1.
    pub pad: i32,
    /// 1 when tokenizing with add_special prepends BOS.
    pub add_bos: u8,
    /// 1 when tokenizing with add_special appends EOS.
    pub add_eos: u8,
}

// SAFETY: repr(C), starts with struct_size, integers only.
unsafe impl Versioned for rf_vocab_info {
    const MIN_SIZE: usize = size_of::<rf_vocab_info>();
    const NAME: &'static str = "rf_vocab_info";
}

/// One chat message: NUL-terminated UTF-8 role ("system", "user", "assistant", ...) and
/// content.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rf_chat_message {
    pub role: *const c_char,
    pub content: *const c_char,
}

fn token_id(model: &Model, token: i32) -> Result<TokenId, Error> {
    let n = model.tokenizer().vocab().len();
    u32::try_from(token)
        .ok()
        .filter(|&t| (t as usize) < n)
        .ok_or_else(|| {
            Error::InvalidArg(format!("token {token} is out of range (vocabulary of {n})"))
        })
}

/// Tokenizes `text_len` bytes of `text` (UTF-8; NULL only with length 0). `add_special`: add
/// BOS/EOS as the model asks; `parse_special`: turn control-token texts such as
/// `<|im_start|>` into their tokens. Two-call protocol: `*out_len` receives the token count;
/// the tokens are written only when `cap >= *out_len`. Statuses: `RF_OK`;
/// `RF_ERR_BUFFER_TOO_SMALL`; `RF_ERR_INVALID_ARG` (NULL model or out_len, NULL text with a
/// length). Bytes that are not UTF-8 are tokenized byte by byte (docs/TOKENIZER.md).
/// Thread-safe.
///
/// # Safety
/// `model` NULL or live; `text` NULL or `text_len` readable bytes; `tokens` NULL or `cap`
/// writable int32s; `out_len` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_vocab_tokenize(
    model: *const rf_model_t,
    text: *const c_char,
    text_len: usize,
    add_special: u8,
    parse_special: u8,
    tokens: *mut i32,
    cap: usize,
    out_len: *mut usize,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let model = unsafe { model_ref(model) }?;
        // SAFETY: contract of this function.
        let text = unsafe { input(text.cast::<u8>(), text_len, "text") }?;
        let ids = model
            .tokenizer()
            .tokenize(text, add_special != 0, parse_special != 0);
        let ids: Vec<i32> = ids.into_iter().map(|t| t as i32).collect();
        // SAFETY: contract of this function.
        unsafe { write_slice(&ids, tokens, cap, out_len) }
    })
}

/// The bytes of one token (not NUL-terminated; a piece can be part of a UTF-8 character).
/// `special`: render control tokens as their text (otherwise they give no bytes). Two-call
/// protocol as `rf_vocab_tokenize`, counted in bytes. Statuses: `RF_OK`;
/// `RF_ERR_BUFFER_TOO_SMALL`; `RF_ERR_INVALID_ARG` (NULL, an out-of-range token). Thread-safe.
///
/// # Safety
/// `model` NULL or live; `buf` NULL or `cap` writable bytes; `out_len` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_token_to_piece(
    model: *const rf_model_t,
    token: i32,
    special: u8,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let model = unsafe { model_ref(model) }?;
        let t = token_id(model, token)?;
        let mut piece = Vec::new();
        model
            .tokenizer()
            .token_to_piece(t, special != 0, &mut piece)?;
        // SAFETY: contract of this function.
        unsafe { write_bytes(&piece, buf, cap, out_len) }
    })
}

/// Detokenizes `n` tokens into bytes (not NUL-terminated). `remove_special`: drop a leading
/// BOS and trailing EOS the model adds; `unparse_special`: render control tokens as text.
/// Two-call protocol in bytes. Statuses: `RF_OK`; `RF_ERR_BUFFER_TOO_SMALL`;
/// `RF_ERR_INVALID_ARG` (NULL, an out-of-range token). Thread-safe.
///
/// # Safety
/// `model` NULL or live; `tokens` NULL or `n` readable int32s; `buf` NULL or `cap` writable
/// bytes; `out_len` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_detokenize(
    model: *const rf_model_t,
    tokens: *const i32,
    n: usize,
    remove_special: u8,
    unparse_special: u8,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let model = unsafe { model_ref(model) }?;
        // SAFETY: contract of this function.
        let tokens = unsafe { input(tokens, n, "tokens") }?;
        let ids = tokens
            .iter()
            .map(|&t| token_id(model, t))
            .collect::<Result<Vec<_>, _>>()?;
        let text = model
            .tokenizer()
            .detokenize(&ids, remove_special != 0, unparse_special != 0)?;
        // SAFETY: contract of this function.
        unsafe { write_bytes(&text, buf, cap, out_len) }
    })
}

/// Fills `*out` with the vocabulary's size, special tokens and flags. Thread-safe.
/// Statuses: `RF_OK`, `RF_ERR_INVALID_ARG` (NULL, bad struct_size).
///
/// # Safety
/// `model` NULL or live; `out` NULL or a writable `rf_vocab_info` of `out->struct_size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_vocab_get_info(
    model: *const rf_model_t,
    out: *mut rf_vocab_info,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let v = unsafe { model_ref(model) }?.tokenizer().vocab();
        let id = |t: Option<TokenId>| t.map_or(-1, |t| t as i32);
        let info = rf_vocab_info {
            struct_size: size_of::<rf_vocab_info>() as u32,
            n_tokens: v.len() as i32,
            bos: id(v.bos),
            eos: id(v.eos),
            eot: id(v.eot),
            pad: id(v.pad),
            add_bos: u8::from(v.add_bos),
            add_eos: u8::from(v.add_eos),
        };
        // SAFETY: contract of this function.
        unsafe { write_versioned(out, &info) }
    })
}

/// 1 when `token` ends generation (EOS, end-of-turn and the like), else 0 (also for NULL or an
/// out-of-range token). Thread-safe.
///
/// # Safety
/// `model` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_vocab_is_eog(model: *const rf_model_t, token: i32) -> u8 {
    let mut eog = 0;
    guard(|| {
        // SAFETY: contract of this function.
        let model = unsafe { model_ref(model) }?;
        let t = token_id(model, token)?;
        eog = u8::from(model.tokenizer().vocab().is_eog(t));
        Ok(())
    });
    eog
}

/// Renders a chat with the template `tmpl` (NUL-terminated Jinja; NULL = the model's own) into
/// `buf` as NUL-terminated UTF-8 (two-call text protocol, as `rf_model_meta_str`).
/// `add_generation_prompt`: open the assistant's turn. Statuses: `RF_OK`;
/// `RF_ERR_BUFFER_TOO_SMALL`; `RF_ERR_NOT_FOUND` when `tmpl` is NULL and the model has no
/// template; `RF_ERR_INVALID_ARG` when the template fails (the message says why), a message
/// has a NULL field or text that is not UTF-8. Thread-safe.
///
/// # Safety
/// `model` NULL or live; `tmpl` NULL or NUL-terminated; `msgs` NULL or `n` readable messages
/// whose fields are NUL-terminated; `buf` NULL or `cap` writable bytes; `out_len` NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_chat_apply_template(
    model: *const rf_model_t,
    tmpl: *const c_char,
    msgs: *const rf_chat_message,
    n: usize,
    add_generation_prompt: u8,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let model = unsafe { model_ref(model) }?;
        fn utf8<'s>(s: &'s std::ffi::CStr, what: &str) -> Result<&'s str, Error> {
            s.to_str()
                .map_err(|_| Error::InvalidArg(format!("{what} is not valid UTF-8")))
        }
        let template = if tmpl.is_null() {
            None
        } else {
            // SAFETY: non-NULL and NUL-terminated by contract.
            Some(utf8(unsafe { c_str(tmpl, "tmpl") }?, "tmpl")?)
        };
        // SAFETY: contract of this function.
        let raw = unsafe { input(msgs, n, "msgs") }?;
        let mut messages = Vec::with_capacity(raw.len());
        for (i, m) in raw.iter().enumerate() {
            // SAFETY: fields NULL or NUL-terminated by contract; c_str rejects NULL.
            let role = utf8(
                unsafe { c_str(m.role, &format!("msgs[{i}].role")) }?,
                "role",
            )?;
            // SAFETY: as above.
            let content = utf8(
                unsafe { c_str(m.content, &format!("msgs[{i}].content")) }?,
                "content",
            )?;
            messages.push(ChatMessage { role, content });
        }
        let text = model.apply_chat_template(template, &messages, add_generation_prompt != 0)?;
        // SAFETY: contract of this function.
        unsafe { write_text(text.as_bytes(), buf, cap, out_len) }
    })
}
