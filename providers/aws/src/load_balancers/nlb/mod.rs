//! NLB with instance targets: a target group per port, TCP/UDP/TLS listeners, health checks
//! (changed in place where AWS allows), targets, attributes, and node security-group rules
//! marked with upstream's descriptions.

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::types::{
    LoadBalancer, LoadBalancerAttribute, LoadBalancerSchemeEnum, LoadBalancerStateEnum, LoadBalancerTypeEnum,
    ProtocolEnum, SubnetMapping, Tag,
};
use cloud_provider::{CloudError, IngressPoint, LoadBalancerStatus, NodeInfo, Protocol};

use super::security_groups::{self, Rule, Source};
use super::service_config::{BackendProtocol, HealthPort, LbConfig};
use super::{AwsLoadBalancers, names};

/// Every ELBv2 operation this module calls.
pub const OPERATIONS: [&str; 21] = [
    "DescribeLoadBalancers",
    "CreateLoadBalancer",
    "DeleteLoadBalancer",
    "DescribeListeners",
    "CreateListener",
    "ModifyListener",
    "DeleteListener",
    "DescribeTargetGroups",
    "CreateTargetGroup",
    "ModifyTargetGroup",
    "DeleteTargetGroup",
    "DescribeTargetHealth",
    "RegisterTargets",
    "DeregisterTargets",
    "DescribeTargetGroupAttributes",
    "ModifyTargetGroupAttributes",
    "DescribeLoadBalancerAttributes",
    "ModifyLoadBalancerAttributes",
    "DescribeTags",
    "SetSecurityGroups",
    "AddTags",
];

mod delete;
mod node_rules;
mod target_groups;

const CHUNK: usize = 100;

/// What one Service port becomes.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Mapping {
    pub(super) port: u16,
    pub(super) node_port: u16,
    pub(super) front: ProtocolEnum,
    pub(super) target: ProtocolEnum,
    pub(super) health: Health,
    pub(super) tls: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Health {
    pub(super) protocol: String,
    pub(super) port: String,
    pub(super) path: Option<String>,
    pub(super) interval: i32,
    pub(super) healthy: i32,
    pub(super) unhealthy: i32,
}

impl AwsLoadBalancers {
    /// Describes by name, batched with concurrent callers (see `describe_batch`).
    pub(crate) async fn nlb_describe(&self, name: &str) -> Result<Option<LoadBalancer>, CloudError> {
        Ok(self.nlb_batch.get(name).await?)
    }

    pub(super) fn nlb_health(&self, cfg: &LbConfig) -> Health {
        let mut h = if cfg.local_traffic
            && let Some(hc) = cfg.health_check_node_port
        {
            Health {
                protocol: "HTTP".into(),
                port: hc.to_string(),
                path: Some("/healthz".into()),
                interval: 10,
                healthy: 2,
                unhealthy: 2,
            }
        } else {
            Health {
                protocol: "TCP".into(),
                port: "traffic-port".into(),
                path: None,
                interval: 30,
                healthy: 3,
                unhealthy: 3,
            }
        };
        if let Some(p) = &cfg.health.protocol {
            h.protocol = p.clone();
        }
        match cfg.health.port {
            Some(HealthPort::TrafficPort) => h.port = "traffic-port".into(),
            Some(HealthPort::Port(p)) => h.port = p.to_string(),
            None => {}
        }
        if let Some(path) = &cfg.health.path {
            h.path = Some(path.clone());
        }
        // Upstream: in Shared mode, ETP=Cluster Services probe kube-proxy, over annotations.
        if self.settings.shared_health_probe && !cfg.local_traffic {
            h.protocol = "HTTP".into();
            h.port = self.settings.shared_probe_port.to_string();
            h.path = Some(self.settings.shared_probe_path.clone());
        }
        if h.protocol == "TCP" {
            h.path = None;
        } else if h.path.is_none() {
            h.path = Some("/".into());
        }
        h.interval = cfg.health.interval.unwrap_or(h.interval);
        h.healthy = cfg.health.healthy.unwrap_or(h.healthy);
        h.unhealthy = cfg.health.unhealthy.unwrap_or(h.unhealthy);
        h
    }

    pub(super) fn nlb_mappings(&self, cfg: &LbConfig) -> Vec<Mapping> {
        cfg.ports
            .iter()
            .map(|p| {
                let tls = p.protocol == Protocol::Tcp && cfg.is_ssl_port(p);
                let (front, target) = match p.protocol {
                    Protocol::Udp => (ProtocolEnum::Udp, ProtocolEnum::Udp),
                    _ if tls && cfg.backend_protocol == Some(BackendProtocol::Ssl) => {
                        (ProtocolEnum::Tls, ProtocolEnum::Tls)
                    }
                    _ if tls => (ProtocolEnum::Tls, ProtocolEnum::Tcp),
                    _ => (ProtocolEnum::Tcp, ProtocolEnum::Tcp),
                };
                Mapping { port: p.port, node_port: p.node_port, front, target, health: self.nlb_health(cfg), tls }
            })
            .collect()
    }

    pub(super) fn tg_name(&self, cfg: &LbConfig, m: &Mapping) -> String {
        names::target_group_name(&names::TargetGroupKey {
            cluster_id: &self.cluster.cluster_id,
            namespace: &cfg.namespace,
            name: &cfg.name,
            port: m.port,
            node_port: m.node_port,
            protocol: m.target.as_str(),
            target_type: "instance",
            health_protocol: &m.health.protocol,
            health_interval: m.health.interval,
        })
    }

    pub(super) fn v2_tags(&self, cfg: &LbConfig) -> Vec<Tag> {
        self.resource_tags(cfg).into_iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
    }

    pub(crate) async fn nlb_ensure(
        &self,
        cfg: &LbConfig,
        cluster_name: &str,
        nodes: &[NodeInfo],
    ) -> Result<LoadBalancerStatus, CloudError> {
        let name = names::load_balancer_name(&cfg.uid);
        let mappings = self.nlb_mappings(cfg);
        let instances = self.target_instances(&cfg.target_node_labels, nodes).await?;
        let existing = self.nlb_describe(&name).await?;
        let managed_group = self.nlb_security_group(cfg, cluster_name, existing.as_ref(), &mappings).await?;

        let lb = match existing {
            Some(lb) => {
                if let Some(group) = &managed_group
                    && !lb.security_groups().is_empty()
                    && !lb.security_groups().contains(group)
                {
                    let r = self
                        .elbv2
                        .set_security_groups()
                        .load_balancer_arn(lb.load_balancer_arn().unwrap_or_default())
                        .security_groups(group);
                    self.calls.run("aws/elbv2.SetSecurityGroups", r.send()).await?;
                }
                lb
            }
            None => self.nlb_create(cfg, &name, managed_group.clone()).await?,
        };
        let arn = lb.load_balancer_arn().unwrap_or_default().to_string();
        self.nlb_listeners(cfg, &arn, &mappings, &instances).await?;
        self.nlb_attributes(cfg, &arn).await?;
        if !self.settings.disable_security_group_ingress {
            self.nlb_node_rules(cfg, &name, &lb, &mappings, &instances).await?;
        }
        let active = lb
            .state()
            .and_then(|s| s.code())
            .is_none_or(|c| matches!(c, LoadBalancerStateEnum::Active | LoadBalancerStateEnum::Provisioning));
        Ok(LoadBalancerStatus {
            ingress: lb.dns_name().filter(|_| active).map(|d| vec![IngressPoint::hostname(d)]).unwrap_or_default(),
            warnings: Vec::new(),
        })
    }

    pub(super) async fn nlb_security_group(
        &self,
        cfg: &LbConfig,
        cluster_name: &str,
        existing: Option<&LoadBalancer>,
        mappings: &[Mapping],
    ) -> Result<Option<String>, CloudError> {
        if !self.settings.nlb_security_groups_managed {
            return Ok(None);
        }
        // AWS cannot add security groups to an NLB made without them.
        if existing.is_some_and(|lb| lb.security_groups().is_empty()) {
            return Ok(None);
        }
        if let Some(byo) = cfg.security_groups.first() {
            return Ok(Some(byo.clone()));
        }
        let sg_name = names::nlb_security_group_name(cluster_name, &cfg.namespace, &cfg.name, &cfg.uid);
        let group =
            self.ensure_owned_group(&sg_name, names::NLB_SECURITY_GROUP_DESCRIPTION, &cfg.additional_tags).await?;
        let mut wanted = Vec::new();
        for range in &cfg.source_ranges {
            for m in mappings {
                let protocol = if m.front == ProtocolEnum::Udp { "udp" } else { "tcp" };
                wanted.push(Rule {
                    protocol: protocol.into(),
                    from: m.port.into(),
                    to: m.port.into(),
                    source: Source::Cidr(range.clone()),
                    description: None,
                });
            }
            wanted.push(Rule::icmp_mtu(Source::Cidr(range.clone())));
        }
        security_groups::set_exact(&self.ec2, &group, &wanted).await?;
        Ok(group.group_id().map(String::from))
    }

    pub(super) async fn nlb_create(
        &self,
        cfg: &LbConfig,
        name: &str,
        group: Option<String>,
    ) -> Result<LoadBalancer, CloudError> {
        let subnets = self.subnets_for(cfg).await?;
        for (what, list) in [
            (super::annotations::EIP_ALLOCATIONS, &cfg.eip_allocations),
            (super::annotations::PRIVATE_IPV4_ADDRESSES, &cfg.private_ipv4_addresses),
        ] {
            if !list.is_empty() && list.len() != subnets.len() {
                return Err(CloudError::invalid(
                    "aws/nlb.create",
                    format!(
                        "{what}: {} given for {} subnets ({subnets:?}); one per subnet is needed",
                        list.len(),
                        subnets.len()
                    ),
                ));
            }
        }
        let mappings: Vec<SubnetMapping> = subnets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                SubnetMapping::builder()
                    .subnet_id(s)
                    .set_allocation_id(cfg.eip_allocations.get(i).cloned())
                    .set_private_ipv4_address(cfg.private_ipv4_addresses.get(i).cloned())
                    .build()
            })
            .collect();
        let scheme =
            if cfg.internal { LoadBalancerSchemeEnum::Internal } else { LoadBalancerSchemeEnum::InternetFacing };
        let request = self
            .elbv2
            .create_load_balancer()
            .name(name)
            .r#type(LoadBalancerTypeEnum::Network)
            .scheme(scheme)
            .set_subnet_mappings(Some(mappings))
            .set_security_groups(group.map(|g| vec![g]))
            .set_tags(Some(self.v2_tags(cfg)));
        let out = self.calls.run("aws/elbv2.CreateLoadBalancer", request.send()).await?;
        out.load_balancers()
            .first()
            .cloned()
            .ok_or_else(|| CloudError::transient("aws/nlb.create", "CreateLoadBalancer returned nothing"))
    }

    pub(super) async fn nlb_attributes(&self, cfg: &LbConfig, arn: &str) -> Result<(), CloudError> {
        let out = self
            .calls
            .run(
                "aws/elbv2.DescribeLoadBalancerAttributes",
                self.elbv2.describe_load_balancer_attributes().load_balancer_arn(arn).send(),
            )
            .await?;
        let have: BTreeMap<&str, &str> = out.attributes().iter().filter_map(|a| Some((a.key()?, a.value()?))).collect();
        let mut want = vec![
            ("load_balancing.cross_zone.enabled", cfg.cross_zone.to_string()),
            ("access_logs.s3.enabled", cfg.access_log_enabled.to_string()),
        ];
        if cfg.access_log_enabled {
            want.push(("access_logs.s3.bucket", cfg.access_log_bucket.clone().unwrap_or_default()));
            want.push(("access_logs.s3.prefix", cfg.access_log_prefix.clone().unwrap_or_default()));
        }
        let changes: Vec<LoadBalancerAttribute> = want
            .into_iter()
            .filter(|(k, v)| have.get(k).copied().unwrap_or(if v == "false" { "false" } else { "" }) != v)
            .map(|(k, v)| LoadBalancerAttribute::builder().key(k).value(v).build())
            .collect();
        if !changes.is_empty() {
            let r = self.elbv2.modify_load_balancer_attributes().load_balancer_arn(arn).set_attributes(Some(changes));
            self.calls.run("aws/elbv2.ModifyLoadBalancerAttributes", r.send()).await?;
        }
        Ok(())
    }
}
