//! NLB with instance targets: a target group per port, TCP/UDP/TLS listeners, health checks
//! (changed in place where AWS allows), targets, attributes, and node security-group rules
//! marked with upstream's descriptions.

use std::collections::BTreeSet;

use aws_sdk_elasticloadbalancingv2::types::{LoadBalancer, LoadBalancerStateEnum, ProtocolEnum, TargetHealthStateEnum};
use cloud_provider::{CloudError, IngressPoint, LoadBalancerStatus, NodeInfo, Protocol};

use super::plan::{Change, Health};
use super::service_config::{BackendProtocol, HealthPort, HealthProtocol, LbConfig};
use super::{AwsLoadBalancers, names};

mod delete;
pub(crate) mod plan;
#[cfg(test)]
mod plan_tests;

const CHUNK: usize = 100;

/// What one Service port becomes.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Mapping {
    pub(crate) port: u16,
    pub(super) node_port: u16,
    pub(super) front: ProtocolEnum,
    pub(super) target: ProtocolEnum,
    pub(super) health: Health,
    pub(super) tls: bool,
}

impl AwsLoadBalancers {
    /// Describes by name, batched with concurrent callers (see `describe_batch`).
    pub(crate) async fn nlb_describe(&self, name: &str) -> Result<Option<LoadBalancer>, CloudError> {
        Ok(self.nlb_batch.get(name).await?)
    }

    pub(super) fn nlb_health(cfg: &LbConfig, settings: &super::Settings) -> Health {
        let mut h = if cfg.local_traffic
            && let Some(hc) = cfg.health_check_node_port
        {
            Health {
                protocol: HealthProtocol::Http,
                port: HealthPort::Port(hc),
                path: Some("/healthz".into()),
                interval: 10,
                healthy: 2,
                unhealthy: 2,
            }
        } else {
            Health {
                protocol: HealthProtocol::Tcp,
                port: HealthPort::TrafficPort,
                path: None,
                interval: 30,
                healthy: 3,
                unhealthy: 3,
            }
        };
        if let Some(p) = cfg.health.protocol {
            h.protocol = p;
        }
        if let Some(port) = cfg.health.port {
            h.port = port;
        }
        if let Some(path) = &cfg.health.path {
            h.path = Some(path.clone());
        }
        // Upstream: in Shared mode, ETP=Cluster Services probe kube-proxy, over annotations.
        if settings.shared_health_probe && !cfg.local_traffic {
            h.protocol = HealthProtocol::Http;
            h.port = HealthPort::Port(settings.shared_probe_port);
            h.path = Some(settings.shared_probe_path.clone());
        }
        if !h.protocol.has_path() {
            h.path = None;
        } else if h.path.is_none() {
            h.path = Some("/".into());
        }
        h.interval = cfg.health.interval.unwrap_or(h.interval);
        h.healthy = cfg.health.healthy.unwrap_or(h.healthy);
        h.unhealthy = cfg.health.unhealthy.unwrap_or(h.unhealthy);
        h
    }

    /// What each Service port becomes.
    pub(super) fn mappings(cfg: &LbConfig, settings: &super::Settings) -> Vec<Mapping> {
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
                Mapping {
                    port: p.port,
                    node_port: p.node_port,
                    front,
                    target,
                    health: Self::nlb_health(cfg, settings),
                    tls,
                }
            })
            .collect()
    }

    /// Upstream's target-group name for a port.
    pub(super) fn target_group_name(cluster_id: &str, cfg: &LbConfig, m: &Mapping) -> String {
        names::target_group_name(&names::TargetGroupKey {
            cluster_id,
            namespace: &cfg.namespace,
            name: &cfg.name,
            port: m.port,
            node_port: m.node_port,
            protocol: m.target.as_str(),
            target_type: "instance",
            health_protocol: m.health.protocol.as_str(),
            health_interval: m.health.interval,
        })
    }

    fn nlb_desired<'a>(&'a self, cfg: &'a LbConfig, cluster_name: &str) -> plan::Desired<'a> {
        let mappings = Self::mappings(cfg, &self.settings);
        let tg_names = mappings.iter().map(|m| Self::target_group_name(&self.cluster.cluster_id, cfg, m)).collect();
        plan::Desired {
            cfg,
            settings: &self.settings,
            cluster: &self.cluster,
            tags: self.resource_tags(cfg),
            mappings,
            tg_names,
            group_name: names::nlb_security_group_name(cluster_name, &cfg.namespace, &cfg.name, &cfg.uid),
        }
    }

    /// Reads everything planning the NLB needs; `periodic`: for a periodic re-ensure, which
    /// shares what it can with the others of its tick (see `tick.rs`).
    async fn nlb_observe(
        &self,
        d: &plan::Desired<'_>,
        nodes: &[NodeInfo],
        periodic: bool,
    ) -> Result<plan::Observed, CloudError> {
        let cfg = d.cfg;
        let lb = self.nlb_describe(&names::load_balancer_name(&cfg.uid)).await?;
        let instances = self.target_instances(&cfg.target_node_labels, nodes).await?;
        let mut o = plan::Observed {
            instances: instances.iter().filter_map(|i| i.instance_id().map(String::from)).collect(),
            ..Default::default()
        };
        // Every group it needs, in one VPC-wide call: its own and the backend group (by name),
        // the Nodes' and the cluster's.
        let rules = !self.settings.disable_security_group_ingress;
        let own = plan::uses_own_group(d, lb.as_ref());
        let vpc = if rules || own { self.vpc_groups_for(periodic).await? } else { Default::default() };
        let classic_group = names::classic_security_group_name(&names::load_balancer_name(&cfg.uid));
        o.classic_leftover =
            vpc.iter().any(|g| g.group_name() == Some(classic_group.as_str()) && self.is_owned_group(g));
        if own {
            let named = |name: &str| vpc.iter().find(|g| g.group_name() == Some(name)).cloned();
            o.own_group = named(&d.group_name);
            if plan::uses_backend_group(d, lb.as_ref()) {
                o.backend_group = named(&names::nlb_backend_group_name(&self.cluster.cluster_id));
            }
        }
        match &lb {
            None => o.subnets = self.subnets_for(cfg).await?,
            Some(lb) => {
                let arn = lb.load_balancer_arn().unwrap_or_default();
                o.listeners = self.elbv2.listeners(arn).await?;
                o.target_groups = self.elbv2.target_groups_of(arn).await?;
                let attributes = self.tick.nlb_attributes.get(arn, periodic, self.elbv2.attributes(arn)).await?;
                o.attributes = attributes.into_iter().collect();
            }
        }
        // Wanted target groups that exist without being the NLB's: one lookup by name, or for
        // several (a new NLB's), one listing (a lookup of names fails when one does not exist).
        let missing: Vec<&String> = d
            .tg_names
            .iter()
            .filter(|name| !o.target_groups.iter().any(|g| g.target_group_name() == Some(name.as_str())))
            .collect();
        match missing.as_slice() {
            [] => {}
            [name] => o.unattached.extend(self.elbv2.target_group_named(name).await?),
            _ => {
                let all = self.elbv2.all_target_groups().await?;
                o.unattached = all
                    .into_iter()
                    .filter(|g| g.target_group_name().is_some_and(|n| missing.iter().any(|m| m.as_str() == n)))
                    .collect();
            }
        }
        let wanted: Vec<String> = o
            .target_groups
            .iter()
            .chain(&o.unattached)
            .filter(|g| g.target_group_name().is_some_and(|n| d.tg_names.iter().any(|w| w == n)))
            .filter_map(|g| g.target_group_arn().map(String::from))
            .collect();
        for arn in wanted {
            o.targets.insert(arn.clone(), self.registered_targets(&arn).await?);
            if !cfg.target_group_attributes.is_empty() {
                let attributes = self.elbv2.target_group_attributes(&arn).await?;
                o.tg_attributes.insert(arn, attributes.into_iter().collect());
            }
        }
        if rules {
            o.node_groups = self.pick_node_groups(&instances, &vpc);
            o.cluster_groups = vpc.iter().filter(|g| self.is_cluster_group(g)).cloned().collect();
            let subnets: Vec<String> = match &lb {
                Some(lb) => lb.availability_zones().iter().filter_map(|z| z.subnet_id().map(String::from)).collect(),
                None => o.subnets.clone(),
            };
            if plan::needs_subnet_cidrs(d) && !subnets.is_empty() {
                let found = self.ec2.subnets(subnets, Vec::new()).await?;
                o.subnet_cidrs = found.iter().filter_map(|s| s.cidr_block().map(String::from)).collect();
            }
        }
        o.lb = lb;
        Ok(o)
    }

    pub(crate) async fn nlb_plan(
        &self,
        cfg: &LbConfig,
        cluster_name: &str,
        nodes: &[NodeInfo],
    ) -> Result<Vec<Change>, CloudError> {
        let d = self.nlb_desired(cfg, cluster_name);
        let o = self.nlb_observe(&d, nodes, false).await?;
        plan::ensure(&d, &o)
    }

    pub(crate) async fn nlb_ensure(
        &self,
        cfg: &LbConfig,
        cluster_name: &str,
        nodes: &[NodeInfo],
        periodic: bool,
    ) -> Result<LoadBalancerStatus, CloudError> {
        let d = self.nlb_desired(cfg, cluster_name);
        let mut o = self.nlb_observe(&d, nodes, periodic).await?;
        if o.classic_leftover {
            tracing::info!(service = %format!("{}/{}", cfg.namespace, cfg.name), "deleting what a Classic ELB attempt left for this Service");
            self.classic_delete(&cfg.uid).await?;
            o = self.nlb_observe(&d, nodes, false).await?;
        }
        let applied = self.apply(&plan::ensure(&d, &o)?).await?;
        let Some(lb) = o.lb.or(applied.nlb) else {
            return Err(CloudError::transient("aws/nlb.ensure", "CreateLoadBalancer returned nothing"));
        };
        let active = lb
            .state()
            .and_then(|s| s.code())
            .is_none_or(|c| matches!(c, LoadBalancerStateEnum::Active | LoadBalancerStateEnum::Provisioning));
        Ok(LoadBalancerStatus {
            ingress: lb.dns_name().filter(|_| active).map(|d| vec![IngressPoint::hostname(d)]).unwrap_or_default(),
            warnings: Vec::new(),
        })
    }

    /// The targets registered with a target group, those draining left out.
    pub(crate) async fn registered_targets(&self, tg: &str) -> Result<BTreeSet<(String, i32)>, CloudError> {
        Ok(self
            .elbv2
            .target_health(tg)
            .await?
            .iter()
            .filter(|d| d.target_health().and_then(|h| h.state()) != Some(&TargetHealthStateEnum::Draining))
            .filter_map(|d| d.target().map(|t| (t.id().unwrap_or_default().to_string(), t.port().unwrap_or_default())))
            .collect())
    }

    /// Registers and deregisters so that exactly `instances` are behind a target group (the
    /// targets of a Service whose annotations are invalid: nothing else changes).
    pub(crate) async fn nlb_retarget(
        &self,
        tg: &str,
        node_port: u16,
        instances: &[aws_sdk_ec2::types::Instance],
    ) -> Result<(), CloudError> {
        let o = plan::Observed {
            targets: [(tg.to_string(), self.registered_targets(tg).await?)].into(),
            instances: instances.iter().filter_map(|i| i.instance_id().map(String::from)).collect(),
            ..Default::default()
        };
        self.apply(&plan::retarget(&o, tg, node_port)).await.map(|_| ())
    }
}
