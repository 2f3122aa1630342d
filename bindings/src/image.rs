//! Image references and platforms for C: parse and normalise `busybox` or `linux/aarch64`, print
//! their parts, and match a manifest's platform against a host's.

use std::borrow::Cow;
use std::ffi::c_char;

use berth_core::image::{Matcher, Platform, Reference};

use crate::arg::{str_arg, write_out, write_str};
use crate::handle::{box_out, free_box};
use crate::panic::ffi_panic_boundary;
use crate::result::berth_result;

/// A parsed, normalised image reference (`docker.io/library/busybox:latest`). Create it with
/// `berth_reference_parse`, free it with `berth_reference_free`. Immutable once created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct berth_reference {
    reference: Reference,
}

/// A parsed, normalised platform (`linux/arm64/v8`). Create it with `berth_platform_parse`,
/// free it with `berth_platform_free`. Immutable once created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct berth_platform {
    platform: Platform,
}

#[cfg(test)]
thread_local! {
    /// Makes the next exported call of this module on this thread panic inside its boundary.
    static PANIC_NEXT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Panics if a test asked for it; nothing outside tests.
#[inline]
fn injected_panic() {
    #[cfg(test)]
    if PANIC_NEXT.with(|p| p.replace(false)) {
        panic!("injected panic");
    }
}

/// Parses `s` with `parse` and hands the boxed result to C through `out` (NULL on failure).
///
/// # Safety
///
/// `s` is NULL or a NUL-terminated string; `out` is NULL or valid for a pointer write.
unsafe fn parse_into<T>(
    s: *const c_char,
    out: *mut *mut T,
    parse: impl FnOnce(&str) -> Option<T>,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `out` is NULL or valid for a pointer write.
        try_ok!(unsafe { write_out(out, std::ptr::null_mut()) });
        injected_panic();
        // SAFETY: the caller promises `s` is NULL or NUL-terminated.
        let s = try_ok!(unsafe { str_arg(s) });
        let Some(value) = parse(s) else {
            return berth_result::BERTH_ERR_INVALID;
        };
        // SAFETY: checked non-NULL and valid above.
        unsafe { box_out(out, value) }
    })
}

/// Parses and normalises an image reference as containerd does (docker's
/// `ParseNormalizedNamed`, then the tag `latest` if there is neither tag nor digest):
/// `busybox` is `docker.io/library/busybox:latest`, `index.docker.io/x/y` is
/// `docker.io/x/y:latest`, `host:5000/x@sha256:...` keeps its domain and digest.
///
/// On success `*out` is a new reference to free with `berth_reference_free`; on failure `*out`
/// is set to NULL (if `out` is not NULL). Returns `BERTH_ERR_NULL` if `s` or `out` is NULL and
/// `BERTH_ERR_INVALID` if `s` is not UTF-8 or not a valid reference.
///
/// # Safety
///
/// `s` is NULL or a NUL-terminated string; `out` is NULL or valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn berth_reference_parse(
    s: *const c_char,
    out: *mut *mut berth_reference,
) -> berth_result {
    // SAFETY: the caller's promises for `s` and `out` are those of `parse_into`.
    unsafe {
        parse_into(s, out, |s| {
            Reference::parse(s)
                .ok()
                .map(|reference| berth_reference { reference })
        })
    }
}

/// Frees a reference. NULL is a no-op.
///
/// # Safety
///
/// `reference` is NULL or was returned by this library and not freed yet. It must not be used
/// after.
#[no_mangle]
pub unsafe extern "C" fn berth_reference_free(reference: *mut berth_reference) {
    // SAFETY: the caller promises `reference` is NULL or came from this library (`box_out`) and
    // is freed once.
    unsafe { free_box(reference) }
}

/// Copies one text of a reference into the caller's buffer, inside the panic boundary.
///
/// # Safety
///
/// As the exported accessors: `reference` is NULL or live; `buf`/`len` and `written` valid or
/// NULL.
unsafe fn reference_text(
    reference: *const berth_reference,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
    text: impl FnOnce(&Reference) -> Cow<'_, str>,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `reference` is NULL or a live reference.
        let reference = try_some!(unsafe { reference.as_ref() });
        injected_panic();
        let text = text(&reference.reference);
        // SAFETY: the caller promises `buf`/`len` and `written` are valid or NULL.
        unsafe { write_str(&text, buf, len, written) }
    })
}

/// Writes the full normalised reference (`docker.io/library/busybox:latest`,
/// `host:5000/x/y:tag@sha256:...`) and a NUL into `buf` (`len` bytes), and the text's length
/// without the NUL into `*written` (`written` may be NULL).
///
/// Returns `BERTH_ERR_NULL` for a NULL reference (or a NULL `buf` with `len > 0`) and
/// `BERTH_ERR_BUFFER_TOO_SMALL` without copying anything if `len` is too small; `*written` then
/// holds the length needed (`buf = NULL, len = 0` asks for it).
///
/// # Safety
///
/// `reference` is NULL or a live reference; `buf` is NULL or valid for writes of `len` bytes;
/// `written` is NULL or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn berth_reference_to_string(
    reference: *const berth_reference,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> berth_result {
    // SAFETY: the caller's promises are the helper's.
    unsafe { reference_text(reference, buf, len, written, |r| r.to_string().into()) }
}

/// Writes the registry domain, with its port if any (`docker.io`, `127.0.0.1:5000`), as
/// `berth_reference_to_string` writes its text.
///
/// # Safety
///
/// As `berth_reference_to_string`.
#[no_mangle]
pub unsafe extern "C" fn berth_reference_domain(
    reference: *const berth_reference,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> berth_result {
    // SAFETY: the caller's promises are the helper's.
    unsafe { reference_text(reference, buf, len, written, |r| r.domain().into()) }
}

/// Writes the repository path within the registry (`library/busybox`, `x/y`), as
/// `berth_reference_to_string` writes its text.
///
/// # Safety
///
/// As `berth_reference_to_string`.
#[no_mangle]
pub unsafe extern "C" fn berth_reference_path(
    reference: *const berth_reference,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> berth_result {
    // SAFETY: the caller's promises are the helper's.
    unsafe { reference_text(reference, buf, len, written, |r| r.path().into()) }
}

/// Writes the tag (`latest`), or the empty string if the reference has none (a reference with
/// only a digest), as `berth_reference_to_string` writes its text.
///
/// # Safety
///
/// As `berth_reference_to_string`.
#[no_mangle]
pub unsafe extern "C" fn berth_reference_tag(
    reference: *const berth_reference,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> berth_result {
    // SAFETY: the caller's promises are the helper's.
    unsafe {
        reference_text(reference, buf, len, written, |r| {
            r.tag().unwrap_or_default().into()
        })
    }
}

/// Writes the digest (`sha256:...`, at most `BERTH_DIGEST_STRING_MAX` bytes with the NUL), or
/// the empty string if the reference has none, as `berth_reference_to_string` writes its text.
///
/// # Safety
///
/// As `berth_reference_to_string`.
#[no_mangle]
pub unsafe extern "C" fn berth_reference_digest(
    reference: *const berth_reference,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> berth_result {
    // SAFETY: the caller's promises are the helper's.
    unsafe {
        reference_text(reference, buf, len, written, |r| {
            r.digest().map(|d| d.to_string()).unwrap_or_default().into()
        })
    }
}

/// Writes the docker-style short form with tag and digest (`busybox:latest`, `user/app:1`,
/// `localhost:5000/x:tag`), as `berth_reference_to_string` writes its text.
///
/// # Safety
///
/// As `berth_reference_to_string`.
#[no_mangle]
pub unsafe extern "C" fn berth_reference_familiar(
    reference: *const berth_reference,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> berth_result {
    // SAFETY: the caller's promises are the helper's.
    unsafe { reference_text(reference, buf, len, written, |r| r.familiar().into()) }
}

/// Parses a platform specifier `os/arch[/variant]` as containerd's `platforms.Parse`, which
/// normalises it: `linux/aarch64/8` is `linux/arm64/v8`, `linux/x86_64` is `linux/amd64`,
/// `linux/armhf` is `linux/arm` (v7, arm's default variant, is left out of a two-part
/// specifier). A one-element specifier (`linux`, `arm64`) needs a host to fill it in and is
/// refused, as are `*` and empty components.
///
/// On success `*out` is a new platform to free with `berth_platform_free`; on failure `*out` is
/// set to NULL (if `out` is not NULL). Returns `BERTH_ERR_NULL` if `s` or `out` is NULL and
/// `BERTH_ERR_INVALID` if `s` is not UTF-8 or not a valid specifier.
///
/// # Safety
///
/// `s` is NULL or a NUL-terminated string; `out` is NULL or valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn berth_platform_parse(
    s: *const c_char,
    out: *mut *mut berth_platform,
) -> berth_result {
    // SAFETY: the caller's promises for `s` and `out` are those of `parse_into`.
    unsafe {
        parse_into(s, out, |s| {
            Platform::parse(s)
                .ok()
                .map(|platform| berth_platform { platform })
        })
    }
}

/// Frees a platform. NULL is a no-op.
///
/// # Safety
///
/// `platform` is NULL or was returned by this library and not freed yet. It must not be used
/// after.
#[no_mangle]
pub unsafe extern "C" fn berth_platform_free(platform: *mut berth_platform) {
    // SAFETY: the caller promises `platform` is NULL or came from this library (`box_out`) and
    // is freed once.
    unsafe { free_box(platform) }
}

/// Writes the platform as containerd's `platforms.Format` does (`linux/arm64/v8`) and a NUL
/// into `buf` (`len` bytes), and the text's length without the NUL into `*written` (`written`
/// may be NULL).
///
/// Returns `BERTH_ERR_NULL` for a NULL platform (or a NULL `buf` with `len > 0`) and
/// `BERTH_ERR_BUFFER_TOO_SMALL` without copying anything if `len` is too small; `*written` then
/// holds the length needed.
///
/// # Safety
///
/// `platform` is NULL or a live platform; `buf` is NULL or valid for writes of `len` bytes;
/// `written` is NULL or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn berth_platform_to_string(
    platform: *const berth_platform,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `platform` is NULL or a live platform.
        let platform = try_some!(unsafe { platform.as_ref() });
        injected_panic();
        // SAFETY: the caller promises `buf`/`len` and `written` are valid or NULL.
        unsafe { write_str(&platform.platform.to_string(), buf, len, written) }
    })
}

/// True if a host that wants `want` can run an image built for `have`, with containerd's
/// `platforms.Only(want)`: the same platform after normalisation, or one it can also run
/// (`linux/arm64` takes `linux/arm64/v8` and `linux/arm/v7`; `linux/amd64` takes `linux/386`;
/// `linux/arm/v7` takes `linux/arm/v6`). NULL for either gives false.
///
/// # Safety
///
/// `want` and `have` are each NULL or a live platform.
#[no_mangle]
pub unsafe extern "C" fn berth_platform_matches(
    want: *const berth_platform,
    have: *const berth_platform,
) -> bool {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `want` is NULL or a live platform.
        let want = try_some!(unsafe { want.as_ref() });
        // SAFETY: the caller promises `have` is NULL or a live platform.
        let have = try_some!(unsafe { have.as_ref() });
        injected_panic();
        Matcher::only(&want.platform).matches(&have.platform)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;
    use std::ptr::{null, null_mut};

    type Accessor = unsafe extern "C" fn(
        *const berth_reference,
        *mut c_char,
        usize,
        *mut usize,
    ) -> berth_result;

    const ACCESSORS: [(&str, Accessor); 6] = [
        ("to_string", berth_reference_to_string),
        ("domain", berth_reference_domain),
        ("path", berth_reference_path),
        ("tag", berth_reference_tag),
        ("digest", berth_reference_digest),
        ("familiar", berth_reference_familiar),
    ];

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn reference(s: &CStr) -> (berth_result, *mut berth_reference) {
        let mut out = std::ptr::dangling_mut();
        // SAFETY: `s` is NUL-terminated, `out` a valid local.
        let r = unsafe { berth_reference_parse(s.as_ptr(), &mut out) };
        (r, out)
    }

    fn platform(s: &CStr) -> (berth_result, *mut berth_platform) {
        let mut out = std::ptr::dangling_mut();
        // SAFETY: `s` is NUL-terminated, `out` a valid local.
        let r = unsafe { berth_platform_parse(s.as_ptr(), &mut out) };
        (r, out)
    }

    fn text(
        f: impl FnOnce(*mut c_char, usize, *mut usize) -> berth_result,
    ) -> (berth_result, String) {
        let mut buf = [0 as c_char; 512];
        let mut n = usize::MAX;
        let r = f(buf.as_mut_ptr(), buf.len(), &mut n);
        if r != berth_result::BERTH_OK {
            return (r, String::new());
        }
        // SAFETY: a successful call NUL-terminated `buf`.
        let s = unsafe { CStr::from_ptr(buf.as_ptr()) };
        assert_eq!(s.to_bytes().len(), n);
        (r, s.to_str().unwrap().to_owned())
    }

    fn parts(r: *const berth_reference) -> Vec<String> {
        ACCESSORS
            .iter()
            .map(|(name, f)| {
                // SAFETY: `r` is live; the buffer and length come from `text`.
                let (res, s) = text(|b, l, w| unsafe { f(r, b, l, w) });
                assert_eq!(res, berth_result::BERTH_OK, "{name}");
                s
            })
            .collect()
    }

    #[test]
    fn references_are_normalised_and_split() {
        let cases: [(&CStr, [&str; 6]); 4] = [
            (
                c"busybox",
                [
                    "docker.io/library/busybox:latest",
                    "docker.io",
                    "library/busybox",
                    "latest",
                    "",
                    "busybox:latest",
                ],
            ),
            (
                c"index.docker.io/user/app:1.0",
                [
                    "docker.io/user/app:1.0",
                    "docker.io",
                    "user/app",
                    "1.0",
                    "",
                    "user/app:1.0",
                ],
            ),
            (
                c"127.0.0.1:5000/x/y:tag",
                [
                    "127.0.0.1:5000/x/y:tag",
                    "127.0.0.1:5000",
                    "x/y",
                    "tag",
                    "",
                    "127.0.0.1:5000/x/y:tag",
                ],
            ),
            (
                c"busybox@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                [
                    &format!("docker.io/library/busybox@{DIGEST}"),
                    "docker.io",
                    "library/busybox",
                    "",
                    DIGEST,
                    &format!("busybox@{DIGEST}"),
                ],
            ),
        ];
        for (input, want) in cases {
            let (r, p) = reference(input);
            assert_eq!(r, berth_result::BERTH_OK, "{input:?}");
            assert_eq!(parts(p), want, "{input:?}");
            // SAFETY: `p` is live and freed once.
            unsafe { berth_reference_free(p) };
        }
    }

    #[test]
    fn bad_references_are_invalid_and_clear_out() {
        for bad in [c"", c"Busybox", c"a//b", c"x:", c"x@sha256:abc", c"\xff"] {
            let (r, p) = reference(bad);
            assert_eq!(r, berth_result::BERTH_ERR_INVALID, "{bad:?}");
            assert!(p.is_null(), "{bad:?}");
        }
    }

    #[test]
    fn reference_nulls_are_refused_or_harmless() {
        let mut out = std::ptr::dangling_mut::<berth_reference>();
        // SAFETY: a NULL string is allowed by the contract; `out` a valid local.
        let r = unsafe { berth_reference_parse(null(), &mut out) };
        assert_eq!(r, berth_result::BERTH_ERR_NULL);
        assert!(out.is_null(), "out is cleared even when the input is NULL");
        // SAFETY: a NULL out is allowed by the contract.
        let r = unsafe { berth_reference_parse(c"busybox".as_ptr(), null_mut()) };
        assert_eq!(r, berth_result::BERTH_ERR_NULL);
        let (_, p) = reference(c"busybox");
        for (name, f) in ACCESSORS {
            let mut buf = [0 as c_char; 8];
            // SAFETY: a NULL reference is allowed by the contract.
            let r = unsafe { f(null(), buf.as_mut_ptr(), buf.len(), null_mut()) };
            assert_eq!(r, berth_result::BERTH_ERR_NULL, "{name}");
            // SAFETY: `p` is live; a NULL buffer with a length is refused before any write.
            let r = unsafe { f(p, null_mut(), 8, null_mut()) };
            assert_eq!(r, berth_result::BERTH_ERR_NULL, "{name}");
        }
        // SAFETY: `p` is live and freed once; NULL is a no-op.
        unsafe {
            berth_reference_free(p);
            berth_reference_free(null_mut());
        }
    }

    #[test]
    fn reference_text_reports_the_size_it_needs() {
        let (_, p) = reference(c"busybox");
        let mut n = 0;
        // SAFETY: `p` is live; NULL with len 0 is a size query.
        let r = unsafe { berth_reference_to_string(p, null_mut(), 0, &mut n) };
        assert_eq!((r, n), (berth_result::BERTH_ERR_BUFFER_TOO_SMALL, 32));
        let mut buf = [1 as c_char; 32];
        // SAFETY: `p` is live, `buf` 32 writable bytes.
        let r = unsafe { berth_reference_to_string(p, buf.as_mut_ptr(), 32, &mut n) };
        assert_eq!((r, n), (berth_result::BERTH_ERR_BUFFER_TOO_SMALL, 32));
        assert_eq!(buf, [1; 32], "nothing copied");
        // An empty text still needs one byte for its NUL.
        // SAFETY: `p` is live; NULL with len 0 is a size query.
        let r = unsafe { berth_reference_digest(p, null_mut(), 0, &mut n) };
        assert_eq!((r, n), (berth_result::BERTH_ERR_BUFFER_TOO_SMALL, 0));
        // SAFETY: `p` is live and freed once.
        unsafe { berth_reference_free(p) };
    }

    #[test]
    fn platforms_are_normalised() {
        for (input, want) in [
            (c"linux/arm64/v8", "linux/arm64/v8"),
            (c"linux/aarch64/8", "linux/arm64/v8"),
            (c"linux/aarch64", "linux/arm64"),
            (c"Linux/x86_64", "linux/amd64"),
            (c"linux/armhf", "linux/arm"),
            (c"macos/arm64", "darwin/arm64"),
        ] {
            let (r, p) = platform(input);
            assert_eq!(r, berth_result::BERTH_OK, "{input:?}");
            // SAFETY: `p` is live; the buffer and length come from `text`.
            let (r, s) = text(|b, l, w| unsafe { berth_platform_to_string(p, b, l, w) });
            assert_eq!((r, s.as_str()), (berth_result::BERTH_OK, want), "{input:?}");
            // SAFETY: `p` is live and freed once.
            unsafe { berth_platform_free(p) };
        }
        for bad in [
            c"",
            c"linux",
            c"linux/*",
            c"linux//v8",
            c"a/b/c/d",
            c"\xff/x",
        ] {
            let (r, p) = platform(bad);
            assert_eq!(r, berth_result::BERTH_ERR_INVALID, "{bad:?}");
            assert!(p.is_null(), "{bad:?}");
        }
    }

    #[test]
    fn platforms_match_as_only() {
        let cases = [
            (c"linux/arm64", c"linux/arm64/v8", true),
            (c"linux/arm64/v8", c"linux/arm64", true),
            (c"linux/arm64", c"linux/arm/v7", true),
            (c"linux/amd64", c"linux/386", true),
            (c"linux/amd64", c"linux/arm64", false),
            (c"linux/arm64", c"linux/amd64", false),
            (c"linux/386", c"linux/amd64", false),
            (c"linux/amd64", c"windows/amd64", false),
        ];
        for (want, have, expected) in cases {
            let (_, w) = platform(want);
            let (_, h) = platform(have);
            // SAFETY: both are live and freed once.
            unsafe {
                assert_eq!(berth_platform_matches(w, h), expected, "{want:?} {have:?}");
                berth_platform_free(w);
                berth_platform_free(h);
            }
        }
    }

    #[test]
    fn platform_nulls_are_refused_or_harmless() {
        let mut out = std::ptr::dangling_mut::<berth_platform>();
        // SAFETY: a NULL string is allowed by the contract; `out` a valid local.
        let r = unsafe { berth_platform_parse(null(), &mut out) };
        assert_eq!(r, berth_result::BERTH_ERR_NULL);
        assert!(out.is_null());
        let (_, p) = platform(c"linux/amd64");
        // SAFETY: NULL pointers are allowed by each function's contract; `p` is live and freed
        // once.
        unsafe {
            let r = berth_platform_parse(c"linux/amd64".as_ptr(), null_mut());
            assert_eq!(r, berth_result::BERTH_ERR_NULL);
            let r = berth_platform_to_string(null(), null_mut(), 0, null_mut());
            assert_eq!(r, berth_result::BERTH_ERR_NULL);
            let r = berth_platform_to_string(p, null_mut(), 4, null_mut());
            assert_eq!(r, berth_result::BERTH_ERR_NULL);
            let mut n = 0;
            let r = berth_platform_to_string(p, null_mut(), 0, &mut n);
            assert_eq!((r, n), (berth_result::BERTH_ERR_BUFFER_TOO_SMALL, 11));
            assert!(!berth_platform_matches(null(), null()));
            assert!(!berth_platform_matches(p, null()));
            assert!(!berth_platform_matches(null(), p));
            berth_platform_free(p);
            berth_platform_free(null_mut());
        }
    }

    fn panic_next() {
        PANIC_NEXT.with(|p| p.set(true));
    }

    #[test]
    fn panics_are_caught_at_every_function() {
        let (_, rf) = reference(c"busybox");
        let (_, pf) = platform(c"linux/amd64");

        panic_next();
        let (r, p) = reference(c"busybox");
        assert_eq!(r, berth_result::BERTH_ERR_PANIC);
        assert!(p.is_null(), "out stays NULL after a panic");

        panic_next();
        let (r, p) = platform(c"linux/amd64");
        assert_eq!(r, berth_result::BERTH_ERR_PANIC);
        assert!(p.is_null(), "out stays NULL after a panic");

        for (name, f) in ACCESSORS {
            panic_next();
            let mut buf = [1 as c_char; 64];
            // SAFETY: `rf` is live, `buf` 64 writable bytes.
            let r = unsafe { f(rf, buf.as_mut_ptr(), buf.len(), null_mut()) };
            assert_eq!(r, berth_result::BERTH_ERR_PANIC, "{name}");
            assert_eq!(buf, [1; 64], "{name}: nothing copied");
            // The object is still usable afterwards.
            // SAFETY: as above.
            let r = unsafe { f(rf, buf.as_mut_ptr(), buf.len(), null_mut()) };
            assert_eq!(r, berth_result::BERTH_OK, "{name}");
        }

        panic_next();
        let mut buf = [0 as c_char; 64];
        // SAFETY: `pf` is live, `buf` 64 writable bytes.
        let r = unsafe { berth_platform_to_string(pf, buf.as_mut_ptr(), buf.len(), null_mut()) };
        assert_eq!(r, berth_result::BERTH_ERR_PANIC);

        panic_next();
        // SAFETY: `pf` is live; a panic gives the documented fallback, false.
        assert!(!unsafe { berth_platform_matches(pf, pf) });
        // SAFETY: as above.
        assert!(unsafe { berth_platform_matches(pf, pf) });

        // SAFETY: both are live and freed once.
        unsafe {
            berth_reference_free(rf);
            berth_platform_free(pf);
        }
    }
}
