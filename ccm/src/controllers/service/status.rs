//! Writes to a Service: strategic-merge patches on the `status` subresource, carrying the
//! finalizer (metadata) and `status.loadBalancer`, as upstream does, so the controller needs
//! only `services/status` patch rights to write.

use cloud_provider::IngressPoint;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::objects::LB_CLEANUP_FINALIZER;

fn params() -> PatchParams {
    PatchParams { field_manager: Some("cloud-controller-manager".into()), ..PatchParams::default() }
}

/// A Service deleted meanwhile needs nothing more.
fn ignore_not_found(result: kube::Result<Service>) -> kube::Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(err),
    }
}

pub async fn add_finalizer(api: &Api<Service>, name: &str) -> kube::Result<()> {
    let patch = json!({ "metadata": { "finalizers": [LB_CLEANUP_FINALIZER] } });
    ignore_not_found(api.patch_status(name, &params(), &Patch::Strategic(&patch)).await)
}

pub async fn set_ingress(api: &Api<Service>, name: &str, ingress: &[IngressPoint]) -> kube::Result<()> {
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
    let patch = json!({ "status": { "loadBalancer": { "ingress": ingress } } });
    ignore_not_found(api.patch_status(name, &params(), &Patch::Strategic(&patch)).await)
}

pub async fn remove_finalizer_and_ingress(api: &Api<Service>, name: &str) -> kube::Result<()> {
    let patch = json!({
        "metadata": { "$deleteFromPrimitiveList/finalizers": [LB_CLEANUP_FINALIZER] },
        "status": { "loadBalancer": { "ingress": null } },
    });
    ignore_not_found(api.patch_status(name, &params(), &Patch::Strategic(&patch)).await)
}
