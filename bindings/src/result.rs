//! The result codes every fallible function returns, and their mapping from core errors.

use std::ffi::c_char;

use berth_core::content::IngestError;

use crate::panic::ffi_panic_boundary;

/// The outcome of a call. `BERTH_OK` is 0; every other value is a failure.
///
/// For an ingest, `berth_ingest_last_error` gives the failure's full text (with the values
/// involved, e.g. expected and actual digests).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum berth_result {
    /// Success.
    BERTH_OK = 0,
    /// A required pointer argument was NULL.
    BERTH_ERR_NULL = 1,
    /// An argument is malformed: a bad digest string, a string that is not UTF-8, an unknown
    /// enum value.
    BERTH_ERR_INVALID = 2,
    /// A write did not start at the ingest's current offset (nor at 0, which restarts it).
    BERTH_ERR_OUT_OF_RANGE = 3,
    /// Commit with a size other than the bytes written. The ingest was removed.
    BERTH_ERR_SIZE_MISMATCH = 4,
    /// Commit with a digest other than that of the bytes written. The ingest was removed.
    BERTH_ERR_DIGEST_MISMATCH = 5,
    /// The ingest is still working on a previous request: drain `berth_ingest_poll` first.
    BERTH_ERR_BUSY = 6,
    /// The ingest is committed, aborted, closed or failed: open it again.
    BERTH_ERR_FINISHED = 7,
    /// A host operation failed (see `berth_done.io_errno` and the last error text).
    BERTH_ERR_IO = 8,
    /// The host answered an operation with the wrong kind of output.
    BERTH_ERR_PROTOCOL = 9,
    /// The caller's buffer is too small; `*written` holds the length needed (without the NUL).
    BERTH_ERR_BUFFER_TOO_SMALL = 10,
    /// The library panicked (a bug in berth). An ingest that panicked refuses further calls.
    BERTH_ERR_PANIC = 11,
    /// A completion named an operation id that is not outstanding.
    BERTH_ERR_UNEXPECTED_COMPLETION = 12,
    /// A failure this version of the bindings has no specific code for.
    BERTH_ERR_OTHER = 13,
    /// The object named does not exist (gRPC `NotFound`): a snapshot or its parent.
    BERTH_ERR_NOT_FOUND = 14,
    /// The name is taken (gRPC `AlreadyExists`): a snapshot key or commit name.
    BERTH_ERR_ALREADY_EXISTS = 15,
    /// The object is not in a state that allows the call (gRPC `FailedPrecondition`): e.g.
    /// removing a snapshot that has children, committing one that is not active.
    BERTH_ERR_FAILED_PRECONDITION = 16,
}

impl berth_result {
    /// Every code, in numeric order.
    const ALL: [berth_result; 17] = [
        berth_result::BERTH_OK,
        berth_result::BERTH_ERR_NULL,
        berth_result::BERTH_ERR_INVALID,
        berth_result::BERTH_ERR_OUT_OF_RANGE,
        berth_result::BERTH_ERR_SIZE_MISMATCH,
        berth_result::BERTH_ERR_DIGEST_MISMATCH,
        berth_result::BERTH_ERR_BUSY,
        berth_result::BERTH_ERR_FINISHED,
        berth_result::BERTH_ERR_IO,
        berth_result::BERTH_ERR_PROTOCOL,
        berth_result::BERTH_ERR_BUFFER_TOO_SMALL,
        berth_result::BERTH_ERR_PANIC,
        berth_result::BERTH_ERR_UNEXPECTED_COMPLETION,
        berth_result::BERTH_ERR_OTHER,
        berth_result::BERTH_ERR_NOT_FOUND,
        berth_result::BERTH_ERR_ALREADY_EXISTS,
        berth_result::BERTH_ERR_FAILED_PRECONDITION,
    ];

    /// The constant's name as a NUL-terminated static string.
    fn name(self) -> &'static [u8] {
        match self {
            berth_result::BERTH_OK => b"BERTH_OK\0",
            berth_result::BERTH_ERR_NULL => b"BERTH_ERR_NULL\0",
            berth_result::BERTH_ERR_INVALID => b"BERTH_ERR_INVALID\0",
            berth_result::BERTH_ERR_OUT_OF_RANGE => b"BERTH_ERR_OUT_OF_RANGE\0",
            berth_result::BERTH_ERR_SIZE_MISMATCH => b"BERTH_ERR_SIZE_MISMATCH\0",
            berth_result::BERTH_ERR_DIGEST_MISMATCH => b"BERTH_ERR_DIGEST_MISMATCH\0",
            berth_result::BERTH_ERR_BUSY => b"BERTH_ERR_BUSY\0",
            berth_result::BERTH_ERR_FINISHED => b"BERTH_ERR_FINISHED\0",
            berth_result::BERTH_ERR_IO => b"BERTH_ERR_IO\0",
            berth_result::BERTH_ERR_PROTOCOL => b"BERTH_ERR_PROTOCOL\0",
            berth_result::BERTH_ERR_BUFFER_TOO_SMALL => b"BERTH_ERR_BUFFER_TOO_SMALL\0",
            berth_result::BERTH_ERR_PANIC => b"BERTH_ERR_PANIC\0",
            berth_result::BERTH_ERR_UNEXPECTED_COMPLETION => b"BERTH_ERR_UNEXPECTED_COMPLETION\0",
            berth_result::BERTH_ERR_OTHER => b"BERTH_ERR_OTHER\0",
            berth_result::BERTH_ERR_NOT_FOUND => b"BERTH_ERR_NOT_FOUND\0",
            berth_result::BERTH_ERR_ALREADY_EXISTS => b"BERTH_ERR_ALREADY_EXISTS\0",
            berth_result::BERTH_ERR_FAILED_PRECONDITION => b"BERTH_ERR_FAILED_PRECONDITION\0",
        }
    }
}

impl From<&IngestError> for berth_result {
    fn from(e: &IngestError) -> Self {
        match e {
            IngestError::Busy { .. } => berth_result::BERTH_ERR_BUSY,
            IngestError::Finished { .. } => berth_result::BERTH_ERR_FINISHED,
            IngestError::OutOfRange { .. } => berth_result::BERTH_ERR_OUT_OF_RANGE,
            IngestError::SizeMismatch { .. } => berth_result::BERTH_ERR_SIZE_MISMATCH,
            IngestError::DigestMismatch { .. } => berth_result::BERTH_ERR_DIGEST_MISMATCH,
            IngestError::UnexpectedCompletion(_) => berth_result::BERTH_ERR_UNEXPECTED_COMPLETION,
            IngestError::Io { .. } => berth_result::BERTH_ERR_IO,
            IngestError::Protocol { .. } => berth_result::BERTH_ERR_PROTOCOL,
            _ => berth_result::BERTH_ERR_OTHER,
        }
    }
}

/// The name of a result code (e.g. `"BERTH_ERR_OUT_OF_RANGE"`) as a static NUL-terminated
/// string, for logs. An unknown value gives `"BERTH_ERR_UNKNOWN_CODE"`. Never NULL.
///
/// Takes the code as an integer so that any value a C caller passes is well defined.
#[no_mangle]
pub extern "C" fn berth_result_name(result: u32) -> *const c_char {
    let name: &'static [u8] = ffi_panic_boundary(|| {
        berth_result::ALL
            .iter()
            .find(|r| **r as u32 == result)
            .map_or(&b"BERTH_ERR_UNKNOWN_CODE\0"[..], |r| r.name())
    });
    name.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn codes_are_stable_and_named() {
        for (i, r) in berth_result::ALL.iter().enumerate() {
            assert_eq!(*r as u32, i as u32);
            // SAFETY: berth_result_name returns a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(berth_result_name(i as u32)) };
            assert_eq!(name.to_str().unwrap(), format!("{r:?}"));
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(berth_result_name(999)) };
        assert_eq!(unknown.to_str().unwrap(), "BERTH_ERR_UNKNOWN_CODE");
    }
}
