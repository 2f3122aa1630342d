//! The event exchange: publish once, deliver to every subscriber whose filters match.

use std::sync::Mutex;

use berth_api::services::events::v1::Envelope;
use berth_core::metadata::Filter;
use prost_types::Any;

use crate::state::timestamp;

struct Subscriber {
    filter: Filter,
    tx: async_channel::Sender<Envelope>,
}

/// Event fan-out. Events are global: every subscriber sees every namespace.
#[derive(Default)]
pub struct Exchange {
    subs: Mutex<Vec<Subscriber>>,
}

/// Events a slow subscriber may have queued before it is dropped.
const QUEUE: usize = 4096;

impl Exchange {
    /// Publishes `event` on `topic` in `namespace`. `fields` are the event's own fields for
    /// `event.<field>` filters.
    pub fn publish(
        &self,
        namespace: &str,
        topic: &str,
        event: Any,
        fields: &[(&str, &str)],
        now: berth_core::Instant,
    ) {
        let env = Envelope {
            timestamp: Some(timestamp(now)),
            namespace: namespace.to_string(),
            topic: topic.to_string(),
            event: Some(event),
        };
        let mut subs = self.subs.lock().expect("exchange lock");
        subs.retain(|s| {
            let field = |path: &[String]| -> Option<String> {
                match path {
                    [t] if t == "topic" => Some(env.topic.clone()),
                    [n] if n == "namespace" => Some(env.namespace.clone()),
                    [e, f] if e == "event" => fields
                        .iter()
                        .find(|(k, _)| k == f)
                        .map(|(_, v)| v.to_string()),
                    _ => None,
                }
            };
            if !s.filter.matches(field) {
                return !s.tx.is_closed();
            }
            match s.tx.try_send(env.clone()) {
                Ok(()) => true,
                Err(async_channel::TrySendError::Full(_)) => {
                    log::warn!("dropping an event subscriber that fell {QUEUE} events behind");
                    false
                }
                Err(async_channel::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// Subscribes with containerd filters (`topic==…`, `namespace==…`, `event.<field>==…`).
    pub fn subscribe(&self, filter: Filter) -> async_channel::Receiver<Envelope> {
        let (tx, rx) = async_channel::bounded(QUEUE);
        self.subs
            .lock()
            .expect("exchange lock")
            .push(Subscriber { filter, tx });
        rx
    }
}
