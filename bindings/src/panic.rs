//! The panic boundary: no Rust panic ever unwinds into C.
//!
//! Every exported function wraps its body in [`ffi_panic_boundary`]. A panic inside is caught
//! and turned into the function's [`Fallback::on_panic`] value (`BERTH_ERR_PANIC` for functions
//! returning a [`berth_result`]). The same trait gives the value returned for a NULL argument
//! ([`Fallback::on_null`]), so functions that return `bool`, an enum or nothing have one
//! documented answer for both cases.

use std::ffi::c_char;

use crate::digest::berth_algorithm;
use crate::result::berth_result;

/// The value an exported function returns when it cannot do its job: its body panicked, or a
/// required pointer was NULL.
pub(crate) trait Fallback {
    /// Returned when the body panicked.
    fn on_panic() -> Self;
    /// Returned when a required pointer argument was NULL.
    fn on_null() -> Self;
}

impl Fallback for berth_result {
    fn on_panic() -> Self {
        berth_result::BERTH_ERR_PANIC
    }
    fn on_null() -> Self {
        berth_result::BERTH_ERR_NULL
    }
}

impl Fallback for bool {
    fn on_panic() -> Self {
        false
    }
    fn on_null() -> Self {
        false
    }
}

impl Fallback for () {
    fn on_panic() -> Self {}
    fn on_null() -> Self {}
}

impl Fallback for usize {
    fn on_panic() -> Self {
        0
    }
    fn on_null() -> Self {
        0
    }
}

impl Fallback for *const c_char {
    fn on_panic() -> Self {
        std::ptr::null()
    }
    fn on_null() -> Self {
        std::ptr::null()
    }
}

impl Fallback for berth_algorithm {
    fn on_panic() -> Self {
        berth_algorithm::BERTH_ALGORITHM_UNKNOWN
    }
    fn on_null() -> Self {
        berth_algorithm::BERTH_ALGORITHM_UNKNOWN
    }
}

impl Fallback for &'static [u8] {
    fn on_panic() -> Self {
        b"BERTH_ERR_PANIC\0"
    }
    fn on_null() -> Self {
        b"BERTH_ERR_NULL\0"
    }
}

/// Runs an exported function's body, catching any panic and returning the body type's
/// [`Fallback::on_panic`] value instead. Every exported function is one call of this:
///
/// ```text
/// pub unsafe extern "C" fn berth_thing(p: *const berth_x) -> berth_result {
///     ffi_panic_boundary(|| {
///         // SAFETY: ...
///         let x = try_some!(unsafe { p.as_ref() }); // NULL: `return Fallback::on_null()`
///         berth_result::BERTH_OK
///     })
/// }
/// ```
///
/// The body is a closure: `return` (and `try_some!`/`try_ok!`) leave it with the function's
/// value. The panic payload is leaked rather than dropped, because a payload whose `Drop`
/// panics would otherwise unwind out of the boundary.
pub(crate) fn ffi_panic_boundary<R: Fallback>(body: impl FnOnce() -> R) -> R {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            std::mem::forget(payload);
            R::on_panic()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panics_with_result() -> berth_result {
        ffi_panic_boundary(|| {
            if std::hint::black_box(true) {
                panic!("boom");
            }
            berth_result::BERTH_OK
        })
    }

    fn panics_with_bool() -> bool {
        ffi_panic_boundary(|| {
            let v: Vec<u8> = Vec::new();
            v[std::hint::black_box(3)] == 0
        })
    }

    fn panics_with_unit() {
        ffi_panic_boundary(|| {
            let none: Option<u8> = std::hint::black_box(None);
            let _ = none.expect("no value");
        })
    }

    fn early_return(flag: bool) -> berth_result {
        ffi_panic_boundary(|| {
            if flag {
                return berth_result::BERTH_ERR_INVALID;
            }
            berth_result::BERTH_OK
        })
    }

    #[test]
    fn a_panic_becomes_the_fallback_value() {
        assert_eq!(panics_with_result(), berth_result::BERTH_ERR_PANIC);
        assert!(!panics_with_bool());
        panics_with_unit();
    }

    #[test]
    fn a_panic_with_a_non_string_payload_is_caught() {
        let r: berth_result = ffi_panic_boundary(|| std::panic::panic_any(42_u64));
        assert_eq!(r, berth_result::BERTH_ERR_PANIC);
    }

    #[test]
    fn return_leaves_the_body_with_its_value() {
        assert_eq!(early_return(true), berth_result::BERTH_ERR_INVALID);
        assert_eq!(early_return(false), berth_result::BERTH_OK);
    }

    #[test]
    fn fallbacks_for_null() {
        assert_eq!(berth_result::on_null(), berth_result::BERTH_ERR_NULL);
        assert!(!bool::on_null());
        assert_eq!(
            berth_algorithm::on_null(),
            berth_algorithm::BERTH_ALGORITHM_UNKNOWN
        );
    }
}
