//! AWS providerIDs and node names.
//!
//! Written: `aws:///<availability-zone>/<instance-id>`. Read, as upstream reads them:
//! `aws:///<az>/<id>`, `aws:////<id>`, `aws://<id>`-like forms and a bare `i-…`: the last path
//! segment must be an instance ID.

/// `aws:///<zone>/<id>`.
pub fn provider_id(zone: &str, instance_id: &str) -> String {
    format!("aws:///{zone}/{instance_id}")
}

/// The instance ID in a providerID, or `None` if it names no EC2 instance.
pub fn instance_id(provider_id: &str) -> Option<String> {
    let rest = match provider_id.strip_prefix("aws://") {
        Some(rest) => rest,
        None if provider_id.contains("://") => return None,
        None => provider_id,
    };
    let last = rest.rsplit('/').next()?;
    is_instance_id(last).then(|| last.to_string())
}

/// Upstream's check: `i-` followed by anything without a slash.
pub fn is_instance_id(s: &str) -> bool {
    s.strip_prefix("i-").is_some_and(|tail| !tail.is_empty() && !tail.contains('/'))
}

/// Resource-based node names (`i-0abc…` or `i-0abc….ec2.internal`) name the instance directly.
pub fn instance_id_from_node_name(name: &str) -> Option<String> {
    let first = name.split('.').next()?;
    is_instance_id(first).then(|| first.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_upstream_form() {
        assert_eq!(provider_id("us-east-1a", "i-0123"), "aws:///us-east-1a/i-0123");
    }

    #[test]
    fn reads_every_upstream_form() {
        for id in ["aws:///us-east-1a/i-0123", "aws:////i-0123", "aws://i-0123", "i-0123"] {
            assert_eq!(instance_id(id).as_deref(), Some("i-0123"), "{id}");
        }
        for bad in ["aws:///us-east-1a/fargate-10.0.0.1", "gce://p/z/i-1", "aws:///zone/", "", "i-"] {
            assert_eq!(instance_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn resource_based_node_names() {
        assert_eq!(instance_id_from_node_name("i-0abc").as_deref(), Some("i-0abc"));
        assert_eq!(instance_id_from_node_name("i-0abc.us-west-2.compute.internal").as_deref(), Some("i-0abc"));
        assert_eq!(instance_id_from_node_name("ip-10-0-0-1.ec2.internal"), None);
    }
}
