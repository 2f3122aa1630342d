//! The gRPC services, one module each.

pub mod containers;
pub mod content;
mod content_write;
pub mod diff;
pub mod events;
pub mod images;
pub mod introspection;
pub mod leases;
pub mod namespaces;
pub mod snapshots;
pub mod tasks;
pub mod transfer;
pub mod version;

use std::sync::Arc;

use berth_api::transport::Router;
use berth_api::MAX_MESSAGE_SIZE;

use crate::state::Daemon;

/// Every service, with containerd's 16 MiB message limits.
pub fn router(d: Arc<Daemon>) -> Router {
    use berth_api::services as api;
    macro_rules! limits {
        ($s:expr) => {
            $s.max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE)
        };
    }
    Router::new()
        .service(limits!(
            api::version::v1::version_server::VersionServer::new(version::Service)
        ))
        .service(limits!(
            api::introspection::v1::introspection_server::IntrospectionServer::new(
                introspection::Service(d.clone())
            )
        ))
        .service(limits!(
            api::namespaces::v1::namespaces_server::NamespacesServer::new(namespaces::Service(
                d.clone()
            ))
        ))
        .service(limits!(
            api::content::v1::content_server::ContentServer::new(content::Service(d.clone()))
        ))
        .service(limits!(api::leases::v1::leases_server::LeasesServer::new(
            leases::Service(d.clone())
        )))
        .service(limits!(api::images::v1::images_server::ImagesServer::new(
            images::Service(d.clone())
        )))
        .service(limits!(
            api::snapshots::v1::snapshots_server::SnapshotsServer::new(snapshots::Service(
                d.clone()
            ))
        ))
        .service(limits!(
            api::containers::v1::containers_server::ContainersServer::new(containers::Service(
                d.clone()
            ))
        ))
        .service(limits!(api::tasks::v1::tasks_server::TasksServer::new(
            tasks::Service(d.clone())
        )))
        .service(limits!(api::diff::v1::diff_server::DiffServer::new(
            diff::Service(d.clone())
        )))
        .service(limits!(
            berth_api::berth_services::transfer::v1::transfer_server::TransferServer::new(
                transfer::Service(d.clone())
            )
        ))
        .service(limits!(api::events::v1::events_server::EventsServer::new(
            events::Service(d)
        )))
}
