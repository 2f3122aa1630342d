//! # berth-smol: the smol driver
//!
//! Executes every Op with a blocking syscall on the `blocking` thread pool (the pool smol uses),
//! so the async executor thread never waits on the disk. Paths resolve beneath the root through
//! [`RealHost`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::path::Path;
use std::sync::Arc;

use berth_core::op::{Handle, OpKind};
use berth_drivers::host::RealHost;
use berth_drivers::{Executor, OpFuture};

/// The smol executor over one root directory.
#[derive(Clone)]
pub struct SmolExecutor {
    host: Arc<RealHost>,
}

impl SmolExecutor {
    /// An executor rooted at `root` (created if missing).
    pub fn open(root: &Path) -> std::io::Result<Self> {
        Ok(SmolExecutor {
            host: Arc::new(RealHost::open(root)?),
        })
    }

    /// The host underneath.
    pub fn host(&self) -> &RealHost {
        &self.host
    }
}

impl Executor for SmolExecutor {
    fn execute(&self, op: OpKind) -> OpFuture {
        let host = self.host.clone();
        Box::pin(blocking::unblock(move || host.perform(op)))
    }

    fn close_now(&self, handle: Handle) {
        self.host.handles().remove(handle);
    }

    fn name(&self) -> &'static str {
        "smol"
    }
}
