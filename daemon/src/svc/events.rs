//! `containerd.services.events.v1.Events`: publish, forward, subscribe.

use std::pin::Pin;
use std::sync::Arc;

use berth_api::services::events::v1::{
    events_server::Events, Envelope, ForwardRequest, PublishRequest, SubscribeRequest,
};
use berth_core::events::valid_topic;
use berth_core::metadata::Filter;
use futures_lite::Stream;
use tonic::{Request, Response, Status};

use crate::errors::status;
use crate::state::{namespace, Daemon};

/// The events service.
pub struct Service(pub Arc<Daemon>);

#[tonic::async_trait]
impl Events for Service {
    async fn publish(&self, req: Request<PublishRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        if !valid_topic(&r.topic) {
            return Err(Status::invalid_argument(format!(
                "topic {:?} is not a valid topic",
                r.topic
            )));
        }
        let event = r
            .event
            .ok_or_else(|| Status::invalid_argument("event is missing"))?;
        self.0
            .events
            .publish(&ns, &r.topic, event, &[], self.0.now());
        Ok(Response::new(()))
    }

    async fn forward(&self, req: Request<ForwardRequest>) -> Result<Response<()>, Status> {
        let env = req
            .into_inner()
            .envelope
            .ok_or_else(|| Status::invalid_argument("envelope is missing"))?;
        if !valid_topic(&env.topic) {
            return Err(Status::invalid_argument(format!(
                "topic {:?} is not a valid topic",
                env.topic
            )));
        }
        let event = env
            .event
            .ok_or_else(|| Status::invalid_argument("event is missing"))?;
        self.0
            .events
            .publish(&env.namespace, &env.topic, event, &[], self.0.now());
        Ok(Response::new(()))
    }

    type SubscribeStream = Pin<Box<dyn Stream<Item = Result<Envelope, Status>> + Send>>;

    async fn subscribe(
        &self,
        req: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let filter = Filter::parse(&req.get_ref().filters).map_err(status)?;
        let rx = self.0.events.subscribe(filter);
        Ok(Response::new(Box::pin(futures_lite::StreamExt::map(
            rx, Ok,
        ))))
    }
}
