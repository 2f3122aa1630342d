//! `berth.services.transfer.v1.Transfer`: pulls, pushes, imports and exports done by berthd.

use std::sync::Arc;

use berth_api::berth_services::transfer::v1::{transfer_server::Transfer, *};
use berth_api::types;
use berth_core::image::platform::Platform;
use berth_core::image::reference::Reference;
use berth_core::registry::Credentials;
use berth_drivers::registry::{ClientConfig, RegistryClient};
use futures_lite::stream::Stream;
use tonic::{Request, Response, Status};

use crate::pull::{self, PullOptions};
use crate::state::{namespace, Daemon};

/// The transfer service.
pub struct Service(pub Arc<Daemon>);

type ProgressStream = std::pin::Pin<Box<dyn Stream<Item = Result<Progress, Status>> + Send>>;

/// A registry client for one transfer: plain HTTP for the hosts named (loopback always), and
/// `user:password` credentials for the reference's registry.
pub fn client(
    reference: &Reference,
    plain_http_hosts: Vec<String>,
    credentials: &str,
) -> RegistryClient {
    let mut cfg = ClientConfig::default();
    cfg.hosts.insecure = plain_http_hosts;
    if let Some((user, password)) = credentials.split_once(':') {
        cfg.credentials.insert(
            reference.domain().to_string(),
            Credentials {
                username: user.to_string(),
                secret: password.to_string(),
            },
        );
    }
    RegistryClient::new(cfg)
}

fn to_proto(p: pull::Progress) -> Progress {
    Progress {
        image: p.image,
        target: p.target.map(|t| types::Descriptor {
            media_type: t.media_type,
            digest: t.digest.to_string(),
            size: t.size as i64,
            annotations: t.annotations.into_iter().collect(),
        }),
        layers: p
            .layers
            .into_iter()
            .map(|l| LayerProgress {
                digest: l.digest,
                size: l.size as i64,
                done: l.done as i64,
                state: l.state.to_string(),
            })
            .collect(),
        done: p.done,
    }
}

/// Runs a transfer on its own task and streams its progress, then its error if it fails.
fn progress_stream<F, Fut>(run: F) -> ProgressStream
where
    F: FnOnce(async_channel::Sender<pull::Progress>) -> Fut,
    Fut: std::future::Future<Output = Result<(), Status>> + Send + 'static,
{
    let (tx, rx) = async_channel::bounded(64);
    let (out_tx, out_rx) = async_channel::bounded::<Result<Progress, Status>>(64);
    let work = run(tx);
    smol::spawn(async move {
        let forward = {
            let out_tx = out_tx.clone();
            smol::spawn(async move {
                while let Ok(p) = rx.recv().await {
                    if out_tx.send(Ok(to_proto(p))).await.is_err() {
                        break;
                    }
                }
            })
        };
        let result = work.await;
        forward.await;
        if let Err(e) = result {
            let _ = out_tx.send(Err(e)).await;
        }
    })
    .detach();
    Box::pin(out_rx)
}

/// A path on berthd's host given by a client: absolute, or refused.
fn absolute(p: &str) -> Result<std::path::PathBuf, Status> {
    let path = std::path::PathBuf::from(p);
    if !path.is_absolute() {
        return Err(Status::invalid_argument(format!(
            "{p:?}: give an absolute path (berthd resolves it on its own host)"
        )));
    }
    Ok(path)
}

#[tonic::async_trait]
impl Transfer for Service {
    type PullStream = ProgressStream;

    async fn pull(&self, req: Request<PullRequest>) -> Result<Response<Self::PullStream>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let reference = Reference::parse(&r.reference)
            .map_err(|e| Status::invalid_argument(format!("reference {:?}: {e}", r.reference)))?;
        let platforms = r
            .platforms
            .iter()
            .map(|p| Platform::parse(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(format!("platform: {e}")))?;
        let opts = PullOptions {
            reference,
            platforms,
            all_platforms: r.all_platforms,
            snapshotter: r.snapshotter,
            unpack: !r.skip_unpack,
        };
        let client = client(&opts.reference, r.plain_http_hosts, &r.credentials);
        let d = self.0.clone();
        Ok(Response::new(progress_stream(move |tx| async move {
            pull::pull(&d, &ns, &client, opts, tx).await.map(|_| ())
        })))
    }

    type PushStream = ProgressStream;

    async fn push(&self, req: Request<PushRequest>) -> Result<Response<Self::PushStream>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let target = if r.reference.is_empty() {
            &r.image
        } else {
            &r.reference
        };
        let target = Reference::parse(target)
            .map_err(|e| Status::invalid_argument(format!("reference {target:?}: {e}")))?;
        let client = client(&target, r.plain_http_hosts, &r.credentials);
        let d = self.0.clone();
        Ok(Response::new(progress_stream(move |tx| async move {
            crate::push::push(&d, &ns, &client, &r.image, &target, tx)
                .await
                .map(|_| ())
        })))
    }

    async fn import(
        &self,
        req: Request<ImportRequest>,
    ) -> Result<Response<ImportResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let path = absolute(&r.path)?;
        let images = crate::archive_io::import(
            &self.0,
            &ns,
            &path,
            &r.snapshotter,
            !r.skip_unpack,
            &r.base_name,
        )
        .await?;
        Ok(Response::new(ImportResponse { images }))
    }

    async fn export(
        &self,
        req: Request<ExportRequest>,
    ) -> Result<Response<ExportResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let path = absolute(&r.path)?;
        if r.images.is_empty() {
            return Err(Status::invalid_argument("export needs at least one image"));
        }
        let size = crate::archive_io::export(&self.0, &ns, &r.images, &path).await?;
        Ok(Response::new(ExportResponse { size: size as i64 }))
    }
}
