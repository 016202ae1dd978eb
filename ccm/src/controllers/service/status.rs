//! Writes to a Service: strategic-merge patches on the `status` subresource, carrying the
//! finalizer (metadata) and `status.loadBalancer`, as upstream does, so the controller needs
//! only `services/status` patch rights to write.
//!
//! Every patch names the Service's UID, which the apiserver checks: a Service deleted and
//! re-created under the same name while a sync of the old one runs is never written to on the
//! old one's behalf (the new one has its own sync, its own UID and its own load balancer).

use cloud_provider::IngressPoint;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::objects::LB_CLEANUP_FINALIZER;

fn params() -> PatchParams {
    PatchParams { field_manager: Some("cloud-controller-manager".into()), ..PatchParams::default() }
}

/// The outcome of a write to a Service.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    Done,
    /// The Service with this UID is gone (deleted, or replaced by another under its name).
    Gone,
}

fn outcome(result: kube::Result<Service>) -> kube::Result<Written> {
    match result {
        Ok(_) => Ok(Written::Done),
        // 404: deleted. 409/422: the object under this name has another UID.
        Err(kube::Error::Api(status)) if [404, 409, 422].contains(&status.code) => Ok(Written::Gone),
        Err(err) => Err(err),
    }
}

fn with_uid(uid: &str, mut patch: serde_json::Value) -> serde_json::Value {
    patch["metadata"]["uid"] = json!(uid);
    patch
}

/// Adds the cleanup finalizer. `Gone` means: make nothing for this Service.
pub async fn add_finalizer(api: &Api<Service>, name: &str, uid: &str) -> kube::Result<Written> {
    let patch = with_uid(uid, json!({ "metadata": { "finalizers": [LB_CLEANUP_FINALIZER] } }));
    outcome(api.patch_status(name, &params(), &Patch::Strategic(&patch)).await)
}

pub async fn set_ingress(api: &Api<Service>, name: &str, uid: &str, ingress: &[IngressPoint]) -> kube::Result<Written> {
    let ingress: Vec<_> = ingress
        .iter()
        .map(|i| {
            let mut entry = serde_json::Map::new();
            if let Some(h) = &i.hostname {
                entry.insert("hostname".into(), json!(h));
            }
            if let Some(ip) = &i.ip {
                entry.insert("ip".into(), json!(ip));
            }
            serde_json::Value::Object(entry)
        })
        .collect();
    let patch = with_uid(uid, json!({ "status": { "loadBalancer": { "ingress": ingress } } }));
    outcome(api.patch_status(name, &params(), &Patch::Strategic(&patch)).await)
}

pub async fn remove_finalizer_and_ingress(api: &Api<Service>, name: &str, uid: &str) -> kube::Result<Written> {
    let patch = with_uid(
        uid,
        json!({
            "metadata": { "$deleteFromPrimitiveList/finalizers": [LB_CLEANUP_FINALIZER] },
            "status": { "loadBalancer": { "ingress": null } },
        }),
    );
    outcome(api.patch_status(name, &params(), &Patch::Strategic(&patch)).await)
}
