//! Publishing Events with upstream's reasons and event sources.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// Publishes Events for one controller (`reportingController` = upstream's event source, e.g.
/// `service-controller`). Failing to publish an Event is logged, never an error.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    pub fn new(client: kube::Client, source: &str, instance: &str) -> Self {
        let reporter = Reporter { controller: source.to_string(), instance: Some(instance.to_string()) };
        Self { recorder: Recorder::new(client, reporter) }
    }

    pub async fn normal(&self, object: &ObjectReference, reason: &str, note: impl Into<String>) {
        self.publish(object, EventType::Normal, reason, note.into()).await;
    }

    pub async fn warning(&self, object: &ObjectReference, reason: &str, note: impl Into<String>) {
        self.publish(object, EventType::Warning, reason, note.into()).await;
    }

    async fn publish(&self, object: &ObjectReference, type_: EventType, reason: &str, note: String) {
        // The API caps an event note at 1 kB.
        let note: String = note.chars().take(1000).collect();
        let event =
            Event { type_, reason: reason.to_string(), note: Some(note), action: reason.to_string(), secondary: None };
        if let Err(err) = self.recorder.publish(&event, object).await {
            tracing::warn!(%err, reason, object = ?object.name, "could not publish an Event");
        }
    }
}
