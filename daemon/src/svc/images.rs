//! `containerd.services.images.v1.Images`: named image records per namespace.
//!
//! Deleting an image removes only its record; its content and snapshots go with the next
//! garbage collection (at once, and waited for, with `sync`).

use std::sync::Arc;

use berth_api::any::to_any;
use berth_api::services::images::v1::{images_server::Images, *};
use berth_api::types;
use berth_core::metadata::{Filter, Labels};
use berth_core::Digest;
use berth_drivers::store::{Descriptor, ImageRecord, StoreError};
use tonic::{Request, Response, Status};

use crate::errors::status;
use crate::state::{namespace, timestamp, Daemon};

/// The images service.
pub struct Service(pub Arc<Daemon>);

const IMAGE_CREATE: &str = "/images/create";
const IMAGE_UPDATE: &str = "/images/update";
const IMAGE_DELETE: &str = "/images/delete";

fn from_proto(d: Option<types::Descriptor>, image: &str) -> Result<Descriptor, Status> {
    let d = d.ok_or_else(|| {
        Status::invalid_argument(format!("image {image:?}: a target is required"))
    })?;
    let digest = Digest::parse(&d.digest)
        .map_err(|e| Status::invalid_argument(format!("image {image:?}: target digest: {e}")))?;
    let size = u64::try_from(d.size).map_err(|_| {
        Status::invalid_argument(format!(
            "image {image:?}: target size {} is negative",
            d.size
        ))
    })?;
    Ok(Descriptor {
        media_type: d.media_type,
        digest,
        size,
        annotations: d.annotations.into_iter().collect(),
    })
}

fn to_proto(name: String, rec: ImageRecord) -> Image {
    Image {
        name,
        labels: rec.labels.into_iter().collect(),
        target: Some(types::Descriptor {
            media_type: rec.target.media_type,
            digest: rec.target.digest.to_string(),
            size: rec.target.size as i64,
            annotations: rec.target.annotations.into_iter().collect(),
        }),
        created_at: Some(timestamp(rec.created_at)),
        updated_at: Some(timestamp(rec.updated_at)),
    }
}

/// Records (creates, or points an existing name at) an image berthd wrote itself — its own
/// pulls and imports — and publishes `/images/create` or `/images/update`.
pub async fn put_image(d: &Daemon, ns: &str, name: &str, target: Descriptor) -> Result<(), Status> {
    let (n, nm, now) = (ns.to_string(), name.to_string(), d.now());
    let created = d
        .store_write(
            move |s| match s.image_create(&n, &nm, &Labels::new(), &target, now) {
                Err(StoreError::AlreadyExists(_)) => s
                    .image_update(
                        &n,
                        &nm,
                        &Labels::new(),
                        &target,
                        &["target".to_string()],
                        now,
                    )
                    .map(|_| false),
                r => r.map(|_| true),
            },
        )
        .await
        .map_err(status)?;
    let (topic, ev) = if created {
        (
            IMAGE_CREATE,
            to_any(&ImageCreate {
                name: name.into(),
                labels: Default::default(),
            }),
        )
    } else {
        (
            IMAGE_UPDATE,
            to_any(&ImageUpdate {
                name: name.into(),
                labels: Default::default(),
            }),
        )
    };
    d.events.publish(ns, topic, ev, &[("name", name)], d.now());
    Ok(())
}

impl Service {
    fn publish(&self, ns: &str, topic: &str, ev: prost_types::Any, name: &str) {
        self.0
            .events
            .publish(ns, topic, ev, &[("name", name)], self.0.now());
    }
}

#[tonic::async_trait]
impl Images for Service {
    async fn get(
        &self,
        req: Request<GetImageRequest>,
    ) -> Result<Response<GetImageResponse>, Status> {
        let ns = namespace(&req)?;
        let name = req.into_inner().name;
        let rec = self.0.store.image_get(&ns, &name).map_err(status)?;
        let rec = rec.ok_or_else(|| Status::not_found(format!("image {name:?}: not found")))?;
        Ok(Response::new(GetImageResponse {
            image: Some(to_proto(name, rec)),
        }))
    }

    async fn list(
        &self,
        req: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let ns = namespace(&req)?;
        let filter = Filter::parse(&req.get_ref().filters).map_err(status)?;
        let images = self
            .0
            .store
            .image_list(&ns)
            .map_err(status)?
            .into_iter()
            .filter(|(name, rec)| {
                filter.matches(|p| match p {
                    [f] if f == "name" => Some(name.clone()),
                    [t, f] if t == "target" && f == "digest" => Some(rec.target.digest.to_string()),
                    [t, f] if t == "target" && f == "mediatype" => {
                        Some(rec.target.media_type.clone())
                    }
                    [l, k] if l == "labels" => rec.labels.get(k).cloned(),
                    _ => None,
                })
            })
            .map(|(name, rec)| to_proto(name, rec))
            .collect();
        Ok(Response::new(ListImagesResponse { images }))
    }

    async fn create(
        &self,
        req: Request<CreateImageRequest>,
    ) -> Result<Response<CreateImageResponse>, Status> {
        let ns = namespace(&req)?;
        let image = req
            .into_inner()
            .image
            .ok_or_else(|| Status::invalid_argument("image is missing"))?;
        let target = from_proto(image.target, &image.name)?;
        let labels: Labels = image.labels.into_iter().collect();
        let (n, name, l, now) = (ns.clone(), image.name.clone(), labels.clone(), self.0.now());
        let rec = self
            .0
            .store_write(move |s| s.image_create(&n, &name, &l, &target, now))
            .await
            .map_err(status)?;
        let ev = ImageCreate {
            name: image.name.clone(),
            labels: labels.into_iter().collect(),
        };
        self.publish(&ns, IMAGE_CREATE, to_any(&ev), &image.name);
        Ok(Response::new(CreateImageResponse {
            image: Some(to_proto(image.name, rec)),
        }))
    }

    async fn update(
        &self,
        req: Request<UpdateImageRequest>,
    ) -> Result<Response<UpdateImageResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let image = r
            .image
            .ok_or_else(|| Status::invalid_argument("image is missing"))?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let needs_target = paths.is_empty() || paths.iter().any(|p| p == "target");
        let target = match image.target {
            Some(t) if !t.digest.is_empty() || needs_target => from_proto(Some(t), &image.name)?,
            Some(t) => Descriptor {
                media_type: t.media_type,
                digest: Digest::sha256(b""),
                size: 0,
                annotations: t.annotations.into_iter().collect(),
            },
            None if needs_target => from_proto(None, &image.name)?,
            None => Descriptor {
                media_type: String::new(),
                digest: Digest::sha256(b""),
                size: 0,
                annotations: Labels::new(),
            },
        };
        let labels: Labels = image.labels.into_iter().collect();
        let (n, name, now) = (ns.clone(), image.name.clone(), self.0.now());
        let rec = self
            .0
            .store_write(move |s| s.image_update(&n, &name, &labels, &target, &paths, now))
            .await
            .map_err(status)?;
        let ev = ImageUpdate {
            name: image.name.clone(),
            labels: rec.labels.clone().into_iter().collect(),
        };
        self.publish(&ns, IMAGE_UPDATE, to_any(&ev), &image.name);
        Ok(Response::new(UpdateImageResponse {
            image: Some(to_proto(image.name, rec)),
        }))
    }

    async fn delete(&self, req: Request<DeleteImageRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let name = r.name;
        let (n, nm) = (ns.clone(), name.clone());
        self.0
            .store_write(move |s| s.image_delete(&n, &nm))
            .await
            .map_err(status)?;
        if r.sync {
            crate::gc::run(&self.0).await.map_err(Status::internal)?;
        } else {
            self.0.gc.schedule();
        }
        self.publish(
            &ns,
            IMAGE_DELETE,
            to_any(&ImageDelete { name: name.clone() }),
            &name,
        );
        Ok(Response::new(()))
    }
}
