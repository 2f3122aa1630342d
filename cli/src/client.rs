//! The connection to berthd: one HTTP/2 connection on the UNIX socket, the typed gRPC clients
//! over it, and requests that carry the namespace header (and the deadline, with `--timeout`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_api::berth_services::transfer::v1::transfer_client::TransferClient;
use berth_api::services::containers::v1::containers_client::ContainersClient;
use berth_api::services::content::v1::content_client::ContentClient;
use berth_api::services::events::v1::events_client::EventsClient;
use berth_api::services::images::v1::images_client::ImagesClient;
use berth_api::services::introspection::v1::introspection_client::IntrospectionClient;
use berth_api::services::leases::v1::leases_client::LeasesClient;
use berth_api::services::namespaces::v1::namespaces_client::NamespacesClient;
use berth_api::services::snapshots::v1::snapshots_client::SnapshotsClient;
use berth_api::services::tasks::v1::tasks_client::TasksClient;
use berth_api::services::version::v1::version_client::VersionClient;
use berth_api::transport::{self, Channel};
use berth_api::{LEASE_HEADER, MAX_MESSAGE_SIZE, NAMESPACE_HEADER};
use tonic::metadata::MetadataValue;
use tonic::Status;

use crate::error::{self, Ctx, Error, Result};

/// A connected client: the channel, the namespace every call is made in, and the deadline.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    address: PathBuf,
    namespace: String,
    deadline: Option<Instant>,
}

impl Client {
    /// Connects to berthd at `address`, the connection driven by the calling thread (`local`,
    /// which must then be inside [`transport::block_on_local`]) or by smol's global executor.
    /// Errors are exit code 3 with a hint.
    pub async fn connect(
        address: &Path,
        namespace: &str,
        timeout: Option<Duration>,
        local: bool,
    ) -> Result<Client> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let channel = if local {
            transport::connect_local(address).await
        } else {
            transport::connect(address).await
        }
        .map_err(|e| Error::connect(address, &e))?;
        Ok(Client {
            channel,
            address: address.to_path_buf(),
            namespace: namespace.to_string(),
            deadline,
        })
    }

    /// Wraps a message into a request with the namespace header and, if a deadline is set,
    /// the remaining time as `grpc-timeout`.
    pub fn request<T>(&self, msg: T) -> Result<tonic::Request<T>> {
        let mut req = tonic::Request::new(msg);
        let ns = MetadataValue::try_from(self.namespace.as_str()).map_err(|_| {
            Error::usage(format!(
                "namespace {:?} cannot be sent as a header (use letters, digits, '.', '_' and '-')",
                self.namespace
            ))
        })?;
        req.metadata_mut().insert(NAMESPACE_HEADER, ns);
        if let Some(d) = self.deadline {
            req.set_timeout(d.saturating_duration_since(Instant::now()));
        }
        Ok(req)
    }

    /// As [`Client::request`], with the lease header: what the call creates (snapshots,
    /// content) belongs to lease `lease` and is protected from garbage collection by it.
    pub fn request_in_lease<T>(&self, msg: T, lease: &str) -> Result<tonic::Request<T>> {
        let mut req = self.request(msg)?;
        let value = MetadataValue::try_from(lease)
            .map_err(|_| Error::usage(format!("lease {lease:?} cannot be sent as a header")))?;
        req.metadata_mut().insert(LEASE_HEADER, value);
        Ok(req)
    }

    /// The namespace calls are made in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// An error context naming `what` in this client's namespace.
    pub fn ctx<'a>(&'a self, what: &'a str) -> Ctx<'a> {
        Ctx {
            what,
            namespace: Some(&self.namespace),
            address: &self.address,
        }
    }

    /// An error context for an object that is not namespaced (a namespace, the server).
    pub fn global_ctx<'a>(&'a self, what: &'a str) -> Ctx<'a> {
        Ctx {
            what,
            namespace: None,
            address: &self.address,
        }
    }

    /// Maps a status about `what` in this client's namespace.
    pub fn err(&self, what: &str, s: &Status) -> Error {
        error::from_status(s, self.ctx(what))
    }

    /// The Content service.
    pub fn content(&self) -> ContentClient<Channel> {
        ContentClient::with_origin(self.channel.clone(), transport::origin())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// The Namespaces service.
    pub fn namespaces(&self) -> NamespacesClient<Channel> {
        NamespacesClient::with_origin(self.channel.clone(), transport::origin())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// The Leases service.
    pub fn leases(&self) -> LeasesClient<Channel> {
        LeasesClient::with_origin(self.channel.clone(), transport::origin())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// The Version service.
    pub fn version(&self) -> VersionClient<Channel> {
        VersionClient::with_origin(self.channel.clone(), transport::origin())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// The Introspection service.
    pub fn introspection(&self) -> IntrospectionClient<Channel> {
        IntrospectionClient::with_origin(self.channel.clone(), transport::origin())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// The Images service.
    pub fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::with_origin(self.channel.clone(), transport::origin())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// The Snapshots service.
    pub fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::with_origin(self.channel.clone(), transport::origin())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// berth's own Transfer service: pulls, pushes, imports and exports done by berthd.
    pub fn transfer(&self) -> TransferClient<Channel> {
        TransferClient::with_origin(self.channel.clone(), transport::origin())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// The Containers service.
    pub fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::with_origin(self.channel.clone(), transport::origin())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// The Tasks service.
    pub fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::with_origin(self.channel.clone(), transport::origin())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// The Events service.
    pub fn events(&self) -> EventsClient<Channel> {
        EventsClient::with_origin(self.channel.clone(), transport::origin())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }
}
