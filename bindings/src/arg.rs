//! Arguments at the C boundary: NULL checks, borrowed strings and byte ranges in, strings out.
//!
//! The raw-pointer work of the crate lives here, in small `unsafe fn`s whose `# Safety` sections
//! restate the exported function's contract; the exported functions call them inside
//! `// SAFETY:`-commented blocks.

use std::ffi::{c_char, CStr, CString};

use crate::result::berth_result;

/// Unwraps an `Option`, or returns the enclosing body's `Fallback::on_null()` value.
macro_rules! try_some {
    ($e:expr) => {
        match $e {
            Some(value) => value,
            None => return $crate::panic::Fallback::on_null(),
        }
    };
}

/// Unwraps a `Result<T, berth_result>`, or returns the error code from the enclosing body.
macro_rules! try_ok {
    ($e:expr) => {
        match $e {
            Ok(value) => value,
            Err(code) => return code,
        }
    };
}

/// Borrows a NUL-terminated UTF-8 string argument.
///
/// Errors: NULL gives `BERTH_ERR_NULL`, invalid UTF-8 gives `BERTH_ERR_INVALID`.
///
/// # Safety
///
/// `p` is NULL or points to a NUL-terminated string that stays alive and unchanged for `'a`.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char) -> Result<&'a str, berth_result> {
    if p.is_null() {
        return Err(berth_result::BERTH_ERR_NULL);
    }
    // SAFETY: `p` is not NULL, and the caller promises a NUL-terminated string live for `'a`.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|_| berth_result::BERTH_ERR_INVALID)
}

/// Borrows an array of `len` `T`s at `p`. NULL is allowed when `len` is 0.
///
/// Errors: NULL with `len > 0` gives `BERTH_ERR_NULL`; an array of more than `isize::MAX` bytes
/// gives `BERTH_ERR_INVALID`.
///
/// # Safety
///
/// If `len > 0` and `p` is not NULL, `p` points to `len` readable, aligned and initialised `T`s
/// that stay alive and unchanged for `'a`.
pub(crate) unsafe fn slice_arg<'a, T>(p: *const T, len: usize) -> Result<&'a [T], berth_result> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(berth_result::BERTH_ERR_NULL);
    }
    if len > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(berth_result::BERTH_ERR_INVALID);
    }
    // SAFETY: `p` is not NULL, the size fits in isize, and the caller promises `len` readable,
    // aligned `T`s live for `'a`.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Borrows `len` bytes at `p`. NULL is allowed when `len` is 0.
///
/// Errors: NULL with `len > 0` gives `BERTH_ERR_NULL`; `len > isize::MAX` gives
/// `BERTH_ERR_INVALID`.
///
/// # Safety
///
/// If `len > 0` and `p` is not NULL, `p` points to `len` readable bytes that stay alive and
/// unchanged for `'a`.
pub(crate) unsafe fn bytes_arg<'a>(p: *const u8, len: usize) -> Result<&'a [u8], berth_result> {
    // SAFETY: the caller's promise is that of `slice_arg`; `u8` has no alignment requirement.
    unsafe { slice_arg(p, len) }
}

/// Writes `value` through an out-pointer, which may point to uninitialised memory.
///
/// Errors: NULL gives `BERTH_ERR_NULL`.
///
/// # Safety
///
/// `p` is NULL or valid and aligned for a write of one `T`.
pub(crate) unsafe fn write_out<T>(p: *mut T, value: T) -> Result<(), berth_result> {
    if p.is_null() {
        return Err(berth_result::BERTH_ERR_NULL);
    }
    // SAFETY: `p` is not NULL and the caller promises it is valid and aligned for a write.
    // `write` does not read or drop the old contents, which may be uninitialised.
    unsafe { p.write(value) };
    Ok(())
}

/// Copies `text` and a NUL into the caller's buffer `buf` of `len` bytes, and its length
/// (without the NUL) into `*written` if `written` is not NULL.
///
/// If the buffer cannot hold the text and the NUL, nothing is copied and the result is
/// `BERTH_ERR_BUFFER_TOO_SMALL` (`*written` still tells the length, so `buf = NULL, len = 0`
/// asks for the size). A NULL `buf` with `len > 0` is `BERTH_ERR_NULL`.
///
/// # Safety
///
/// `buf` is NULL or valid for writes of `len` bytes; `written` is NULL or valid for one write.
pub(crate) unsafe fn write_str(
    text: &str,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> berth_result {
    if buf.is_null() && len > 0 {
        return berth_result::BERTH_ERR_NULL;
    }
    if !written.is_null() {
        // SAFETY: not NULL, and the caller promises it is valid for one write.
        unsafe { written.write(text.len()) };
    }
    if text.len() >= len {
        return berth_result::BERTH_ERR_BUFFER_TOO_SMALL;
    }
    // SAFETY: `buf` is not NULL (len > text.len() >= 0), valid for `len` bytes by the caller's
    // promise, and `text.len() + 1 <= len`. A Rust `&str` cannot overlap a C-owned buffer we
    // are allowed to write.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        buf.add(text.len()).write(0);
    }
    berth_result::BERTH_OK
}

/// A C string of `s`. Strings handed to C come from C strings, digests and fixed names, but a
/// loaded snapshot tree or task table may hold a `\0` (JSON can escape one): it is replaced by
/// `?` rather than cut, keeping the length.
pub(crate) fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "?")).unwrap_or_default()
}

/// Keeps `s` as a C string in `store` and returns its pointer and length (without the NUL).
/// Moving a `CString` does not move its buffer, so the pointer stays valid while `store` holds
/// it.
pub(crate) fn keep(store: &mut Vec<CString>, s: &str) -> (*const c_char, usize) {
    let c = c_string(s);
    let lent = (c.as_ptr(), c.as_bytes().len());
    store.push(c);
    lent
}

/// Copies `text` into a fixed, NUL-terminated C array, cutting it to `N - 1` bytes if needed.
pub(crate) fn fixed_str<const N: usize>(text: &str) -> [c_char; N] {
    let mut out = [0 as c_char; N];
    for (dst, src) in out.iter_mut().zip(text.bytes().take(N.saturating_sub(1))) {
        *dst = src as c_char;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_string_and_bytes_are_refused() {
        // SAFETY: NULL is allowed by the contract.
        let s = unsafe { str_arg(std::ptr::null()) };
        assert_eq!(s, Err(berth_result::BERTH_ERR_NULL));
        // SAFETY: NULL with len 0 is allowed by the contract.
        let b = unsafe { bytes_arg(std::ptr::null(), 0) };
        assert_eq!(b, Ok(&[][..]));
        // SAFETY: NULL is never dereferenced.
        let b = unsafe { bytes_arg(std::ptr::null(), 3) };
        assert_eq!(b, Err(berth_result::BERTH_ERR_NULL));
        // SAFETY: NULL is allowed by the contract.
        let w = unsafe { write_out(std::ptr::null_mut::<u32>(), 7) };
        assert_eq!(w, Err(berth_result::BERTH_ERR_NULL));
    }

    #[test]
    fn non_utf8_string_is_invalid() {
        let bad = b"\xff\xfe\0";
        // SAFETY: `bad` is NUL-terminated and lives across the call.
        let s = unsafe { str_arg(bad.as_ptr().cast()) };
        assert_eq!(s, Err(berth_result::BERTH_ERR_INVALID));
    }

    #[test]
    fn write_str_sizes_copies_and_refuses() {
        let mut written = 99usize;
        // SAFETY: NULL buf with len 0 is a size query; `written` is a valid local.
        let r = unsafe { write_str("abc", std::ptr::null_mut(), 0, &mut written) };
        assert_eq!((r, written), (berth_result::BERTH_ERR_BUFFER_TOO_SMALL, 3));

        let mut buf = [1 as c_char; 3];
        // SAFETY: `buf` is 3 writable bytes.
        let r = unsafe { write_str("abc", buf.as_mut_ptr(), 3, std::ptr::null_mut()) };
        assert_eq!(r, berth_result::BERTH_ERR_BUFFER_TOO_SMALL);
        assert_eq!(buf, [1; 3], "nothing copied on BUFFER_TOO_SMALL");

        let mut buf = [1 as c_char; 4];
        // SAFETY: `buf` is 4 writable bytes, `written` a valid local.
        let r = unsafe { write_str("abc", buf.as_mut_ptr(), 4, &mut written) };
        assert_eq!((r, written), (berth_result::BERTH_OK, 3));
        assert_eq!(buf, [b'a' as c_char, b'b' as c_char, b'c' as c_char, 0]);

        // SAFETY: a NULL buffer with a length is refused before any write.
        let r = unsafe { write_str("abc", std::ptr::null_mut(), 8, &mut written) };
        assert_eq!(r, berth_result::BERTH_ERR_NULL);
    }

    #[test]
    fn slice_arg_refuses_null_and_oversized_arrays() {
        // SAFETY: NULL with len 0 is allowed by the contract.
        let s = unsafe { slice_arg(std::ptr::null::<u64>(), 0) };
        assert_eq!(s, Ok(&[][..]));
        // SAFETY: NULL is never dereferenced.
        let s = unsafe { slice_arg(std::ptr::null::<u64>(), 1) };
        assert_eq!(s, Err(berth_result::BERTH_ERR_NULL));
        // SAFETY: a length over isize::MAX bytes is refused before any read.
        let s = unsafe { slice_arg(std::ptr::dangling::<u64>(), usize::MAX / 8 + 1) };
        assert_eq!(s, Err(berth_result::BERTH_ERR_INVALID));
        let items = [1u64, 2, 3];
        // SAFETY: `items` is 3 readable u64s that outlive `s`.
        let s = unsafe { slice_arg(items.as_ptr(), items.len()) };
        assert_eq!(s, Ok(&items[..]));
    }

    #[test]
    fn kept_strings_replace_nul_and_stay_put() {
        let mut store = Vec::new();
        let (p, len) = keep(&mut store, "a\0b");
        let _ = keep(&mut store, "more, moving nothing");
        assert_eq!(len, 3);
        // SAFETY: `store` holds the string `p` points into.
        assert_eq!(unsafe { CStr::from_ptr(p) }.to_bytes(), b"a?b");
    }

    #[test]
    fn fixed_str_terminates_and_truncates() {
        let a: [c_char; 4] = fixed_str("ab");
        assert_eq!(a, [b'a' as c_char, b'b' as c_char, 0, 0]);
        let b: [c_char; 3] = fixed_str("abcdef");
        assert_eq!(b, [b'a' as c_char, b'b' as c_char, 0]);
    }
}
