//! LoadBalancer Services as the tests write them, and what AWS names their load balancers.

use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;

use super::eventually;

/// The annotation that makes a Service's load balancer an NLB.
pub const NLB: (&str, &str) = ("service.beta.kubernetes.io/aws-load-balancer-type", "nlb");

/// `default/<name>`, `type: LoadBalancer`, with these annotations and (port, protocol) pairs
/// (ports named `p<port>`).
pub fn lb_service(name: &str, annotations: &[(&str, &str)], ports: &[(i32, &str)]) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            annotations: Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            selector: Some([("app".to_string(), name.to_string())].into_iter().collect()),
            ports: Some(
                ports
                    .iter()
                    .map(|(port, protocol)| ServicePort {
                        name: Some(format!("p{port}")),
                        port: *port,
                        protocol: Some(protocol.to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

/// The load balancer's name, upstream's: `a` + the UID without dashes, 32 characters.
pub fn lb_name(svc: &Service) -> String {
    let uid: String = svc.metadata.uid.clone().unwrap_or_default().chars().filter(|c| *c != '-').collect();
    format!("a{uid}").chars().take(32).collect()
}

/// Waits for the Service's first ingress hostname.
pub async fn wait_hostname(services: &Api<Service>, name: &str, limit: Duration) -> Result<String> {
    eventually("an external hostname", limit, || async {
        let svc = services.get(name).await?;
        Ok(svc.status.and_then(|s| s.load_balancer).and_then(|l| l.ingress).and_then(|i| i.first()?.hostname.clone()))
    })
    .await
}
