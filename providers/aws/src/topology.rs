//! `topology.k8s.aws/network-node-layer-N` labels, from EC2 DescribeInstanceTopology, as
//! upstream adds them: asked once per instance when its Node has no such label yet. An instance
//! type whose topology comes back empty, an instance of a type that must have one but came back
//! empty, and a region where the call is unsupported or not permitted are not asked again for
//! 24 hours. A failure fails the Node's initialization only for the types that must have a
//! topology (`SupportedTopologyInstanceTypePattern`, by default the HPC, Trainium and P families).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use regex::Regex;

use crate::ec2::Ec2;
use crate::errors::AwsError;

/// The label prefix; layer 1 is the one closest to the network's core.
pub const NETWORK_NODE_LABEL_PREFIX: &str = "topology.k8s.aws/network-node-layer-";
/// Upstream's default for `SupportedTopologyInstanceTypePattern`.
pub const DEFAULT_PATTERN: &str = r"^(hpc|trn|p)[0-9]+[a-z]*(-[a-z0-9]+)?(\.[0-9a-z]*)$";
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

pub struct Topology {
    ec2: Ec2,
    required: Regex,
    /// Region, instance ID or instance type → when it was found to have no topology.
    unsupported: Mutex<HashMap<String, Instant>>,
}

/// What happened, for the caller's decision.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// The network nodes, outermost first, as EC2 lists them.
    Layers(Vec<String>),
    /// Nothing to add (not asked, empty, or the call is not available here).
    Nothing,
}

impl Topology {
    pub fn new(ec2: Ec2, pattern: Option<&str>) -> Result<Self, String> {
        let required = Regex::new(pattern.unwrap_or(DEFAULT_PATTERN))
            .map_err(|e| format!("SupportedTopologyInstanceTypePattern: {e}"))?;
        Ok(Self { ec2, required, unsupported: Mutex::default() })
    }

    /// Whether an instance type must have a topology (then a failure to get it is an error).
    pub fn required(&self, instance_type: &str) -> bool {
        self.required.is_match(instance_type)
    }

    fn known_unsupported(&self, key: &str) -> bool {
        let mut map = self.unsupported.lock().expect("lock");
        map.retain(|_, at| at.elapsed() < FORGET_AFTER);
        map.contains_key(key)
    }

    fn mark_unsupported(&self, key: &str) {
        self.unsupported.lock().expect("lock").insert(key.to_string(), Instant::now());
    }

    pub async fn get(&self, region: &str, instance_id: &str, instance_type: &str) -> Result<Found, AwsError> {
        if instance_type.is_empty() || [region, instance_id, instance_type].iter().any(|k| self.known_unsupported(k)) {
            return Ok(Found::Nothing);
        }
        match self.ec2.instance_topology(instance_id).await {
            Ok(Some(layers)) if !layers.is_empty() => Ok(Found::Layers(layers)),
            Ok(_) => {
                // A type that should have a topology but has none yet (the instance may be too
                // new): this instance is not asked again; any other type: the type is not.
                let key = if self.required(instance_type) { instance_id } else { instance_type };
                self.mark_unsupported(key);
                Ok(Found::Nothing)
            }
            Err(err) if err.has_code("UnsupportedOperation") || err.has_code("UnauthorizedOperation") => {
                tracing::warn!(%region, %err, "ec2:DescribeInstanceTopology unavailable; no network-node labels in this region for 24 h");
                self.mark_unsupported(region);
                Ok(Found::Nothing)
            }
            Err(err) => Err(err),
        }
    }
}

/// The labels for `layers`: `network-node-layer-1` for the first, and so on.
pub fn labels(layers: &[String]) -> Vec<(String, String)> {
    layers.iter().enumerate().map(|(i, node)| (format!("{NETWORK_NODE_LABEL_PREFIX}{}", i + 1), node.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_default_pattern() {
        let re = Regex::new(DEFAULT_PATTERN).unwrap();
        for required in
            ["p4d.24xlarge", "p5.48xlarge", "trn1.32xlarge", "trn1n.32xlarge", "hpc7g.16xlarge", "p5e.48xlarge"]
        {
            assert!(re.is_match(required), "{required}");
        }
        for other in ["m5.large", "c7g.xlarge", "g5.xlarge", "inf2.xlarge"] {
            assert!(!re.is_match(other), "{other}");
        }
        assert_eq!(
            labels(&["nn-1".into(), "nn-2".into()]),
            [
                ("topology.k8s.aws/network-node-layer-1".to_string(), "nn-1".to_string()),
                ("topology.k8s.aws/network-node-layer-2".to_string(), "nn-2".to_string())
            ]
        );
    }
}
