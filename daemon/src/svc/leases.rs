//! `containerd.services.leases.v1.Leases`.

use std::sync::Arc;

use berth_api::services::leases::v1::{leases_server::Leases, *};
use berth_core::metadata::Filter;
use berth_drivers::store::{LeaseRecord, LeaseResource};
use tonic::{Request, Response, Status};

use crate::errors::status;
use crate::state::{namespace, timestamp, Daemon};

/// The leases service.
pub struct Service(pub Arc<Daemon>);

fn to_proto(id: String, rec: LeaseRecord) -> Lease {
    Lease {
        id,
        created_at: Some(timestamp(rec.created_at)),
        labels: rec.labels.into_iter().collect(),
    }
}

/// A lease id for a client that gave none: `<nanos>-<suffix>`, like containerd's random ids.
fn generated_id(now: berth_core::Instant) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let salt = berth_core::Digest::sha256(
        format!("{}-{n}-{}", now.as_nanos(), std::process::id()).as_bytes(),
    );
    format!("{}-{}", now.as_nanos(), &salt.hex()[..6])
}

/// Label of the leases berthd's own transfers hold: a restarted daemon deletes them (the
/// transfer died with the previous process), so the start-up collection takes what they held
/// and nothing else.
pub const TRANSFER_LABEL: &str = "berth.io/transfer";

/// Deletes the leases of transfers a previous berthd process left (see [`TRANSFER_LABEL`]).
pub fn drop_stale_transfers(store: &berth_drivers::store::Store) -> Result<usize, String> {
    let mut n = 0;
    for ns in store.namespace_names().map_err(|e| e.to_string())? {
        for (id, rec) in store.lease_list(&ns).map_err(|e| e.to_string())? {
            if rec.labels.contains_key(TRANSFER_LABEL) {
                store.lease_delete(&ns, &id).map_err(|e| e.to_string())?;
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Creates a lease for berthd's own work (pulls, imports) in `ns`, expiring after 24 hours as
/// ctr's do, so that a crash leaves nothing protected forever. Returns its id.
pub async fn temporary(d: &Arc<Daemon>, ns: &str) -> Result<String, Status> {
    let now = d.now();
    let id = generated_id(now);
    let expire = berth_core::Instant(now.as_nanos() + 24 * 3600 * 1_000_000_000);
    let labels: berth_core::metadata::Labels = [
        (
            "containerd.io/gc.expire".to_string(),
            berth_core::metadata::format_rfc3339(expire),
        ),
        (TRANSFER_LABEL.to_string(), "true".to_string()),
    ]
    .into();
    let (n, i) = (ns.to_string(), id.clone());
    d.store_write(move |s| {
        s.namespace_ensure(&n)?;
        s.lease_create(&n, &i, &labels, now)
    })
    .await
    .map_err(status)?;
    Ok(id)
}

fn resource(r: Option<Resource>) -> Result<LeaseResource, Status> {
    let r = r.ok_or_else(|| Status::invalid_argument("resource is missing"))?;
    if r.id.is_empty() || r.r#type.is_empty() {
        return Err(Status::invalid_argument("resource needs an id and a type"));
    }
    Ok(LeaseResource {
        kind: r.r#type,
        id: r.id,
    })
}

#[tonic::async_trait]
impl Leases for Service {
    async fn create(
        &self,
        req: Request<CreateRequest>,
    ) -> Result<Response<CreateResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let now = self.0.now();
        let id = if r.id.is_empty() {
            generated_id(now)
        } else {
            r.id.clone()
        };
        let labels = r.labels.into_iter().collect();
        let lease_id = id.clone();
        let rec = self
            .0
            .store_write(move |s| s.lease_create(&ns, &id, &labels, now))
            .await
            .map_err(status)?;
        Ok(Response::new(CreateResponse {
            lease: Some(to_proto(lease_id, rec)),
        }))
    }

    async fn delete(&self, req: Request<DeleteRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let id = r.id;
        self.0
            .store_write(move |s| s.lease_delete(&ns, &id))
            .await
            .map_err(status)?;
        if r.sync {
            crate::gc::run(&self.0).await.map_err(Status::internal)?;
        } else {
            self.0.gc.schedule();
        }
        Ok(Response::new(()))
    }

    async fn list(&self, req: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let ns = namespace(&req)?;
        let filter = Filter::parse(&req.get_ref().filters).map_err(status)?;
        let leases = self
            .0
            .store
            .lease_list(&ns)
            .map_err(status)?
            .into_iter()
            .filter(|(id, rec)| {
                filter.matches(|p| match p {
                    [f] if f == "id" => Some(id.clone()),
                    [l, k] if l == "labels" => rec.labels.get(k).cloned(),
                    _ => None,
                })
            })
            .map(|(id, rec)| to_proto(id, rec))
            .collect();
        Ok(Response::new(ListResponse { leases }))
    }

    async fn add_resource(&self, req: Request<AddResourceRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let res = resource(r.resource)?;
        self.0
            .store_write(move |s| s.lease_add_resource(&ns, &r.id, &res))
            .await
            .map_err(status)?;
        Ok(Response::new(()))
    }

    async fn delete_resource(
        &self,
        req: Request<DeleteResourceRequest>,
    ) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let res = resource(r.resource)?;
        self.0
            .store_write(move |s| s.lease_delete_resource(&ns, &r.id, &res))
            .await
            .map_err(status)?;
        Ok(Response::new(()))
    }

    async fn list_resources(
        &self,
        req: Request<ListResourcesRequest>,
    ) -> Result<Response<ListResourcesResponse>, Status> {
        let ns = namespace(&req)?;
        let id = req.into_inner().id;
        let resources = self
            .0
            .store
            .lease_resources(&ns, &id)
            .map_err(status)?
            .into_iter()
            .map(|r| Resource {
                id: r.id,
                r#type: r.kind,
            })
            .collect();
        Ok(Response::new(ListResourcesResponse { resources }))
    }
}
