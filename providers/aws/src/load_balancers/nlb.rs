//! NLB with instance targets: a target group per port, TCP/UDP/TLS listeners, health checks
//! (changed in place where AWS allows), targets, attributes, and node security-group rules
//! marked with upstream's descriptions.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, Listener, LoadBalancer, LoadBalancerAttribute, LoadBalancerSchemeEnum,
    LoadBalancerStateEnum, LoadBalancerTypeEnum, ProtocolEnum, SubnetMapping, Tag, TargetDescription, TargetGroup,
    TargetGroupAttribute, TargetHealthStateEnum, TargetTypeEnum,
};
use cloud_provider::{CloudError, IngressPoint, LoadBalancerStatus, NodeInfo, Protocol};

use super::security_groups::{self, Rule, Source};
use super::service_config::{BackendProtocol, HealthPort, LbConfig};
use super::{AwsLoadBalancers, names};
use crate::ec2::filter;
use crate::errors::AwsError;

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

const CHUNK: usize = 100;

/// What one Service port becomes.
#[derive(Debug, Clone, PartialEq)]
struct Mapping {
    port: u16,
    node_port: u16,
    front: ProtocolEnum,
    target: ProtocolEnum,
    health: Health,
    tls: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Health {
    protocol: String,
    port: String,
    path: Option<String>,
    interval: i32,
    timeout: Option<i32>,
    healthy: i32,
    unhealthy: i32,
}

impl AwsLoadBalancers {
    /// Describes by name, batched with concurrent callers (see `describe_batch`).
    pub(crate) async fn nlb_describe(&self, name: &str) -> Result<Option<LoadBalancer>, CloudError> {
        Ok(self.nlb_batch.get(name).await?)
    }

    fn nlb_health(&self, cfg: &LbConfig, node_port: u16) -> Health {
        let mut h = if cfg.local_traffic
            && let Some(hc) = cfg.health_check_node_port
        {
            Health {
                protocol: "HTTP".into(),
                port: hc.to_string(),
                path: Some("/healthz".into()),
                interval: 10,
                timeout: Some(10),
                healthy: 2,
                unhealthy: 2,
            }
        } else {
            Health {
                protocol: "TCP".into(),
                port: "traffic-port".into(),
                path: None,
                interval: 30,
                timeout: None,
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
        let _ = node_port;
        h.interval = cfg.health.interval.unwrap_or(h.interval);
        h.healthy = cfg.health.healthy.unwrap_or(h.healthy);
        h.unhealthy = cfg.health.unhealthy.unwrap_or(h.unhealthy);
        h.timeout = cfg.health.timeout.or(h.timeout);
        h
    }

    fn nlb_mappings(&self, cfg: &LbConfig) -> Vec<Mapping> {
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
                    health: self.nlb_health(cfg, p.node_port),
                    tls,
                }
            })
            .collect()
    }

    fn tg_name(&self, cfg: &LbConfig, m: &Mapping) -> String {
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

    fn v2_tags(&self, cfg: &LbConfig) -> Vec<Tag> {
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
        let instances = self.target_instances(cfg, nodes).await?;
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

    async fn nlb_security_group(
        &self,
        cfg: &LbConfig,
        cluster_name: &str,
        existing: Option<&LoadBalancer>,
        mappings: &[Mapping],
    ) -> Result<Option<String>, CloudError> {
        if !self.settings.nlb_security_groups_managed {
            if !cfg.security_groups.is_empty() {
                return Err(CloudError::invalid(
                    "aws/nlb.security_groups",
                    format!(
                        "{} on an NLB needs NLBSecurityGroupMode = Managed in the cloud-config",
                        super::annotations::SECURITY_GROUPS
                    ),
                ));
            }
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

    async fn nlb_create(&self, cfg: &LbConfig, name: &str, group: Option<String>) -> Result<LoadBalancer, CloudError> {
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

    async fn target_groups_of(&self, arn: &str) -> Result<Vec<TargetGroup>, AwsError> {
        let r = self.elbv2.describe_target_groups().load_balancer_arn(arn);
        match self.calls.run("aws/elbv2.DescribeTargetGroups", r.send()).await {
            Ok(out) => Ok(out.target_groups().to_vec()),
            // AWS answers an empty list; some emulators answer "not found".
            Err(err) if err.has_code("TargetGroupNotFound") => Ok(Vec::new()),
            Err(err) => Err(err),
        }
    }

    async fn target_group_named(&self, name: &str) -> Result<Option<TargetGroup>, AwsError> {
        let r = self.elbv2.describe_target_groups().names(name);
        match self.calls.run("aws/elbv2.DescribeTargetGroups", r.send()).await {
            Ok(out) => Ok(out.target_groups().first().cloned()),
            Err(err) if err.has_code("TargetGroupNotFound") => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn nlb_listeners(
        &self,
        cfg: &LbConfig,
        arn: &str,
        mappings: &[Mapping],
        instances: &[aws_sdk_ec2::types::Instance],
    ) -> Result<(), CloudError> {
        let listeners: Vec<Listener> = self
            .calls
            .run("aws/elbv2.DescribeListeners", self.elbv2.describe_listeners().load_balancer_arn(arn).send())
            .await?
            .listeners()
            .to_vec();
        let mut groups: Vec<TargetGroup> = self.target_groups_of(arn).await?;
        let mut unused_groups: BTreeSet<String> = BTreeSet::new();

        for m in mappings {
            let tg_name = self.tg_name(cfg, m);
            let tg = match groups.iter().find(|g| g.target_group_name() == Some(tg_name.as_str())).cloned() {
                Some(tg) => tg,
                None => match self.target_group_named(&tg_name).await? {
                    Some(tg) => tg,
                    None => {
                        let tg = self.nlb_create_target_group(cfg, &tg_name, m).await?;
                        groups.push(tg.clone());
                        tg
                    }
                },
            };
            let tg_arn = tg.target_group_arn().unwrap_or_default().to_string();
            self.nlb_health_in_place(&tg, m).await?;
            self.nlb_targets(&tg_arn, m.node_port, instances).await?;
            self.nlb_target_group_attributes(cfg, &tg_arn).await?;

            let listener = listeners.iter().find(|l| l.port() == Some(m.port.into()));
            let forward = Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(&tg_arn).build();
            let certificates =
                cfg.ssl_cert.clone().filter(|_| m.tls).map(|c| vec![Certificate::builder().certificate_arn(c).build()]);
            let ssl_policy = cfg.ssl_negotiation_policy.clone().filter(|_| m.tls);
            match listener {
                Some(l) if l.protocol() == Some(&m.front) => {
                    let current_tg = l.default_actions().first().and_then(|a| a.target_group_arn()).unwrap_or_default();
                    let current_cert = l.certificates().first().and_then(|c| c.certificate_arn()).map(String::from);
                    let cert_drift = m.tls && current_cert != cfg.ssl_cert;
                    let policy_drift = ssl_policy.is_some() && l.ssl_policy().map(String::from) != ssl_policy;
                    if current_tg != tg_arn || cert_drift || policy_drift {
                        let r = self
                            .elbv2
                            .modify_listener()
                            .listener_arn(l.listener_arn().unwrap_or_default())
                            .default_actions(forward)
                            .set_certificates(certificates)
                            .set_ssl_policy(ssl_policy);
                        self.calls.run("aws/elbv2.ModifyListener", r.send()).await?;
                        if current_tg != tg_arn && !current_tg.is_empty() {
                            unused_groups.insert(current_tg.to_string());
                        }
                    }
                }
                other => {
                    if let Some(l) = other {
                        // Same port, other protocol: replace the listener.
                        let r = self.elbv2.delete_listener().listener_arn(l.listener_arn().unwrap_or_default());
                        self.calls.run("aws/elbv2.DeleteListener", r.send()).await?;
                        unused_groups
                            .extend(l.default_actions().iter().filter_map(|a| a.target_group_arn().map(String::from)));
                    }
                    let r = self
                        .elbv2
                        .create_listener()
                        .load_balancer_arn(arn)
                        .port(m.port.into())
                        .protocol(m.front.clone())
                        .default_actions(forward)
                        .set_certificates(certificates)
                        .set_ssl_policy(ssl_policy)
                        .set_tags(Some(self.v2_tags(cfg)));
                    self.calls.run("aws/elbv2.CreateListener", r.send()).await?;
                }
            }
            unused_groups.remove(&tg_arn);
        }
        // Listeners for ports the Service no longer has.
        for l in &listeners {
            if !mappings.iter().any(|m| l.port() == Some(m.port.into())) {
                let r = self.elbv2.delete_listener().listener_arn(l.listener_arn().unwrap_or_default());
                self.calls.run("aws/elbv2.DeleteListener", r.send()).await?;
                unused_groups.extend(l.default_actions().iter().filter_map(|a| a.target_group_arn().map(String::from)));
            }
        }
        let wanted: BTreeSet<String> = mappings.iter().map(|m| self.tg_name(cfg, m)).collect();
        for g in &groups {
            if g.target_group_name().is_some_and(|n| !wanted.contains(n)) {
                unused_groups.insert(g.target_group_arn().unwrap_or_default().to_string());
            }
        }
        for tg in unused_groups {
            self.delete_target_group(&tg).await?;
        }
        Ok(())
    }

    async fn delete_target_group(&self, arn: &str) -> Result<(), CloudError> {
        match self
            .calls
            .run("aws/elbv2.DeleteTargetGroup", self.elbv2.delete_target_group().target_group_arn(arn).send())
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if err.is_not_found() => Ok(()),
            Err(err) if err.has_code("ResourceInUse") => Err(CloudError::retry_after(
                "aws/nlb.delete_target_group",
                format!("target group {arn} is still in use; deleting it again shortly"),
                std::time::Duration::from_secs(10),
            )),
            Err(err) => Err(err.into()),
        }
    }

    async fn nlb_create_target_group(
        &self,
        cfg: &LbConfig,
        name: &str,
        m: &Mapping,
    ) -> Result<TargetGroup, CloudError> {
        let h = &m.health;
        let r = self
            .elbv2
            .create_target_group()
            .name(name)
            .protocol(m.target.clone())
            .port(m.node_port.into())
            .vpc_id(&self.vpc_id)
            .target_type(TargetTypeEnum::Instance)
            .health_check_protocol(ProtocolEnum::from(h.protocol.as_str()))
            .health_check_port(&h.port)
            .set_health_check_path(h.path.clone())
            .health_check_interval_seconds(h.interval)
            .set_health_check_timeout_seconds(h.timeout)
            .healthy_threshold_count(h.healthy)
            .unhealthy_threshold_count(h.unhealthy)
            .set_tags(Some(self.v2_tags(cfg)));
        let out = self.calls.run("aws/elbv2.CreateTargetGroup", r.send()).await?;
        out.target_groups()
            .first()
            .cloned()
            .ok_or_else(|| CloudError::transient("aws/nlb.target_group", "CreateTargetGroup returned nothing"))
    }

    /// Port, path, thresholds and timeout change in place; protocol and interval are part of
    /// the target group's name (upstream), so a change of those made a new group above.
    async fn nlb_health_in_place(&self, tg: &TargetGroup, m: &Mapping) -> Result<(), CloudError> {
        let h = &m.health;
        let same = tg.health_check_port() == Some(h.port.as_str())
            && (h.path.is_none() || tg.health_check_path() == h.path.as_deref())
            && tg.healthy_threshold_count() == Some(h.healthy)
            && tg.unhealthy_threshold_count() == Some(h.unhealthy)
            && (h.timeout.is_none() || tg.health_check_timeout_seconds() == h.timeout);
        if same {
            return Ok(());
        }
        let r = self
            .elbv2
            .modify_target_group()
            .target_group_arn(tg.target_group_arn().unwrap_or_default())
            .health_check_port(&h.port)
            .set_health_check_path(h.path.clone())
            .set_health_check_timeout_seconds(h.timeout)
            .healthy_threshold_count(h.healthy)
            .unhealthy_threshold_count(h.unhealthy);
        self.calls.run("aws/elbv2.ModifyTargetGroup", r.send()).await?;
        Ok(())
    }

    /// Deregister first, then register (helps at instance-count limits), in chunks.
    async fn nlb_targets(
        &self,
        tg: &str,
        node_port: u16,
        instances: &[aws_sdk_ec2::types::Instance],
    ) -> Result<(), CloudError> {
        let health = self
            .calls
            .run("aws/elbv2.DescribeTargetHealth", self.elbv2.describe_target_health().target_group_arn(tg).send())
            .await?;
        let have: BTreeSet<(String, i32)> = health
            .target_health_descriptions()
            .iter()
            .filter(|d| d.target_health().and_then(|h| h.state()) != Some(&TargetHealthStateEnum::Draining))
            .filter_map(|d| d.target().map(|t| (t.id().unwrap_or_default().to_string(), t.port().unwrap_or_default())))
            .collect();
        let want: BTreeSet<(String, i32)> =
            instances.iter().filter_map(|i| i.instance_id().map(|id| (id.to_string(), i32::from(node_port)))).collect();
        let to_target = |(id, port): &(String, i32)| TargetDescription::builder().id(id).port(*port).build();
        let remove: Vec<TargetDescription> = have.difference(&want).map(to_target).collect();
        let add: Vec<TargetDescription> = want.difference(&have).map(to_target).collect();
        for chunk in remove.chunks(CHUNK) {
            let r = self.elbv2.deregister_targets().target_group_arn(tg).set_targets(Some(chunk.to_vec()));
            self.calls.run("aws/elbv2.DeregisterTargets", r.send()).await?;
        }
        for chunk in add.chunks(CHUNK) {
            let r = self.elbv2.register_targets().target_group_arn(tg).set_targets(Some(chunk.to_vec()));
            self.calls.run("aws/elbv2.RegisterTargets", r.send()).await?;
        }
        Ok(())
    }

    async fn nlb_target_group_attributes(&self, cfg: &LbConfig, tg: &str) -> Result<(), CloudError> {
        if cfg.target_group_attributes.is_empty() {
            return Ok(());
        }
        let out = self
            .calls
            .run(
                "aws/elbv2.DescribeTargetGroupAttributes",
                self.elbv2.describe_target_group_attributes().target_group_arn(tg).send(),
            )
            .await?;
        let have: BTreeMap<&str, &str> = out.attributes().iter().filter_map(|a| Some((a.key()?, a.value()?))).collect();
        let changes: Vec<TargetGroupAttribute> = cfg
            .target_group_attributes
            .iter()
            .filter(|(k, v)| have.get(k.as_str()) != Some(&v.to_string().as_str()))
            .map(|(k, v)| TargetGroupAttribute::builder().key(k).value(v.to_string()).build())
            .collect();
        if !changes.is_empty() {
            let r = self.elbv2.modify_target_group_attributes().target_group_arn(tg).set_attributes(Some(changes));
            self.calls.run("aws/elbv2.ModifyTargetGroupAttributes", r.send()).await?;
        }
        Ok(())
    }

    async fn nlb_attributes(&self, cfg: &LbConfig, arn: &str) -> Result<(), CloudError> {
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

    /// Client, health-check and MTU rules on the target Nodes' groups; this LB's client and
    /// health rules removed from other cluster groups.
    async fn nlb_node_rules(
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

        let targets = self.node_groups(instances).await?;
        let cluster_groups =
            self.ec2.security_groups(Vec::new(), vec![filter("tag-key", [self.cluster.key()])]).await?;
        for group in &cluster_groups {
            let id = group.group_id().unwrap_or_default();
            let mine =
                |r: &Rule| matches!(r.description.as_deref(), Some(d) if d == client_marker || d == health_marker);
            let current: Vec<Rule> = security_groups::ingress(group);
            let is_target = targets.iter().any(|t| t.group_id() == Some(id));
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

    /// Deletes the NLB named after `uid` and everything it owns: listeners go with it, then its
    /// target groups (also orphans found by name and tags), its rules on node groups, and its
    /// managed security group.
    pub(crate) async fn nlb_delete(
        &self,
        namespace: &str,
        service: &str,
        uid: &str,
        cluster_name: &str,
    ) -> Result<(), CloudError> {
        let name = names::load_balancer_name(uid);
        let lb = self.nlb_describe(&name).await?;
        let mut groups: BTreeSet<String> = BTreeSet::new();
        if let Some(lb) = &lb {
            let arn = lb.load_balancer_arn().unwrap_or_default();
            groups.extend(
                self.target_groups_of(arn).await?.iter().filter_map(|g| g.target_group_arn().map(String::from)),
            );
            let r = self.elbv2.delete_load_balancer().load_balancer_arn(arn);
            self.calls.run("aws/elbv2.DeleteLoadBalancer", r.send()).await?;
        }
        groups.extend(self.orphan_target_groups(namespace, service).await?);
        for tg in &groups {
            self.delete_target_group(tg).await?;
        }
        if !self.settings.disable_security_group_ingress {
            let client_marker = names::nlb_client_rule(&name);
            let health_marker = names::nlb_health_rule(&name);
            let cluster_groups =
                self.ec2.security_groups(Vec::new(), vec![filter("tag-key", [self.cluster.key()])]).await?;
            for group in &cluster_groups {
                let rules = security_groups::ingress(group);
                let ours: Vec<_> = rules
                    .iter()
                    .filter(|r| matches!(r.description.as_deref(), Some(d) if d == client_marker || d == health_marker))
                    .map(Rule::to_permission)
                    .collect();
                let others_left = rules.iter().any(|r| {
                    r.description
                        .as_deref()
                        .is_some_and(|d| d.starts_with("kubernetes.io/rule/nlb/client=") && d != client_marker)
                });
                let mut remove = ours;
                if !others_left {
                    remove.extend(
                        rules
                            .iter()
                            .filter(|r| r.description.as_deref() == Some(names::NLB_MTU_RULE))
                            .map(Rule::to_permission),
                    );
                }
                self.ec2.revoke_ingress(group.group_id().unwrap_or_default(), remove).await?;
            }
        }
        let owned =
            self.owned_groups_named(&names::nlb_security_group_name(cluster_name, namespace, service, uid)).await?;
        for group in &owned {
            self.revoke_references_to(group.group_id().unwrap_or_default()).await?;
        }
        self.delete_groups(&owned).await
    }

    /// Target groups of this Service left without a load balancer (an interrupted create or
    /// delete): found by their name prefix, confirmed by the cluster and service-name tags.
    async fn orphan_target_groups(&self, namespace: &str, service: &str) -> Result<Vec<String>, CloudError> {
        let prefix = names::target_group_prefix(namespace, service);
        let mut candidates = Vec::new();
        let mut marker = None;
        loop {
            let r = self.elbv2.describe_target_groups().set_marker(marker);
            let page = self.calls.run("aws/elbv2.DescribeTargetGroups", r.send()).await?;
            candidates.extend(
                page.target_groups()
                    .iter()
                    .filter(|g| g.target_group_name().is_some_and(|n| n.starts_with(&prefix)))
                    .filter_map(|g| g.target_group_arn().map(String::from)),
            );
            marker = page.next_marker().filter(|m| !m.is_empty()).map(String::from);
            if marker.is_none() {
                break;
            }
        }
        let key = format!("{namespace}/{service}");
        let mut out = Vec::new();
        for chunk in candidates.chunks(20) {
            let r = self.elbv2.describe_tags().set_resource_arns(Some(chunk.to_vec()));
            let tags = self.calls.run("aws/elbv2.DescribeTags", r.send()).await?;
            for d in tags.tag_descriptions() {
                let pairs: Vec<(&str, &str)> =
                    d.tags().iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())).collect();
                let ours = self.cluster.is_owned(pairs.iter().copied())
                    && pairs.iter().any(|(k, v)| *k == super::SERVICE_NAME_TAG && *v == key);
                if ours {
                    out.extend(d.resource_arn().map(String::from));
                }
            }
        }
        Ok(out)
    }
}
