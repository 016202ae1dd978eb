//! Classic ELB: listeners, security groups, attributes, health check, node rules, instances.
//!
//! `ensure` is a list of named steps; each compares what AWS has with what the Service asks
//! for and calls AWS only for a difference, so a re-ensure with nothing changed makes no
//! mutating call.

use std::collections::BTreeSet;

use aws_sdk_elasticloadbalancing::types::{
    AccessLog, ConnectionDraining, ConnectionSettings, CrossZoneLoadBalancing, HealthCheck, Instance as ElbInstance,
    Listener, LoadBalancerAttributes, LoadBalancerDescription, PolicyAttribute, Tag,
};
use cloud_provider::{CloudError, IngressPoint, LoadBalancerStatus, NodeInfo};

use super::security_groups::{self, Rule, Source};
use super::service_config::{BackendProtocol, HealthPort, LbConfig};
use super::{AwsLoadBalancers, names};
use crate::errors::AwsError;

/// Every ELB (classic) operation this module calls.
pub const OPERATIONS: [&str; 18] = [
    "DescribeLoadBalancers",
    "DescribeTags",
    "CreateLoadBalancer",
    "DeleteLoadBalancer",
    "AttachLoadBalancerToSubnets",
    "DetachLoadBalancerFromSubnets",
    "ApplySecurityGroupsToLoadBalancer",
    "CreateLoadBalancerListeners",
    "DeleteLoadBalancerListeners",
    "ConfigureHealthCheck",
    "DescribeLoadBalancerAttributes",
    "ModifyLoadBalancerAttributes",
    "RegisterInstancesWithLoadBalancer",
    "DeregisterInstancesFromLoadBalancer",
    "AddTags",
    "CreateLoadBalancerPolicy",
    "SetLoadBalancerPoliciesForBackendServer",
    "SetLoadBalancerPoliciesOfListener",
];

const PROXY_POLICY: &str = "k8s-proxyprotocol-enabled";

impl AwsLoadBalancers {
    /// Describes by name, batched with concurrent callers (see `describe_batch`).
    pub(crate) async fn classic_describe(&self, name: &str) -> Result<Option<LoadBalancerDescription>, AwsError> {
        self.classic_batch.get(name).await
    }

    fn classic_listeners(cfg: &LbConfig) -> Vec<Listener> {
        cfg.ports
            .iter()
            .map(|port| {
                let (front, back) = if cfg.is_ssl_port(port) {
                    match cfg.backend_protocol {
                        Some(BackendProtocol::Http) => ("HTTPS", "HTTP"),
                        Some(BackendProtocol::Https) => ("HTTPS", "HTTPS"),
                        Some(BackendProtocol::Ssl) => ("SSL", "SSL"),
                        Some(BackendProtocol::Tcp) | None => ("SSL", "TCP"),
                    }
                } else {
                    match cfg.backend_protocol {
                        Some(BackendProtocol::Http) => ("HTTP", "HTTP"),
                        _ => ("TCP", "TCP"),
                    }
                };
                Listener::builder()
                    .protocol(front)
                    .load_balancer_port(port.port.into())
                    .instance_protocol(back)
                    .instance_port(port.node_port.into())
                    .set_ssl_certificate_id(cfg.is_ssl_port(port).then(|| cfg.ssl_cert.clone()).flatten())
                    .build()
                    .expect("protocol and ports are set")
            })
            .collect()
    }

    fn classic_health_check(&self, cfg: &LbConfig) -> HealthCheck {
        let first_node_port = cfg.ports.first().map_or(0, |p| p.node_port);
        let (mut protocol, mut port, mut path) = match (cfg.local_traffic, cfg.health_check_node_port) {
            (true, Some(hc)) => ("HTTP".to_string(), hc, "/healthz".to_string()),
            _ if self.settings.shared_health_probe => {
                ("HTTP".to_string(), self.settings.shared_probe_port, self.settings.shared_probe_path.clone())
            }
            _ => {
                // Upstream lower-cases the annotation here (and only here).
                let ssl = cfg.backend_ssl_health;
                (if ssl { "SSL" } else { "TCP" }.to_string(), first_node_port, "/".to_string())
            }
        };
        if let Some(p) = &cfg.health.protocol {
            protocol = p.clone();
        }
        match cfg.health.port {
            Some(HealthPort::TrafficPort) => port = first_node_port,
            Some(HealthPort::Port(p)) => port = p,
            None => {}
        }
        if let Some(p) = &cfg.health.path {
            path = p.clone();
        }
        let target = if matches!(protocol.as_str(), "HTTP" | "HTTPS") {
            format!("{protocol}:{port}{path}")
        } else {
            format!("{protocol}:{port}")
        };
        HealthCheck::builder()
            .target(target)
            .healthy_threshold(cfg.health.healthy.unwrap_or(2))
            .unhealthy_threshold(cfg.health.unhealthy.unwrap_or(6))
            .interval(cfg.health.interval.unwrap_or(10))
            .timeout(cfg.health.timeout.unwrap_or(5))
            .build()
            .expect("all fields set")
    }

    /// The security groups the ELB should have, creating and filling the managed one.
    async fn classic_security_groups(&self, cfg: &LbConfig, lb_name: &str) -> Result<Vec<String>, CloudError> {
        let mut groups = if !cfg.security_groups.is_empty() {
            cfg.security_groups.clone()
        } else if let Some(sg) = &self.settings.elb_security_group {
            vec![sg.clone()]
        } else {
            let sg_name = names::classic_security_group_name(lb_name);
            let description = names::classic_security_group_description(lb_name, &cfg.service_key());
            let group = self.ensure_owned_group(&sg_name, &description, &cfg.additional_tags).await?;
            let mut wanted = Vec::new();
            for range in &cfg.source_ranges {
                for port in &cfg.all_ports {
                    wanted.push(Rule::tcp(*port, Source::Cidr(range.clone())));
                }
                wanted.push(Rule::icmp_mtu(Source::Cidr(range.clone())));
            }
            security_groups::set_exact(&self.ec2, &group, &wanted).await?;
            vec![group.group_id().unwrap_or_default().to_string()]
        };
        groups.extend(cfg.extra_security_groups.iter().cloned());
        Ok(groups)
    }

    pub(crate) async fn classic_ensure(
        &self,
        cfg: &LbConfig,
        nodes: &[NodeInfo],
    ) -> Result<LoadBalancerStatus, CloudError> {
        let name = names::load_balancer_name(&cfg.uid);
        let subnets = self.subnets_for(cfg).await?;
        let groups = self.classic_security_groups(cfg, &name).await?;
        let listeners = Self::classic_listeners(cfg);
        let lb = match self.classic_describe(&name).await? {
            Some(lb) => {
                self.classic_update(&name, &lb, &subnets, &groups, &listeners).await?;
                lb
            }
            None => {
                let mut request = self
                    .elb
                    .create_load_balancer()
                    .load_balancer_name(&name)
                    .set_listeners(Some(listeners.clone()))
                    .set_subnets(Some(subnets.clone()))
                    .set_security_groups(Some(groups.clone()))
                    .set_tags(Some(
                        self.resource_tags(cfg)
                            .into_iter()
                            .map(|(k, v)| Tag::builder().key(k).value(v).build().expect("key"))
                            .collect(),
                    ));
                if cfg.internal {
                    request = request.scheme("internal");
                }
                self.calls.run("aws/elb.CreateLoadBalancer", request.send()).await?;
                self.classic_describe(&name)
                    .await?
                    .ok_or_else(|| CloudError::transient("aws/elb.ensure", format!("{name} vanished after creation")))?
            }
        };
        self.classic_tags(&name, cfg).await?;
        self.classic_proxy_protocol(&name, &lb, cfg).await?;
        self.classic_ssl_policy(&name, &lb, cfg).await?;
        self.classic_attributes(&name, cfg).await?;
        let health = self.classic_health_check(cfg);
        if lb.health_check() != Some(&health) {
            let request = self.elb.configure_health_check().load_balancer_name(&name).health_check(health);
            self.calls.run("aws/elb.ConfigureHealthCheck", request.send()).await?;
        }
        self.classic_targets(&name, &lb, &groups, cfg, nodes).await?;
        Ok(LoadBalancerStatus {
            ingress: lb.dns_name().map(|d| vec![IngressPoint::hostname(d)]).unwrap_or_default(),
            warnings: Vec::new(),
        })
    }

    async fn classic_update(
        &self,
        name: &str,
        lb: &LoadBalancerDescription,
        subnets: &[String],
        groups: &[String],
        listeners: &[Listener],
    ) -> Result<(), CloudError> {
        let have: BTreeSet<&str> = lb.subnets().iter().map(String::as_str).collect();
        let want: BTreeSet<&str> = subnets.iter().map(String::as_str).collect();
        let attach: Vec<String> = want.difference(&have).map(|s| s.to_string()).collect();
        let detach: Vec<String> = have.difference(&want).map(|s| s.to_string()).collect();
        if !attach.is_empty() {
            let r = self.elb.attach_load_balancer_to_subnets().load_balancer_name(name).set_subnets(Some(attach));
            self.calls.run("aws/elb.AttachLoadBalancerToSubnets", r.send()).await?;
        }
        if !detach.is_empty() {
            let r = self.elb.detach_load_balancer_from_subnets().load_balancer_name(name).set_subnets(Some(detach));
            self.calls.run("aws/elb.DetachLoadBalancerFromSubnets", r.send()).await?;
        }
        let have_groups: BTreeSet<&str> = lb.security_groups().iter().map(String::as_str).collect();
        if have_groups != groups.iter().map(String::as_str).collect() {
            let r = self
                .elb
                .apply_security_groups_to_load_balancer()
                .load_balancer_name(name)
                .set_security_groups(Some(groups.to_vec()));
            self.calls.run("aws/elb.ApplySecurityGroupsToLoadBalancer", r.send()).await?;
        }
        let same = |a: &Listener, b: &Listener| {
            a.load_balancer_port() == b.load_balancer_port()
                && a.instance_port() == b.instance_port()
                && a.protocol().eq_ignore_ascii_case(b.protocol())
                && a.instance_protocol()
                    .unwrap_or_default()
                    .eq_ignore_ascii_case(b.instance_protocol().unwrap_or_default())
                && a.ssl_certificate_id() == b.ssl_certificate_id()
        };
        let existing: Vec<Listener> = lb.listener_descriptions().iter().filter_map(|d| d.listener().cloned()).collect();
        let stale: Vec<i32> = existing
            .iter()
            .filter(|e| !listeners.iter().any(|l| same(e, l)))
            .map(Listener::load_balancer_port)
            .collect();
        let missing: Vec<Listener> =
            listeners.iter().filter(|l| !existing.iter().any(|e| same(e, l))).cloned().collect();
        if !stale.is_empty() {
            let r =
                self.elb.delete_load_balancer_listeners().load_balancer_name(name).set_load_balancer_ports(Some(stale));
            self.calls.run("aws/elb.DeleteLoadBalancerListeners", r.send()).await?;
        }
        if !missing.is_empty() {
            let r = self.elb.create_load_balancer_listeners().load_balancer_name(name).set_listeners(Some(missing));
            self.calls.run("aws/elb.CreateLoadBalancerListeners", r.send()).await?;
        }
        Ok(())
    }

    /// Adds missing tags (cluster, service name, additional); never removes any, as upstream.
    async fn classic_tags(&self, name: &str, cfg: &LbConfig) -> Result<(), CloudError> {
        let out =
            self.calls.run("aws/elb.DescribeTags", self.elb.describe_tags().load_balancer_names(name).send()).await?;
        let have: Vec<(String, String)> = out
            .tag_descriptions()
            .iter()
            .flat_map(|d| d.tags())
            .map(|t| (t.key().to_string(), t.value().unwrap_or_default().to_string()))
            .collect();
        let missing: Vec<Tag> = self
            .resource_tags(cfg)
            .into_iter()
            .filter(|t| !have.contains(t))
            .map(|(k, v)| Tag::builder().key(k).value(v).build().expect("key"))
            .collect();
        if !missing.is_empty() {
            let r = self.elb.add_tags().load_balancer_names(name).set_tags(Some(missing));
            self.calls.run("aws/elb.AddTags", r.send()).await?;
        }
        Ok(())
    }

    async fn classic_proxy_protocol(
        &self,
        name: &str,
        lb: &LoadBalancerDescription,
        cfg: &LbConfig,
    ) -> Result<(), CloudError> {
        let has_policy = lb.policies().is_some_and(|p| p.other_policies().iter().any(|x| x == PROXY_POLICY));
        if cfg.proxy_protocol && !has_policy {
            let r = self
                .elb
                .create_load_balancer_policy()
                .load_balancer_name(name)
                .policy_name(PROXY_POLICY)
                .policy_type_name("ProxyProtocolPolicyType")
                .policy_attributes(
                    PolicyAttribute::builder().attribute_name("ProxyProtocol").attribute_value("true").build(),
                );
            self.calls.run("aws/elb.CreateLoadBalancerPolicy", r.send()).await?;
        }
        for port in &cfg.ports {
            let current: Vec<String> = lb
                .backend_server_descriptions()
                .iter()
                .find(|b| b.instance_port() == Some(port.node_port.into()))
                .map(|b| b.policy_names().to_vec())
                .unwrap_or_default();
            let want: Vec<String> = if cfg.proxy_protocol { vec![PROXY_POLICY.to_string()] } else { Vec::new() };
            if current != want {
                let r = self
                    .elb
                    .set_load_balancer_policies_for_backend_server()
                    .load_balancer_name(name)
                    .instance_port(port.node_port.into())
                    .set_policy_names(Some(want));
                self.calls.run("aws/elb.SetLoadBalancerPoliciesForBackendServer", r.send()).await?;
            }
        }
        Ok(())
    }

    /// `ssl-negotiation-policy`: upstream's `k8s-SSLNegotiationPolicy-<name>` policy on every
    /// SSL/HTTPS listener.
    async fn classic_ssl_policy(
        &self,
        name: &str,
        lb: &LoadBalancerDescription,
        cfg: &LbConfig,
    ) -> Result<(), CloudError> {
        let Some(reference) = &cfg.ssl_negotiation_policy else { return Ok(()) };
        let policy = format!("k8s-SSLNegotiationPolicy-{reference}");
        let exists = lb.policies().is_some_and(|p| p.other_policies().contains(&policy));
        if !exists {
            let r = self
                .elb
                .create_load_balancer_policy()
                .load_balancer_name(name)
                .policy_name(&policy)
                .policy_type_name("SSLNegotiationPolicyType")
                .policy_attributes(
                    PolicyAttribute::builder()
                        .attribute_name("Reference-Security-Policy")
                        .attribute_value(reference)
                        .build(),
                );
            self.calls.run("aws/elb.CreateLoadBalancerPolicy", r.send()).await?;
        }
        for port in cfg.ports.iter().filter(|p| cfg.is_ssl_port(p)) {
            let current: Vec<&str> = lb
                .listener_descriptions()
                .iter()
                .find(|d| d.listener().is_some_and(|l| l.load_balancer_port() == i32::from(port.port)))
                .map(|d| d.policy_names().iter().map(String::as_str).collect())
                .unwrap_or_default();
            if current != [policy.as_str()] {
                let r = self
                    .elb
                    .set_load_balancer_policies_of_listener()
                    .load_balancer_name(name)
                    .load_balancer_port(port.port.into())
                    .policy_names(&policy);
                self.calls.run("aws/elb.SetLoadBalancerPoliciesOfListener", r.send()).await?;
            }
        }
        Ok(())
    }

    /// Access log, connection draining, idle timeout and cross-zone, as upstream sets them:
    /// what the annotations give (and the four defaults), nothing more. A field the Service
    /// leaves unset is not compared, so values AWS fills in by itself cause no write.
    async fn classic_attributes(&self, name: &str, cfg: &LbConfig) -> Result<(), CloudError> {
        let out = self
            .calls
            .run(
                "aws/elb.DescribeLoadBalancerAttributes",
                self.elb.describe_load_balancer_attributes().load_balancer_name(name).send(),
            )
            .await?;
        let have = out.load_balancer_attributes();
        let same = |want: Option<&str>, have: Option<&str>| want.is_none() || want == have;
        let same_i32 = |want: Option<i32>, have: Option<i32>| want.is_none() || want == have;
        let log_matches = have.and_then(|a| a.access_log()).is_some_and(|l| {
            l.enabled() == cfg.access_log_enabled
                && same_i32(cfg.access_log_interval, l.emit_interval())
                && same(cfg.access_log_bucket.as_deref(), l.s3_bucket_name())
                && same(cfg.access_log_prefix.as_deref(), l.s3_bucket_prefix())
        });
        let draining_matches = have
            .and_then(|a| a.connection_draining())
            .is_some_and(|d| d.enabled() == cfg.draining_enabled && same_i32(cfg.draining_timeout, d.timeout()));
        let matches = log_matches
            && draining_matches
            && have.and_then(|a| a.cross_zone_load_balancing()).map(CrossZoneLoadBalancing::enabled)
                == Some(cfg.cross_zone)
            && have.and_then(|a| a.connection_settings()).map(ConnectionSettings::idle_timeout)
                == Some(cfg.idle_timeout);
        if matches {
            return Ok(());
        }
        let access_log = AccessLog::builder()
            .enabled(cfg.access_log_enabled)
            .set_emit_interval(cfg.access_log_interval)
            .set_s3_bucket_name(cfg.access_log_bucket.clone())
            .set_s3_bucket_prefix(cfg.access_log_prefix.clone())
            .build();
        let attributes = LoadBalancerAttributes::builder()
            .cross_zone_load_balancing(CrossZoneLoadBalancing::builder().enabled(cfg.cross_zone).build())
            .connection_draining(
                ConnectionDraining::builder().enabled(cfg.draining_enabled).set_timeout(cfg.draining_timeout).build(),
            )
            .connection_settings(ConnectionSettings::builder().idle_timeout(cfg.idle_timeout).build().expect("idle"))
            .access_log(access_log)
            .build();
        let r =
            self.elb.modify_load_balancer_attributes().load_balancer_name(name).load_balancer_attributes(attributes);
        self.calls.run("aws/elb.ModifyLoadBalancerAttributes", r.send()).await?;
        Ok(())
    }

    /// Node security-group rules and registered instances.
    pub(crate) async fn classic_targets(
        &self,
        name: &str,
        lb: &LoadBalancerDescription,
        groups: &[String],
        cfg: &LbConfig,
        nodes: &[NodeInfo],
    ) -> Result<(), CloudError> {
        let instances = self.target_instances(&cfg.target_node_labels, nodes).await?;
        if !self.settings.disable_security_group_ingress
            && let Some(lb_group) = groups.first()
        {
            let exclusive = cfg.security_groups.is_empty() && self.settings.elb_security_group.is_none();
            self.ensure_node_group_references(lb_group, &instances, exclusive).await?;
        }
        self.classic_register(name, lb, &instances).await
    }

    /// Registers and deregisters instances so that exactly `instances` are behind the ELB.
    pub(crate) async fn classic_register(
        &self,
        name: &str,
        lb: &LoadBalancerDescription,
        instances: &[aws_sdk_ec2::types::Instance],
    ) -> Result<(), CloudError> {
        let want: BTreeSet<String> = instances.iter().filter_map(|i| i.instance_id().map(String::from)).collect();
        let have: BTreeSet<String> = lb.instances().iter().filter_map(|i| i.instance_id().map(String::from)).collect();
        let register: Vec<ElbInstance> =
            want.difference(&have).map(|id| ElbInstance::builder().instance_id(id).build()).collect();
        let deregister: Vec<ElbInstance> =
            have.difference(&want).map(|id| ElbInstance::builder().instance_id(id).build()).collect();
        if !deregister.is_empty() {
            let r = self
                .elb
                .deregister_instances_from_load_balancer()
                .load_balancer_name(name)
                .set_instances(Some(deregister));
            self.calls.run("aws/elb.DeregisterInstancesFromLoadBalancer", r.send()).await?;
        }
        if !register.is_empty() {
            let r =
                self.elb.register_instances_with_load_balancer().load_balancer_name(name).set_instances(Some(register));
            self.calls.run("aws/elb.RegisterInstancesWithLoadBalancer", r.send()).await?;
        }
        Ok(())
    }

    pub(crate) async fn classic_update_hosts(&self, cfg: &LbConfig, nodes: &[NodeInfo]) -> Result<(), CloudError> {
        let name = names::load_balancer_name(&cfg.uid);
        let lb = self
            .classic_describe(&name)
            .await?
            .ok_or_else(|| CloudError::transient("aws/elb.update_hosts", format!("load balancer {name} not found")))?;
        let groups = lb.security_groups().to_vec();
        self.classic_targets(&name, &lb, &groups, cfg, nodes).await
    }

    /// Deletes the Classic ELB named after `uid` and what this controller made for it, whatever
    /// the Service's annotations say now: the ELB, its own `k8s-elb-…` group (found by name and
    /// the `owned` tag, never a group a user or the cloud-config gave it), and the node-group
    /// rules admitting traffic from its group. Idempotent: each piece is found again on every
    /// call.
    pub(crate) async fn classic_delete(&self, uid: &str) -> Result<(), CloudError> {
        let name = names::load_balancer_name(uid);
        let lb = self.classic_describe(&name).await?;
        let own = self.owned_groups_named(&names::classic_security_group_name(&name)).await?;
        let mut _serialized = None;
        if !self.settings.disable_security_group_ingress {
            for group in &own {
                self.revoke_our_references_to(group.group_id().unwrap_or_default()).await?;
            }
            // A group the user or the cloud-config gave: its node rules go only with the last
            // of this cluster's load balancers that use it.
            if let Some(primary) = lb.as_ref().and_then(|lb| lb.security_groups().first())
                && !own.iter().any(|g| g.group_id() == Some(primary.as_str()))
            {
                let guard = self.shared_group_deletions.lock().await;
                if !self.classic_group_used_elsewhere(primary, &name).await? {
                    self.revoke_our_references_to(primary).await?;
                }
                _serialized = Some(guard);
            }
        }
        if lb.is_some() {
            let r = self.elb.delete_load_balancer().load_balancer_name(&name);
            self.calls.run("aws/elb.DeleteLoadBalancer", r.send()).await?;
        }
        self.delete_groups(&own).await
    }

    /// Whether another of this cluster's Classic ELBs (not `except`) sends its traffic from
    /// `group` (it is their first group).
    async fn classic_group_used_elsewhere(&self, group: &str, except: &str) -> Result<bool, CloudError> {
        let mut candidates = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let r = self.elb.describe_load_balancers().set_marker(marker.clone());
            let page = self.calls.run("aws/elb.DescribeLoadBalancers", r.send()).await?;
            candidates.extend(
                page.load_balancer_descriptions()
                    .iter()
                    .filter(|d| d.load_balancer_name() != Some(except))
                    .filter(|d| d.security_groups().first().map(String::as_str) == Some(group))
                    .filter_map(|d| d.load_balancer_name().map(String::from)),
            );
            marker = page.next_marker().filter(|m| !m.is_empty()).map(String::from);
            if marker.is_none() {
                break;
            }
        }
        for chunk in candidates.chunks(20) {
            let r = self.elb.describe_tags().set_load_balancer_names(Some(chunk.to_vec()));
            let tags = self.calls.run("aws/elb.DescribeTags", r.send()).await?;
            for d in tags.tag_descriptions() {
                if self.cluster.is_cluster(d.tags().iter().map(|t| (t.key(), t.value().unwrap_or_default()))) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use cloud_provider::{Protocol, ServiceInfo, ServicePort};

    use super::super::service_config::{Parsed, parse};
    use super::*;

    fn config(annotations: &[(&str, &str)]) -> LbConfig {
        let service = ServiceInfo {
            uid: "u".into(),
            annotations: annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ports: vec![
                ServicePort { name: Some("https".into()), protocol: Protocol::Tcp, port: 443, node_port: 30443 },
                ServicePort { name: Some("http".into()), protocol: Protocol::Tcp, port: 80, node_port: 30080 },
            ],
            ..Default::default()
        };
        match parse(&service) {
            Parsed::Ok { config, .. } => *config,
            other => panic!("{other:?}"),
        }
    }

    fn protocols(cfg: &LbConfig) -> Vec<(String, String, Option<String>)> {
        AwsLoadBalancers::classic_listeners(cfg)
            .iter()
            .map(|l| {
                (
                    l.protocol().to_string(),
                    l.instance_protocol().unwrap_or_default().to_string(),
                    l.ssl_certificate_id().map(String::from),
                )
            })
            .collect()
    }

    const CERT: &str = "arn:aws:acm:us-east-1:123456789012:certificate/abc";
    const SSL_CERT: &str = "service.beta.kubernetes.io/aws-load-balancer-ssl-cert";
    const SSL_PORTS: &str = "service.beta.kubernetes.io/aws-load-balancer-ssl-ports";
    const BACKEND: &str = "service.beta.kubernetes.io/aws-load-balancer-backend-protocol";

    #[test]
    fn listeners_follow_upstreams_protocol_table() {
        let tcp = ("TCP".to_string(), "TCP".to_string(), None);
        assert_eq!(protocols(&config(&[])), [tcp.clone(), tcp.clone()]);
        let http = ("HTTP".to_string(), "HTTP".to_string(), None);
        assert_eq!(protocols(&config(&[(BACKEND, "http")])), [http.clone(), http.clone()]);
        // A certificate on one port: SSL in front, TCP behind without a backend annotation.
        let ssl = ("SSL".to_string(), "TCP".to_string(), Some(CERT.to_string()));
        assert_eq!(protocols(&config(&[(SSL_CERT, CERT), (SSL_PORTS, "443")])), [ssl, tcp.clone()]);
        // http/https backends make an HTTPS listener where the certificate applies.
        let https_http = ("HTTPS".to_string(), "HTTP".to_string(), Some(CERT.to_string()));
        assert_eq!(
            protocols(&config(&[(SSL_CERT, CERT), (SSL_PORTS, "https"), (BACKEND, "http")])),
            [https_http, http]
        );
        let ssl_ssl = ("SSL".to_string(), "SSL".to_string(), Some(CERT.to_string()));
        assert_eq!(protocols(&config(&[(SSL_CERT, CERT), (BACKEND, "ssl")])), [ssl_ssl.clone(), ssl_ssl]);
        // https backend without a certificate: plain TCP, as upstream.
        assert_eq!(protocols(&config(&[(BACKEND, "https")])), [tcp.clone(), tcp]);
    }
}
