//! `containerd.services.content.v1.Content`: the shared blob store, seen per namespace, and
//! resumable ingests driven through the core `Ingest` machine.

use std::pin::Pin;
use std::sync::Arc;

use berth_api::any::to_any;
use berth_api::events::ContentDelete;
use berth_api::services::content::v1::{content_server::Content, *};
use berth_core::content::ingest::{parse_meta, status_at_rest};
use berth_core::content::IngestMeta;
use berth_core::events::CONTENT_DELETE;
use berth_core::metadata::{Filter, Labels};
use berth_core::op::{OpKind, OpOutput, OpenOptions};
use berth_core::Digest;
use berth_drivers::layout::{Layout, INGEST};
use berth_drivers::store::ContentRecord;
use futures_lite::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::errors::status;
use crate::state::{lease, namespace, timestamp, Daemon};

/// The content service.
pub struct Service(pub Arc<Daemon>);

/// Largest chunk of a Read reply, as containerd sends.
const READ_CHUNK: u32 = 1 << 20;
/// Infos per List reply message, as containerd sends.
const LIST_CHUNK: usize = 100;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub(super) fn parse_digest(s: &str) -> Result<Digest, Status> {
    Digest::parse(s).map_err(status)
}

fn to_info(digest: &Digest, rec: ContentRecord) -> Info {
    Info {
        digest: digest.to_string(),
        size: rec.size as i64,
        created_at: Some(timestamp(rec.created_at)),
        updated_at: Some(timestamp(rec.updated_at)),
        labels: rec.labels.into_iter().collect(),
    }
}

fn to_status(s: &berth_core::content::Status) -> Status_ {
    Status_ {
        started_at: Some(timestamp(s.started_at)),
        updated_at: Some(timestamp(s.updated_at)),
        r#ref: s.reference.clone(),
        offset: s.offset as i64,
        total: s.total as i64,
        expected: s.expected.map(|d| d.to_string()).unwrap_or_default(),
    }
}

use berth_api::services::content::v1::Status as Status_;

fn not_found(digest: &Digest) -> Status {
    Status::not_found(format!("content {digest}: not found"))
}

impl Service {
    fn record(&self, ns: &str, digest: &Digest) -> Result<ContentRecord, Status> {
        self.0
            .store
            .content_get(ns, digest)
            .map_err(status)?
            .ok_or_else(|| not_found(digest))
    }

    /// Reads an ingest at rest: its meta and status, if it belongs to `ns`.
    async fn ingest_at_rest(
        &self,
        ns: &str,
        key: &str,
    ) -> Option<(IngestMeta, berth_core::content::Status)> {
        let dir = format!("{INGEST}/{key}");
        let meta = match self
            .0
            .op(OpKind::ReadFile {
                path: format!("{dir}/meta"),
            })
            .await
        {
            Ok(OpOutput::Data(d)) => d,
            _ => return None,
        };
        let parsed = parse_meta(&meta)?;
        if parsed.namespace != ns {
            return None;
        }
        let state = match self
            .0
            .op(OpKind::ReadFile {
                path: format!("{dir}/state"),
            })
            .await
        {
            Ok(OpOutput::Data(d)) => d,
            _ => Default::default(),
        };
        let data_len = match self
            .0
            .op(OpKind::Stat {
                path: format!("{dir}/data"),
            })
            .await
        {
            Ok(OpOutput::Stat(st)) => st.size,
            _ => 0,
        };
        let st = status_at_rest(parsed.clone(), &state, data_len);
        Some((parsed, st))
    }
}

#[tonic::async_trait]
impl Content for Service {
    async fn info(&self, req: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let ns = namespace(&req)?;
        let digest = parse_digest(&req.get_ref().digest)?;
        let rec = self.record(&ns, &digest)?;
        Ok(Response::new(InfoResponse {
            info: Some(to_info(&digest, rec)),
        }))
    }

    async fn update(
        &self,
        req: Request<UpdateRequest>,
    ) -> Result<Response<UpdateResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let info = r
            .info
            .ok_or_else(|| Status::invalid_argument("info is missing"))?;
        let digest = parse_digest(&info.digest)?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let labels: Labels = info.labels.into_iter().collect();
        let now = self.0.now();
        let rec = self
            .0
            .store_write(move |s| s.content_update(&ns, &digest, &labels, &paths, now))
            .await
            .map_err(status)?;
        Ok(Response::new(UpdateResponse {
            info: Some(to_info(&digest, rec)),
        }))
    }

    type ListStream = BoxStream<ListContentResponse>;

    async fn list(
        &self,
        req: Request<ListContentRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let ns = namespace(&req)?;
        let filter = Filter::parse(&req.get_ref().filters).map_err(status)?;
        let infos: Vec<Info> = self
            .0
            .store
            .content_list(&ns)
            .map_err(status)?
            .into_iter()
            .filter(|(d, rec)| {
                filter.matches(|p| match p {
                    [f] if f == "digest" => Some(d.to_string()),
                    [f] if f == "size" => Some(rec.size.to_string()),
                    [l, k] if l == "labels" => rec.labels.get(k).cloned(),
                    _ => None,
                })
            })
            .map(|(d, rec)| Info {
                updated_at: None,
                ..to_info(&d, rec)
            })
            .collect();
        let chunks: Vec<Result<ListContentResponse, Status>> = infos
            .chunks(LIST_CHUNK)
            .map(|c| Ok(ListContentResponse { info: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(futures_lite::stream::iter(chunks))))
    }

    async fn delete(&self, req: Request<DeleteContentRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let digest = parse_digest(&req.get_ref().digest)?;
        let n = ns.clone();
        let deleted = self
            .0
            .store_write(move |s| s.content_delete(&n, &digest))
            .await
            .map_err(|e| match e {
                berth_drivers::store::StoreError::NotFound(_) => not_found(&digest),
                e => status(e),
            })?;
        if !deleted.still_referenced {
            match self
                .0
                .op(OpKind::Remove {
                    path: Layout::blob(&digest),
                })
                .await
            {
                Err(e) if !e.is_not_found() => log::warn!("removing blob {digest}: {e}"),
                _ => {}
            }
        }
        self.0.gc.schedule();
        let ev = ContentDelete {
            digest: digest.to_string(),
        };
        self.0.events.publish(
            &ns,
            CONTENT_DELETE,
            to_any(&ev),
            &[("digest", &ev.digest)],
            self.0.now(),
        );
        Ok(Response::new(()))
    }

    type ReadStream = BoxStream<ReadContentResponse>;

    async fn read(
        &self,
        req: Request<ReadContentRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let digest = parse_digest(&r.digest)?;
        let size = self.record(&ns, &digest)?.size;
        if r.offset < 0 || r.offset as u64 > size {
            return Err(Status::out_of_range(format!(
                "read offset {} is outside blob {digest} of {size} bytes",
                r.offset
            )));
        }
        let start = r.offset as u64;
        let end = if r.size <= 0 {
            size
        } else {
            size.min(start + r.size as u64)
        };
        let handle = match self
            .0
            .op(OpKind::Open {
                path: Layout::blob(&digest),
                options: OpenOptions::read(),
            })
            .await
        {
            Ok(OpOutput::Opened { handle, .. }) => handle,
            Ok(_) => return Err(Status::internal("open returned no handle")),
            Err(e) if e.is_not_found() => {
                return Err(Status::data_loss(format!(
                    "blob {digest} is recorded but missing on disk"
                )))
            }
            Err(e) => return Err(Status::internal(format!("opening blob {digest}: {e}"))),
        };
        let (tx, rx) = async_channel::bounded(2);
        let d = self.0.clone();
        smol::spawn(async move {
            let mut offset = start;
            while offset < end {
                let len = READ_CHUNK.min((end - offset) as u32);
                let msg = match d
                    .op(OpKind::Read {
                        handle,
                        offset,
                        len,
                    })
                    .await
                {
                    Ok(OpOutput::Data(data)) if !data.is_empty() => {
                        let m = ReadContentResponse {
                            offset: offset as i64,
                            data,
                        };
                        offset += m.data.len() as u64;
                        Ok(m)
                    }
                    Ok(_) => Err(Status::data_loss(format!(
                        "blob {digest} is shorter than recorded"
                    ))),
                    Err(e) => Err(Status::internal(format!("reading blob {digest}: {e}"))),
                };
                let failed = msg.is_err();
                if tx.send(msg).await.is_err() || failed {
                    break; // the client went away (ctr cancels once it has enough)
                }
            }
            let _ = d.op(OpKind::Close { handle }).await;
        })
        .detach();
        Ok(Response::new(Box::pin(rx)))
    }

    async fn status(
        &self,
        req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let ns = namespace(&req)?;
        let reference = req.into_inner().r#ref;
        let key = Layout::ingest_key(&ns, &reference);
        match self.ingest_at_rest(&ns, &key).await {
            Some((meta, st)) if meta.reference == reference => Ok(Response::new(StatusResponse {
                status: Some(to_status(&st)),
            })),
            _ => Err(Status::not_found(format!(
                "ingest {reference:?}: not found"
            ))),
        }
    }

    async fn list_statuses(
        &self,
        req: Request<ListStatusesRequest>,
    ) -> Result<Response<ListStatusesResponse>, Status> {
        let ns = namespace(&req)?;
        let filter = Filter::parse(&req.get_ref().filters).map_err(status)?;
        let keys = match self
            .0
            .op(OpKind::ReadDir {
                path: INGEST.into(),
            })
            .await
        {
            Ok(OpOutput::Entries(k)) => k,
            _ => Vec::new(),
        };
        let mut statuses = Vec::new();
        for key in keys {
            if let Some((meta, st)) = self.ingest_at_rest(&ns, &key).await {
                let ok = filter.matches(|p| match p {
                    [f] if f == "ref" => Some(meta.reference.clone()),
                    [f] if f == "expected" => meta.expected.map(|d| d.to_string()),
                    _ => None,
                });
                if ok {
                    statuses.push(to_status(&st));
                }
            }
        }
        Ok(Response::new(ListStatusesResponse { statuses }))
    }

    async fn abort(&self, req: Request<AbortRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let reference = req.into_inner().r#ref;
        let Some(_lock) = self.0.lock_ingest(&ns, &reference) else {
            return Err(Status::unavailable(format!(
                "ref {reference:?} is held by an active writer"
            )));
        };
        let key = Layout::ingest_key(&ns, &reference);
        if self.ingest_at_rest(&ns, &key).await.is_none() {
            return Err(Status::not_found(format!(
                "ingest {reference:?}: not found"
            )));
        }
        self.0
            .op(OpKind::RemoveAll {
                path: format!("{INGEST}/{key}"),
            })
            .await
            .map_err(|e| Status::internal(format!("aborting ingest {reference:?}: {e}")))?;
        Ok(Response::new(()))
    }

    type WriteStream = BoxStream<WriteContentResponse>;

    async fn write(
        &self,
        req: Request<Streaming<WriteContentRequest>>,
    ) -> Result<Response<Self::WriteStream>, Status> {
        let ns = namespace(&req)?;
        let lease = lease(&req)?;
        let inbound = req.into_inner();
        let (tx, rx) = async_channel::bounded(4);
        let d = self.0.clone();
        smol::spawn(async move {
            if let Err(s) = super::content_write::session(d, ns, lease, inbound, &tx).await {
                let _ = tx.send(Err(s)).await;
            }
        })
        .detach();
        Ok(Response::new(Box::pin(rx)))
    }
}
