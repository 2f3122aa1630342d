//! # berth-api: the wire
//!
//! containerd's gRPC API (1.6, wire-compatible with 2.x for these services), generated from the
//! protos in `proto/` (field numbers as containerd's), and [`transport`]: gRPC over hyper's
//! HTTP/2 on smol, for the daemon and the CLI, with no tokio runtime.
#![deny(missing_docs)]

pub mod any;
pub mod codec;
pub mod transport;

/// Generated code carries no docs of its own.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod generated {
    pub mod google {
        pub mod rpc {
            tonic::include_proto!("google.rpc");
        }
    }
    pub mod io {
        pub mod containerd {
            pub mod cgroups {
                pub mod v1 {
                    tonic::include_proto!("io.containerd.cgroups.v1");
                }
            }
        }
    }
    pub mod berth {
        pub mod services {
            pub mod transfer {
                pub mod v1 {
                    tonic::include_proto!("berth.services.transfer.v1");
                }
            }
        }
    }
    pub mod containerd {
        pub mod types {
            tonic::include_proto!("containerd.types");
        }
        pub mod events {
            tonic::include_proto!("containerd.events");
        }
        pub mod v1 {
            pub mod types {
                tonic::include_proto!("containerd.v1.types");
            }
        }
        pub mod runc {
            pub mod v1 {
                tonic::include_proto!("containerd.runc.v1");
            }
        }
        pub mod services {
            pub mod version {
                pub mod v1 {
                    tonic::include_proto!("containerd.services.version.v1");
                }
            }
            pub mod introspection {
                pub mod v1 {
                    tonic::include_proto!("containerd.services.introspection.v1");
                }
            }
            pub mod namespaces {
                pub mod v1 {
                    tonic::include_proto!("containerd.services.namespaces.v1");
                }
            }
            pub mod content {
                pub mod v1 {
                    tonic::include_proto!("containerd.services.content.v1");
                }
            }
            pub mod leases {
                pub mod v1 {
                    tonic::include_proto!("containerd.services.leases.v1");
                }
            }
            pub mod events {
                pub mod v1 {
                    tonic::include_proto!("containerd.services.events.v1");
                }
            }
            pub mod images {
                pub mod v1 {
                    tonic::include_proto!("containerd.services.images.v1");
                }
            }
            pub mod snapshots {
                pub mod v1 {
                    tonic::include_proto!("containerd.services.snapshots.v1");
                }
            }
            pub mod tasks {
                pub mod v1 {
                    tonic::include_proto!("containerd.services.tasks.v1");
                }
            }
            pub mod containers {
                pub mod v1 {
                    tonic::include_proto!("containerd.services.containers.v1");
                }
            }
            pub mod diff {
                pub mod v1 {
                    tonic::include_proto!("containerd.services.diff.v1");
                }
            }
        }
    }
}

pub use generated::berth::services as berth_services;
/// `containerd.v1.types`: the task process and its status.
pub use generated::containerd::v1::types as task_types;
pub use generated::containerd::{events, runc, services, types};
pub use generated::google::rpc;
/// `io.containerd.cgroups.v1`: the cgroup v1 metrics a task reports.
pub use generated::io::containerd::cgroups::v1 as cgroups_v1;

/// The gRPC header that names the namespace of a call.
pub const NAMESPACE_HEADER: &str = "containerd-namespace";
/// The gRPC header that names the lease of a call.
pub const LEASE_HEADER: &str = "containerd-lease";
/// Largest message either side sends or accepts (containerd's default).
pub const MAX_MESSAGE_SIZE: usize = 16 << 20;
