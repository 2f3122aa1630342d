//! `containerd.services.version.v1.Version`.

use berth_api::services::version::v1::{version_server::Version, VersionResponse};
use tonic::{Request, Response, Status};

/// The version service.
pub struct Service;

#[tonic::async_trait]
impl Version for Service {
    async fn version(&self, _: Request<()>) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: "berth".to_string(),
        }))
    }
}
