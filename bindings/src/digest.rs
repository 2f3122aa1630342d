//! Content digests for C: parse, print, compute and compare `sha256:<hex>` / `sha512:<hex>`.

use std::ffi::c_char;

use berth_core::{Algorithm, Digest};

use crate::arg::{bytes_arg, str_arg, write_out, write_str};
use crate::handle::{box_out, free_box};
use crate::panic::ffi_panic_boundary;
use crate::result::berth_result;

/// The longest digest string plus its NUL: `"sha512:"` and 128 hex digits, then `'\0'`.
pub const BERTH_DIGEST_STRING_MAX: usize = 136;

/// A content digest: an algorithm and its hash. Create it with `berth_digest_parse` or
/// `berth_digest_sha256`, free it with `berth_digest_free`. Immutable once created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct berth_digest {
    pub(crate) digest: Digest,
}

/// A digest algorithm.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum berth_algorithm {
    /// Returned for a NULL digest (or an algorithm newer than these bindings).
    BERTH_ALGORITHM_UNKNOWN = 0,
    /// SHA-256, the canonical algorithm of OCI content.
    BERTH_ALGORITHM_SHA256 = 1,
    /// SHA-512.
    BERTH_ALGORITHM_SHA512 = 2,
}

impl From<Algorithm> for berth_algorithm {
    fn from(a: Algorithm) -> Self {
        match a {
            Algorithm::Sha256 => berth_algorithm::BERTH_ALGORITHM_SHA256,
            Algorithm::Sha512 => berth_algorithm::BERTH_ALGORITHM_SHA512,
            _ => berth_algorithm::BERTH_ALGORITHM_UNKNOWN,
        }
    }
}

/// Parses a digest string strictly (`sha256:` + 64 or `sha512:` + 128 lowercase hex digits).
///
/// On success `*out` is a new digest to free with `berth_digest_free`; on failure `*out` is set
/// to NULL (if `out` is not NULL). Returns `BERTH_ERR_NULL` if `s` or `out` is NULL and
/// `BERTH_ERR_INVALID` if `s` is not a valid digest.
///
/// # Safety
///
/// `s` is NULL or a NUL-terminated string; `out` is NULL or valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn berth_digest_parse(
    s: *const c_char,
    out: *mut *mut berth_digest,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `out` is NULL or valid for a pointer write.
        try_ok!(unsafe { write_out(out, std::ptr::null_mut()) });
        // SAFETY: the caller promises `s` is NULL or NUL-terminated.
        let s = try_ok!(unsafe { str_arg(s) });
        let Ok(digest) = Digest::parse(s) else {
            return berth_result::BERTH_ERR_INVALID;
        };
        // SAFETY: checked non-NULL and valid above.
        unsafe { box_out(out, berth_digest { digest }) }
    })
}

/// Computes the sha256 digest of `len` bytes at `data` (`data` may be NULL when `len` is 0).
///
/// On success `*out` is a new digest to free with `berth_digest_free`; on failure `*out` is set
/// to NULL (if `out` is not NULL).
///
/// # Safety
///
/// `data` is NULL or valid for reads of `len` bytes; `out` is NULL or valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn berth_digest_sha256(
    data: *const u8,
    len: usize,
    out: *mut *mut berth_digest,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `out` is NULL or valid for a pointer write.
        try_ok!(unsafe { write_out(out, std::ptr::null_mut()) });
        // SAFETY: the caller promises `data` is NULL or valid for `len` bytes.
        let data = try_ok!(unsafe { bytes_arg(data, len) });
        let digest = Digest::sha256(data);
        // SAFETY: checked non-NULL and valid above.
        unsafe { box_out(out, berth_digest { digest }) }
    })
}

/// Frees a digest. NULL is a no-op.
///
/// # Safety
///
/// `digest` is NULL or was returned by this library and not freed yet. It must not be used after.
#[no_mangle]
pub unsafe extern "C" fn berth_digest_free(digest: *mut berth_digest) {
    // SAFETY: the caller promises `digest` is NULL or came from this library (`box_out`) and is
    // freed once.
    unsafe { free_box(digest) }
}

/// Writes the digest as `algorithm:hex` and a NUL into `buf` (`len` bytes; at most
/// `BERTH_DIGEST_STRING_MAX` are ever needed), and the text's length without the NUL into
/// `*written` (`written` may be NULL).
///
/// Returns `BERTH_ERR_BUFFER_TOO_SMALL` without copying anything if `len` is too small;
/// `*written` then holds the length needed.
///
/// # Safety
///
/// `digest` is NULL or a live digest; `buf` is NULL or valid for writes of `len` bytes;
/// `written` is NULL or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn berth_digest_to_string(
    digest: *const berth_digest,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `digest` is NULL or a live digest.
        let digest = try_some!(unsafe { digest.as_ref() });
        // SAFETY: the caller promises `buf`/`len` and `written` are valid or NULL.
        unsafe { write_str(&digest.digest.to_string(), buf, len, written) }
    })
}

/// The digest's algorithm; `BERTH_ALGORITHM_UNKNOWN` for NULL.
///
/// # Safety
///
/// `digest` is NULL or a live digest.
#[no_mangle]
pub unsafe extern "C" fn berth_digest_algorithm(digest: *const berth_digest) -> berth_algorithm {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `digest` is NULL or a live digest.
        let digest = try_some!(unsafe { digest.as_ref() });
        digest.digest.algorithm().into()
    })
}

/// True if both digests are non-NULL and equal (same algorithm and hash). NULL gives false.
///
/// # Safety
///
/// `a` and `b` are each NULL or a live digest.
#[no_mangle]
pub unsafe extern "C" fn berth_digest_equal(
    a: *const berth_digest,
    b: *const berth_digest,
) -> bool {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `a` is NULL or a live digest.
        let a = try_some!(unsafe { a.as_ref() });
        // SAFETY: the caller promises `b` is NULL or a live digest.
        let b = try_some!(unsafe { b.as_ref() });
        a.digest == b.digest
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;
    use std::ptr::{null, null_mut};

    const EMPTY: &CStr = c"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parse(s: &CStr) -> (berth_result, *mut berth_digest) {
        let mut out = null_mut();
        // SAFETY: `s` is NUL-terminated, `out` a valid local.
        let r = unsafe { berth_digest_parse(s.as_ptr(), &mut out) };
        (r, out)
    }

    fn to_string(d: *const berth_digest) -> String {
        let mut buf = [0 as c_char; BERTH_DIGEST_STRING_MAX];
        let mut n = 0;
        // SAFETY: `d` is a live digest, `buf` and `n` valid locals.
        let r = unsafe { berth_digest_to_string(d, buf.as_mut_ptr(), buf.len(), &mut n) };
        assert_eq!(r, berth_result::BERTH_OK);
        // SAFETY: `buf` was NUL-terminated by a successful call.
        let s = unsafe { CStr::from_ptr(buf.as_ptr()) };
        assert_eq!(s.to_bytes().len(), n);
        s.to_str().unwrap().to_owned()
    }

    #[test]
    fn parse_print_hash_compare() {
        let (r, d) = parse(EMPTY);
        assert_eq!(r, berth_result::BERTH_OK);
        assert_eq!(to_string(d), EMPTY.to_str().unwrap());
        let mut h = null_mut();
        // SAFETY: NULL data with len 0 is allowed; `h` a valid local.
        let r = unsafe { berth_digest_sha256(null(), 0, &mut h) };
        assert_eq!(r, berth_result::BERTH_OK);
        // SAFETY: both are live digests, freed once below.
        unsafe {
            assert!(berth_digest_equal(d, h));
            assert_eq!(
                berth_digest_algorithm(d),
                berth_algorithm::BERTH_ALGORITHM_SHA256
            );
            berth_digest_free(d);
            berth_digest_free(h);
        }
        let long = std::ffi::CString::new(format!("sha512:{}", "ab".repeat(64))).unwrap();
        let (r, d) = parse(&long);
        assert_eq!(r, berth_result::BERTH_OK);
        let s = to_string(d);
        assert_eq!(s.len() + 1, BERTH_DIGEST_STRING_MAX);
        // SAFETY: `d` is live and freed once.
        unsafe { berth_digest_free(d) };
    }

    #[test]
    fn bad_strings_are_invalid_and_clear_out() {
        for bad in [c"", c"sha256:abc", c"md5:00", c"SHA256:00", c"e3b0c442"] {
            let (r, d) = parse(bad);
            assert_eq!(r, berth_result::BERTH_ERR_INVALID, "{bad:?}");
            assert!(d.is_null());
        }
    }

    #[test]
    fn nulls_are_refused_or_harmless() {
        let mut out = std::ptr::dangling_mut::<berth_digest>();
        // SAFETY: NULL input string is allowed by the contract; `out` a valid local.
        let r = unsafe { berth_digest_parse(null(), &mut out) };
        assert_eq!(r, berth_result::BERTH_ERR_NULL);
        assert!(out.is_null(), "out is cleared even when the input is NULL");
        // SAFETY: NULL out is allowed by the contract.
        let r = unsafe { berth_digest_parse(EMPTY.as_ptr(), null_mut()) };
        assert_eq!(r, berth_result::BERTH_ERR_NULL);
        // SAFETY: NULL data with a length is refused before any read.
        let r = unsafe { berth_digest_sha256(null(), 5, &mut out) };
        assert_eq!(r, berth_result::BERTH_ERR_NULL);
        // SAFETY: NULL pointers are allowed by each function's contract.
        unsafe {
            berth_digest_free(null_mut());
            assert!(!berth_digest_equal(null(), null()));
            assert_eq!(
                berth_digest_algorithm(null()),
                berth_algorithm::BERTH_ALGORITHM_UNKNOWN
            );
            let mut buf = [0 as c_char; 8];
            let r = berth_digest_to_string(null(), buf.as_mut_ptr(), 8, null_mut());
            assert_eq!(r, berth_result::BERTH_ERR_NULL);
        }
    }

    #[test]
    fn to_string_reports_the_size_it_needs() {
        let (_, d) = parse(EMPTY);
        let mut n = 0;
        // SAFETY: `d` is live; a NULL buffer with len 0 is a size query.
        let r = unsafe { berth_digest_to_string(d, null_mut(), 0, &mut n) };
        assert_eq!((r, n), (berth_result::BERTH_ERR_BUFFER_TOO_SMALL, 71));
        // SAFETY: `d` is live and freed once.
        unsafe { berth_digest_free(d) };
    }
}
