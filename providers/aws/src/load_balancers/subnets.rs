//! Which subnets a load balancer goes in: upstream's discovery, and the `subnets` annotation.
//!
//! Candidates are the VPC's subnets tagged for this cluster or for no cluster at all. An
//! internet-facing load balancer takes public subnets only (their route table, explicit or the
//! VPC's main one, routes to an internet gateway). Zones that are not plain availability zones
//! (Local Zones, Wavelength) are skipped. One subnet per zone: the one with the role tag
//! (`kubernetes.io/role/elb`, or `…/internal-elb` for internal), else the cluster-tagged one,
//! else the smallest ID. When nothing fits, the error says why each candidate was rejected.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_ec2::types::{RouteTable, Subnet};
use cloud_provider::CloudError;

use super::service_config::LbConfig;
use super::{AwsLoadBalancers, annotations};
use crate::ec2::filter;
use crate::tags::{CLUSTER_TAG_PREFIX, ClusterTags};

pub const ROLE_ELB: &str = "kubernetes.io/role/elb";
pub const ROLE_INTERNAL_ELB: &str = "kubernetes.io/role/internal-elb";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub zone: String,
    pub zone_type: String,
    pub tags: BTreeMap<String, String>,
    pub public: bool,
}

/// Reads subnets and the VPC's route tables into candidates.
pub fn candidates(subnets: &[Subnet], tables: &[RouteTable], zone_types: &HashMap<String, String>) -> Vec<Candidate> {
    let main = tables.iter().find(|t| t.associations().iter().any(|a| a.main() == Some(true)));
    let table_of =
        |subnet: &str| tables.iter().find(|t| t.associations().iter().any(|a| a.subnet_id() == Some(subnet))).or(main);
    let routes_to_igw =
        |t: &RouteTable| t.routes().iter().any(|r| r.gateway_id().is_some_and(|g| g.starts_with("igw")));
    subnets
        .iter()
        .filter_map(|s| {
            let id = s.subnet_id()?.to_string();
            let zone = s.availability_zone().unwrap_or_default().to_string();
            Some(Candidate {
                public: table_of(&id).is_some_and(routes_to_igw),
                zone_type: zone_types.get(&zone).cloned().unwrap_or_else(|| "availability-zone".into()),
                zone,
                tags: s.tags().iter().filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string()))).collect(),
                id,
            })
        })
        .collect()
}

/// Picks one subnet per zone, sorted by zone; or explains every rejection.
pub fn choose(candidates: &[Candidate], internal: bool, cluster: &ClusterTags) -> Result<Vec<String>, String> {
    let role = if internal { ROLE_INTERNAL_ELB } else { ROLE_ELB };
    let cluster_key = cluster.key();
    let mut rejected = Vec::new();
    let mut by_zone: BTreeMap<&str, &Candidate> = BTreeMap::new();
    for c in candidates {
        let ours = c.tags.contains_key(&cluster_key);
        let foreign = c.tags.keys().any(|k| k.starts_with(CLUSTER_TAG_PREFIX) && *k != cluster_key);
        if !ours && foreign {
            rejected.push(format!("{} ({}): tagged for another cluster", c.id, c.zone));
            continue;
        }
        if c.zone_type != "availability-zone" {
            rejected.push(format!("{} ({}): zone type {}", c.id, c.zone, c.zone_type));
            continue;
        }
        if !internal && !c.public {
            rejected.push(format!(
                "{} ({}): private (no route to an internet gateway) for an internet-facing load balancer",
                c.id, c.zone
            ));
            continue;
        }
        let rank = |x: &Candidate| (!x.tags.contains_key(role), !x.tags.contains_key(&cluster_key), x.id.clone());
        match by_zone.get(c.zone.as_str()) {
            Some(best) if rank(best) <= rank(c) => {
                rejected.push(format!("{} ({}): {} is preferred in that zone", c.id, c.zone, best.id));
            }
            Some(best) => {
                rejected.push(format!("{} ({}): {} is preferred in that zone", best.id, best.zone, c.id));
                by_zone.insert(&c.zone, c);
            }
            None => {
                by_zone.insert(&c.zone, c);
            }
        }
    }
    if by_zone.is_empty() {
        let why = if rejected.is_empty() { "the VPC has no subnets".to_string() } else { rejected.join("; ") };
        return Err(format!(
            "no suitable subnets for an {} load balancer: {why}",
            if internal { "internal" } else { "internet-facing" }
        ));
    }
    Ok(by_zone.values().map(|c| c.id.clone()).collect())
}

impl AwsLoadBalancers {
    /// The subnets for a new or existing load balancer: the annotation's, else discovery.
    pub(crate) async fn subnets_for(&self, cfg: &LbConfig) -> Result<Vec<String>, CloudError> {
        if let Some(wanted) = &cfg.subnets {
            let (ids, names): (Vec<String>, Vec<String>) =
                wanted.iter().cloned().partition(|s| s.starts_with("subnet-"));
            let mut found: Vec<String> = Vec::new();
            if !ids.is_empty() {
                found.extend(
                    self.ec2.subnets(ids, Vec::new()).await?.iter().filter_map(|s| s.subnet_id().map(String::from)),
                );
            }
            if !names.is_empty() {
                let by_name = self
                    .ec2
                    .subnets(Vec::new(), vec![filter("vpc-id", [self.vpc_id.clone()]), filter("tag:Name", names)])
                    .await?;
                found.extend(by_name.iter().filter_map(|s| s.subnet_id().map(String::from)));
            }
            if found.len() != wanted.len() {
                return Err(CloudError::invalid(
                    "aws/lb.subnets",
                    format!("{}: {} given, {} found: {found:?}", annotations::SUBNETS, wanted.len(), found.len()),
                ));
            }
            return Ok(found);
        }
        let candidates = self.discover().await?;
        match choose(&candidates, cfg.internal, &self.cluster) {
            Ok(chosen) => Ok(chosen),
            Err(why) => match &self.fallback_subnet {
                Some(subnet) if candidates.is_empty() => {
                    tracing::warn!(%subnet, "no subnets found; using the configured SubnetID");
                    Ok(vec![subnet.clone()])
                }
                _ => Err(CloudError::Failed {
                    op: "aws/lb.subnets",
                    message: why,
                    retry: cloud_provider::Retry::Backoff,
                    kind: "no_subnets",
                }),
            },
        }
    }

    /// The VPC's subnets and route tables as candidates, read at most once per
    /// [`super::tick::TTL`]: Services syncing together (a burst, the Services of one resync tick)
    /// share one read instead of two calls each, and a subnet tagged or routed a moment ago
    /// counts at the next retry. Concurrent callers wait for the one reading.
    async fn discover(&self) -> Result<Vec<Candidate>, CloudError> {
        self.discovered
            .get(|| async {
                let subnets = self.ec2.subnets(Vec::new(), vec![filter("vpc-id", [self.vpc_id.clone()])]).await?;
                let tables = self.ec2.route_tables(Vec::new(), vec![filter("vpc-id", [self.vpc_id.clone()])]).await?;
                let zone_types = self.zone_types().await?;
                Ok(candidates(&subnets, &tables, &zone_types))
            })
            .await
    }

    async fn zone_types(&self) -> Result<HashMap<String, String>, CloudError> {
        let mut cached = self.zone_types.lock().await;
        if cached.is_empty() {
            *cached = self
                .ec2
                .availability_zones()
                .await?
                .iter()
                .filter_map(|z| {
                    Some((z.zone_name()?.to_string(), z.zone_type().unwrap_or("availability-zone").to_string()))
                })
                .collect();
        }
        Ok(cached.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, zone: &str, public: bool, tags: &[(&str, &str)]) -> Candidate {
        Candidate {
            id: id.into(),
            zone: zone.into(),
            zone_type: "availability-zone".into(),
            public,
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn cluster() -> ClusterTags {
        ClusterTags { cluster_id: "k".into(), legacy: false }
    }

    #[test]
    fn one_public_subnet_per_zone_with_role_tags_as_tie_breakers() {
        let subnets = vec![
            c("subnet-b", "us-east-1a", true, &[("kubernetes.io/cluster/k", "owned")]),
            c("subnet-a", "us-east-1a", true, &[]),
            c("subnet-c", "us-east-1a", true, &[(ROLE_ELB, "1")]),
            c("subnet-d", "us-east-1b", true, &[]),
            c("subnet-e", "us-east-1b", false, &[(ROLE_INTERNAL_ELB, "1")]),
            c("subnet-f", "us-east-1c", true, &[("kubernetes.io/cluster/other", "owned")]),
        ];
        assert_eq!(choose(&subnets, false, &cluster()).unwrap(), ["subnet-c", "subnet-d"]);
        assert_eq!(
            choose(&subnets, true, &cluster()).unwrap(),
            ["subnet-b", "subnet-e"],
            "internal: any subnet; internal-elb role, then cluster tag"
        );
    }

    #[test]
    fn nothing_suitable_explains_each_rejection() {
        let mut local = c("subnet-l", "us-west-2-lax-1a", true, &[]);
        local.zone_type = "local-zone".into();
        let subnets = vec![
            c("subnet-p", "us-east-1a", false, &[]),
            c("subnet-o", "us-east-1b", true, &[("kubernetes.io/cluster/x", "owned")]),
            local,
        ];
        let err = choose(&subnets, false, &cluster()).unwrap_err();
        assert!(err.contains("subnet-p (us-east-1a): private"), "{err}");
        assert!(err.contains("subnet-o (us-east-1b): tagged for another cluster"), "{err}");
        assert!(err.contains("zone type local-zone"), "{err}");
    }
}
