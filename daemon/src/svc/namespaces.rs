//! `containerd.services.namespaces.v1.Namespaces`, with containerd's rules: Get of a missing
//! namespace is OK with no labels; deleting a non-empty one is FailedPrecondition.

use std::sync::Arc;

use berth_api::any::to_any;
use berth_api::events::{NamespaceCreate, NamespaceDelete, NamespaceUpdate};
use berth_api::services::namespaces::v1::{namespaces_server::Namespaces, *};
use berth_core::events::{NAMESPACE_CREATE, NAMESPACE_DELETE, NAMESPACE_UPDATE};
use tonic::{Request, Response, Status};

use crate::errors::status;
use crate::state::Daemon;

/// The namespaces service.
pub struct Service(pub Arc<Daemon>);

fn header_ns<T>(req: &Request<T>, fallback: &str) -> String {
    crate::state::namespace(req).unwrap_or_else(|_| fallback.to_string())
}

#[tonic::async_trait]
impl Namespaces for Service {
    async fn get(
        &self,
        req: Request<GetNamespaceRequest>,
    ) -> Result<Response<GetNamespaceResponse>, Status> {
        let name = req.into_inner().name;
        let labels = self
            .0
            .store
            .namespace_get(&name)
            .map_err(status)?
            .unwrap_or_default();
        Ok(Response::new(GetNamespaceResponse {
            namespace: Some(Namespace {
                name,
                labels: labels.into_iter().collect(),
            }),
        }))
    }

    async fn list(
        &self,
        _: Request<ListNamespacesRequest>,
    ) -> Result<Response<ListNamespacesResponse>, Status> {
        let namespaces = self
            .0
            .store
            .namespace_list()
            .map_err(status)?
            .into_iter()
            .map(|(name, labels)| Namespace {
                name,
                labels: labels.into_iter().collect(),
            })
            .collect();
        Ok(Response::new(ListNamespacesResponse { namespaces }))
    }

    async fn create(
        &self,
        req: Request<CreateNamespaceRequest>,
    ) -> Result<Response<CreateNamespaceResponse>, Status> {
        let caller = header_ns(&req, "");
        let ns = req
            .into_inner()
            .namespace
            .ok_or_else(|| Status::invalid_argument("namespace is missing"))?;
        let labels = ns.labels.clone().into_iter().collect();
        let name = ns.name.clone();
        self.0
            .store_write(move |s| s.namespace_create(&name, &labels))
            .await
            .map_err(status)?;
        let ev = NamespaceCreate {
            name: ns.name.clone(),
            labels: ns.labels.clone(),
        };
        let caller = if caller.is_empty() {
            ns.name.clone()
        } else {
            caller
        };
        self.0.events.publish(
            &caller,
            NAMESPACE_CREATE,
            to_any(&ev),
            &[("name", &ns.name)],
            self.0.now(),
        );
        Ok(Response::new(CreateNamespaceResponse {
            namespace: Some(ns),
        }))
    }

    async fn update(
        &self,
        req: Request<UpdateNamespaceRequest>,
    ) -> Result<Response<UpdateNamespaceResponse>, Status> {
        let caller = header_ns(&req, "");
        let r = req.into_inner();
        let ns = r
            .namespace
            .ok_or_else(|| Status::invalid_argument("namespace is missing"))?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let (name, labels) = (ns.name.clone(), ns.labels.into_iter().collect());
        let labels = self
            .0
            .store_write(move |s| s.namespace_update(&name, &labels, &paths))
            .await
            .map_err(status)?;
        let out = Namespace {
            name: ns.name.clone(),
            labels: labels.into_iter().collect(),
        };
        let ev = NamespaceUpdate {
            name: out.name.clone(),
            labels: out.labels.clone(),
        };
        let caller = if caller.is_empty() {
            ns.name.clone()
        } else {
            caller
        };
        self.0.events.publish(
            &caller,
            NAMESPACE_UPDATE,
            to_any(&ev),
            &[("name", &ns.name)],
            self.0.now(),
        );
        Ok(Response::new(UpdateNamespaceResponse {
            namespace: Some(out),
        }))
    }

    async fn delete(&self, req: Request<DeleteNamespaceRequest>) -> Result<Response<()>, Status> {
        let name = req.into_inner().name;
        if !self.0.tasks.namespace_empty(&name) {
            return Err(Status::failed_precondition(format!(
                "namespace {name:?} must be empty, but it still has tasks"
            )));
        }
        if !self.0.snapshotters.namespace_empty(&name).await {
            return Err(Status::failed_precondition(format!(
                "namespace {name:?} must be empty, but it still has snapshots"
            )));
        }
        let n = name.clone();
        self.0
            .store_write(move |s| s.namespace_delete(&n))
            .await
            .map_err(status)?;
        let ev = NamespaceDelete { name: name.clone() };
        self.0.events.publish(
            &name,
            NAMESPACE_DELETE,
            to_any(&ev),
            &[("name", &name)],
            self.0.now(),
        );
        Ok(Response::new(()))
    }
}
