//! Mapping of berth's typed errors to gRPC statuses, with containerd's codes.

use berth_core::content::IngestError;
use berth_core::metadata::FilterError;
use berth_core::DigestError;
use berth_drivers::run::DriveError;
use berth_drivers::store::StoreError;
use tonic::Status;

/// Converts to a gRPC status the way containerd's errdefs would.
pub trait ToStatus {
    /// The status.
    fn to_status(&self) -> Status;
}

impl ToStatus for StoreError {
    fn to_status(&self) -> Status {
        let msg = self.to_string();
        match self {
            StoreError::NotFound(_) => Status::not_found(msg),
            StoreError::AlreadyExists(_) => Status::already_exists(msg),
            StoreError::FailedPrecondition(_) => Status::failed_precondition(msg),
            StoreError::Name(_) | StoreError::Labels(_) | StoreError::InvalidArgument(_) => {
                Status::invalid_argument(msg)
            }
            _ => Status::internal(msg),
        }
    }
}

impl ToStatus for IngestError {
    fn to_status(&self) -> Status {
        let msg = self.to_string();
        match self {
            IngestError::OutOfRange { .. } => Status::out_of_range(msg),
            IngestError::SizeMismatch { .. } | IngestError::DigestMismatch { .. } => {
                Status::failed_precondition(msg)
            }
            IngestError::Busy { .. } => Status::unavailable(msg),
            IngestError::Finished { .. } => Status::failed_precondition(msg),
            IngestError::Io { error, .. } if error.errno == berth_core::op::errno::ENOSPC => {
                Status::resource_exhausted(msg)
            }
            _ => Status::internal(msg),
        }
    }
}

impl<E: ToStatus> ToStatus for DriveError<E> {
    fn to_status(&self) -> Status {
        match self {
            DriveError::Refused(e) => e.to_status(),
            DriveError::Stalled => Status::internal("machine stalled without a result"),
        }
    }
}

impl ToStatus for DigestError {
    fn to_status(&self) -> Status {
        Status::invalid_argument(self.to_string())
    }
}

impl ToStatus for FilterError {
    fn to_status(&self) -> Status {
        Status::invalid_argument(self.to_string())
    }
}

/// Shorthand: `result.map_err(status)?`.
pub fn status<E: ToStatus>(e: E) -> Status {
    e.to_status()
}
