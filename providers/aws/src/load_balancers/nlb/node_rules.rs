//! The rules an NLB needs on the target Nodes' security groups, marked with upstream's
//! descriptions.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::SecurityGroup;
use aws_sdk_elasticloadbalancingv2::types::{LoadBalancer, ProtocolEnum};
use cloud_provider::CloudError;

use super::super::security_groups::{self, Rule, Source};
use super::super::service_config::LbConfig;
use super::super::{AwsLoadBalancers, names};
use super::Mapping;

impl AwsLoadBalancers {
    /// Client, health-check and MTU rules on the target Nodes' groups; this LB's client and
    /// health rules removed from other cluster groups.
    pub(super) async fn nlb_node_rules(
        &self,
        cfg: &LbConfig,
        name: &str,
        lb: &LoadBalancer,
        mappings: &[Mapping],
        instances: &[aws_sdk_ec2::types::Instance],
    ) -> Result<(), CloudError> {
        let client_marker = names::nlb_client_rule(name);
        let health_marker = names::nlb_health_rule(name);
        let mut wanted: Vec<Rule> = Vec::new();
        for m in mappings {
            let protocol = if m.target == ProtocolEnum::Udp { "udp" } else { "tcp" };
            for range in &cfg.source_ranges {
                wanted.push(Rule {
                    protocol: protocol.into(),
                    from: m.node_port.into(),
                    to: m.node_port.into(),
                    source: Source::Cidr(range.clone()),
                    description: Some(client_marker.clone()),
                });
            }
        }
        let health_ports: BTreeSet<u16> = mappings
            .iter()
            .map(|m| {
                if m.health.port == "traffic-port" { m.node_port } else { m.health.port.parse().unwrap_or(m.node_port) }
            })
            .collect();
        let open_to_all: BTreeSet<i32> = wanted
            .iter()
            .filter(|r| r.protocol == "tcp" && r.source == Source::Cidr("0.0.0.0/0".into()))
            .map(|r| r.from)
            .collect();
        let covered = |port: u16| open_to_all.contains(&i32::from(port));
        let lb_subnets: Vec<String> =
            lb.availability_zones().iter().filter_map(|z| z.subnet_id().map(String::from)).collect();
        if health_ports.iter().any(|p| !covered(*p)) && !lb_subnets.is_empty() {
            let cidrs: Vec<String> = self
                .ec2
                .subnets(lb_subnets, Vec::new())
                .await?
                .iter()
                .filter_map(|s| s.cidr_block().map(String::from))
                .collect();
            for port in health_ports.iter().filter(|p| !covered(**p)) {
                for cidr in &cidrs {
                    wanted.push(Rule::tcp(*port, Source::Cidr(cidr.clone())).described(health_marker.clone()));
                }
            }
        }
        for range in &cfg.source_ranges {
            wanted.push(Rule::icmp_mtu(Source::Cidr(range.clone())).described(names::NLB_MTU_RULE));
        }

        // Upstream's set: every group tagged for the cluster (new or legacy tag), plus the
        // untagged single group of a target. Target groups get the rules; on the others, this
        // load balancer's own rules (found by their description) are removed.
        let targets = self.node_groups(instances).await?;
        let mut groups: BTreeMap<String, SecurityGroup> = self
            .vpc_groups()
            .await?
            .into_iter()
            .filter(|g| self.is_cluster_group(g))
            .filter_map(|g| Some((g.group_id()?.to_string(), g)))
            .collect();
        for t in &targets {
            groups.entry(t.group_id().unwrap_or_default().to_string()).or_insert_with(|| t.clone());
        }
        for (id, group) in &groups {
            let mine =
                |r: &Rule| matches!(r.description.as_deref(), Some(d) if d == client_marker || d == health_marker);
            let current: Vec<Rule> = security_groups::ingress(group);
            let is_target = targets.iter().any(|t| t.group_id() == Some(id.as_str()));
            let keep: BTreeSet<_> =
                if is_target { wanted.iter().map(Rule::identity).collect() } else { BTreeSet::new() };
            let remove: Vec<_> =
                current.iter().filter(|r| mine(r) && !keep.contains(&r.identity())).map(Rule::to_permission).collect();
            self.ec2.revoke_ingress(id, remove).await?;
            if is_target {
                let have: BTreeSet<_> = current.iter().map(Rule::identity).collect();
                let add: Vec<_> =
                    wanted.iter().filter(|r| !have.contains(&r.identity())).map(Rule::to_permission).collect();
                self.ec2.authorize_ingress(id, add).await?;
            }
        }
        Ok(())
    }
}
