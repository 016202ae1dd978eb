//! The cluster tag model, identical to upstream: `kubernetes.io/cluster/<id>` = `owned` |
//! `shared`, and the legacy `KubernetesCluster=<id>`.

pub const CLUSTER_TAG_PREFIX: &str = "kubernetes.io/cluster/";
pub const LEGACY_CLUSTER_TAG: &str = "KubernetesCluster";
pub const OWNED: &str = "owned";
pub const SHARED: &str = "shared";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTags {
    pub cluster_id: String,
    /// Also write the legacy tag (cluster ID given as `KubernetesClusterTag`).
    pub legacy: bool,
}

impl ClusterTags {
    pub fn key(&self) -> String {
        format!("{CLUSTER_TAG_PREFIX}{}", self.cluster_id)
    }

    /// The tags on something this cluster creates and owns.
    pub fn owned(&self) -> Vec<(String, String)> {
        let mut tags = vec![(self.key(), OWNED.to_string())];
        if self.legacy {
            tags.push((LEGACY_CLUSTER_TAG.to_string(), self.cluster_id.clone()));
        }
        tags
    }

    /// Tagged for this cluster at all (owned or shared, or legacy).
    pub fn is_cluster<'a>(&self, tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
        let key = self.key();
        tags.into_iter().any(|(k, v)| k == key || (k == LEGACY_CLUSTER_TAG && v == self.cluster_id))
    }

    /// Owned by this cluster: the gate for deleting anything.
    pub fn is_owned<'a>(&self, tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
        let key = self.key();
        tags.into_iter().any(|(k, v)| (k == key && v == OWNED) || (k == LEGACY_CLUSTER_TAG && v == self.cluster_id))
    }
}

/// The cluster tags found on an instance: the ID and whether it came with the legacy tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedCluster {
    pub cluster_id: String,
    /// The instance carries `KubernetesCluster`: upstream then writes the legacy tag too.
    pub legacy: bool,
}

/// The cluster ID in a set of tags (upstream's rules): the legacy tag's value, or the ID in a
/// `kubernetes.io/cluster/<id>` key; more than one of a kind, or a legacy and a new tag that
/// disagree, is an error.
pub fn cluster_id_from_tags<'a>(
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Option<TaggedCluster>, String> {
    let mut legacy = Vec::new();
    let mut new = Vec::new();
    for (k, v) in tags {
        if k == LEGACY_CLUSTER_TAG {
            legacy.push(v.to_string());
        } else if let Some(id) = k.strip_prefix(CLUSTER_TAG_PREFIX) {
            new.push(id.to_string());
        }
    }
    if legacy.len() > 1 || new.len() > 1 {
        return Err(format!("more than one cluster tag: {legacy:?} {new:?}"));
    }
    match (legacy.pop(), new.pop()) {
        (Some(l), Some(n)) if l != n => {
            Err(format!("the cluster tags disagree: {LEGACY_CLUSTER_TAG}={l} and {CLUSTER_TAG_PREFIX}{n}"))
        }
        (Some(l), _) => Ok(Some(TaggedCluster { cluster_id: l, legacy: true })),
        (None, Some(n)) => Ok(Some(TaggedCluster { cluster_id: n, legacy: false })),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_shared_and_legacy() {
        let tags = ClusterTags { cluster_id: "c1".into(), legacy: false };
        assert!(tags.is_owned([("kubernetes.io/cluster/c1", "owned")]));
        assert!(!tags.is_owned([("kubernetes.io/cluster/c1", "shared")]));
        assert!(tags.is_cluster([("kubernetes.io/cluster/c1", "shared")]));
        assert!(!tags.is_cluster([("kubernetes.io/cluster/c2", "owned")]));
        assert!(tags.is_owned([("KubernetesCluster", "c1")]));
        assert!(!tags.is_cluster([("KubernetesCluster", "c2")]));
        let legacy = ClusterTags { cluster_id: "c1".into(), legacy: true };
        assert_eq!(legacy.owned().len(), 2);
    }

    #[test]
    fn cluster_id_from_instance_tags() {
        let found = |id: &str, legacy: bool| Ok(Some(TaggedCluster { cluster_id: id.into(), legacy }));
        assert_eq!(cluster_id_from_tags([("kubernetes.io/cluster/k1", "owned")]), found("k1", false));
        assert_eq!(cluster_id_from_tags([("KubernetesCluster", "old")]), found("old", true));
        assert_eq!(
            cluster_id_from_tags([("KubernetesCluster", "k1"), ("kubernetes.io/cluster/k1", "owned")]),
            found("k1", true),
            "upstream writes legacy tags whenever the instance has one"
        );
        assert!(cluster_id_from_tags([("KubernetesCluster", "a"), ("kubernetes.io/cluster/b", "owned")]).is_err());
        assert_eq!(cluster_id_from_tags([("Name", "x")]), Ok(None));
        assert!(
            cluster_id_from_tags([("kubernetes.io/cluster/a", "owned"), ("kubernetes.io/cluster/b", "owned")]).is_err()
        );
    }
}
