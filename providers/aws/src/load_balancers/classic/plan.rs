//! Planning a Classic ELB: pure functions from what the Service asks for ([`Desired`]) and what
//! AWS has ([`Observed`]) to the writes that close the gap. No write when they agree.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::SecurityGroup;
use aws_sdk_elasticloadbalancing::types::{
    AccessLog, ConnectionDraining, ConnectionSettings, CrossZoneLoadBalancing, HealthCheck, LoadBalancerAttributes,
    LoadBalancerDescription,
};
use cloud_provider::CloudError;

use super::super::Settings;
use super::super::names;
use super::super::plan::{Action, Change, ClassicListener, GroupRef};
use super::super::security_groups::{self, OwnGroup, Rule, Source};
use super::super::service_config::{BackendProtocol, HealthPort, HealthProtocol, LbConfig};
use crate::tags::ClusterTags;

pub(crate) const PROXY_POLICY: &str = "k8s-proxyprotocol-enabled";

/// What the Service asks for, with the settings and tags that shape it.
pub(crate) struct Desired<'a> {
    pub cfg: &'a LbConfig,
    pub settings: &'a Settings,
    pub cluster: &'a ClusterTags,
    /// The tags the ELB carries: cluster, service name, the Service's additional tags.
    pub tags: Vec<(String, String)>,
}

/// What AWS has, read by `observe` before planning.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observed {
    pub lb: Option<LoadBalancerDescription>,
    /// The ELB's tags (none when there is no ELB).
    pub tags: Vec<(String, String)>,
    /// The ELB's attributes (`None` when there is no ELB).
    pub attributes: Option<LoadBalancerAttributes>,
    /// The subnets the ELB belongs in (the annotation's, else discovery).
    pub subnets: Vec<String>,
    /// `k8s-elb-<name>` in the VPC, when the ELB's group is its own.
    pub own_group: Option<SecurityGroup>,
    /// The instances behind the eligible Nodes, sorted.
    pub instances: Vec<String>,
    /// The security groups of those instances that node rules go on.
    pub node_groups: Vec<SecurityGroup>,
    /// Groups with rules from the ELB's own group (looked up only for an own group).
    pub referencing: Vec<SecurityGroup>,
    /// A group in the VPC still holds this Service's NLB client or health rule: an NLB of the
    /// Service was being deleted when a sync was cut short (read in a full ensure only).
    pub nlb_leftover: bool,
}

fn ids(groups: &[SecurityGroup]) -> BTreeSet<&str> {
    groups.iter().filter_map(SecurityGroup::group_id).collect()
}

pub(crate) fn listeners(cfg: &LbConfig) -> Vec<ClassicListener> {
    cfg.ports
        .iter()
        .map(|port| {
            let ssl = cfg.is_ssl_port(port);
            let (front, back) = if ssl {
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
            ClassicListener {
                protocol: front.into(),
                port: port.port.into(),
                instance_protocol: back.into(),
                instance_port: port.node_port.into(),
                certificate: ssl.then(|| cfg.ssl_cert.clone()).flatten(),
            }
        })
        .collect()
}

pub(crate) fn health_check(cfg: &LbConfig, settings: &Settings) -> HealthCheck {
    let first_node_port = cfg.ports.first().map_or(0, |p| p.node_port);
    let (mut protocol, mut port, mut path) = match (cfg.local_traffic, cfg.health_check_node_port) {
        (true, Some(hc)) => (HealthProtocol::Http, hc, "/healthz".to_string()),
        _ if settings.shared_health_probe => {
            (HealthProtocol::Http, settings.shared_probe_port, settings.shared_probe_path.clone())
        }
        _ => {
            let protocol = if cfg.backend_ssl_health { HealthProtocol::Ssl } else { HealthProtocol::Tcp };
            (protocol, first_node_port, "/".to_string())
        }
    };
    if let Some(p) = cfg.health.protocol {
        protocol = p;
    }
    match cfg.health.port {
        Some(HealthPort::TrafficPort) => port = first_node_port,
        Some(HealthPort::Port(p)) => port = p,
        None => {}
    }
    if let Some(p) = &cfg.health.path {
        path = p.clone();
    }
    let protocol_name = protocol.as_str();
    let target =
        if protocol.has_path() { format!("{protocol_name}:{port}{path}") } else { format!("{protocol_name}:{port}") };
    HealthCheck::builder()
        .target(target)
        .healthy_threshold(cfg.health.healthy.unwrap_or(2))
        .unhealthy_threshold(cfg.health.unhealthy.unwrap_or(6))
        .interval(cfg.health.interval.unwrap_or(10))
        .timeout(cfg.health.timeout.unwrap_or(5))
        .build()
        .expect("all fields set")
}

/// The attributes AWS gives a new Classic ELB.
pub(crate) fn aws_default_attributes() -> LoadBalancerAttributes {
    LoadBalancerAttributes::builder()
        .cross_zone_load_balancing(CrossZoneLoadBalancing::builder().enabled(false).build())
        .connection_draining(ConnectionDraining::builder().enabled(false).timeout(300).build())
        .connection_settings(ConnectionSettings::builder().idle_timeout(60).build().expect("idle"))
        .access_log(AccessLog::builder().enabled(false).build())
        .build()
}

/// Every write that makes the ELB match the Service.
pub(crate) fn ensure(d: &Desired, o: &Observed) -> Result<Vec<Change>, CloudError> {
    let cfg = d.cfg;
    let name = names::load_balancer_name(&cfg.uid);
    let mut plan = Vec::new();
    let groups = security_groups(d, &name, o, &mut plan)?;
    let listeners = listeners(cfg);
    match &o.lb {
        None => plan.push(Change::new(
            Action::ElbCreate {
                name: name.clone(),
                internal: cfg.internal,
                listeners,
                subnets: o.subnets.clone(),
                groups: groups.clone(),
                tags: d.tags.clone(),
            },
            "the Service has no load balancer yet",
        )),
        Some(lb) => {
            update(&name, lb, &o.subnets, &groups, &listeners, &mut plan);
            let missing: Vec<(String, String)> = d.tags.iter().filter(|t| !o.tags.contains(t)).cloned().collect();
            if !missing.is_empty() {
                plan.push(Change::new(
                    Action::ElbAddTags { name: name.clone(), tags: missing },
                    "tags the Service asks for are missing (none is ever removed)",
                ));
            }
        }
    }
    let lb = o.lb.clone().unwrap_or_else(|| LoadBalancerDescription::builder().build());
    proxy_protocol(&name, &lb, cfg, &mut plan);
    ssl_policy(&name, &lb, cfg, &mut plan);
    attributes(&name, o.attributes.as_ref().unwrap_or(&aws_default_attributes()), cfg, &mut plan);
    let health = health_check(cfg, d.settings);
    if lb.health_check() != Some(&health) {
        plan.push(Change::new(
            Action::ElbConfigureHealthCheck { name: name.clone(), check: health },
            "the health check differs from the Service's",
        ));
    }
    let exclusive = cfg.security_groups.is_empty() && d.settings.elb_security_group.is_none();
    targets(&name, groups.first(), exclusive, d, o, &mut plan);
    let observed = o.node_groups.iter().chain(&o.own_group).chain(&o.referencing);
    security_groups::check_rule_quota(&plan, observed, d.settings.rule_quota, false)?;
    Ok(plan)
}

/// The writes for a change of the Nodes only: node rules for the ELB's (existing) first group,
/// and registered instances.
pub(crate) fn hosts(d: &Desired, o: &Observed) -> Vec<Change> {
    let name = names::load_balancer_name(&d.cfg.uid);
    let first = o.lb.as_ref().and_then(|lb| lb.security_groups().first()).map(|g| GroupRef::Id(g.clone()));
    let exclusive = d.cfg.security_groups.is_empty() && d.settings.elb_security_group.is_none();
    let mut plan = Vec::new();
    targets(&name, first.as_ref(), exclusive, d, o, &mut plan);
    plan
}

/// The ELB's groups: the annotation's, else the cloud-config's, else its own `k8s-elb-…`
/// group (created and filled here); then the extra groups.
fn security_groups(d: &Desired, name: &str, o: &Observed, plan: &mut Vec<Change>) -> Result<Vec<GroupRef>, CloudError> {
    let cfg = d.cfg;
    let mut groups: Vec<GroupRef> = if !cfg.security_groups.is_empty() {
        cfg.security_groups.iter().cloned().map(GroupRef::Id).collect()
    } else if let Some(sg) = &d.settings.elb_security_group {
        vec![GroupRef::Id(sg.clone())]
    } else {
        let sg_name = names::classic_security_group_name(name);
        let mut wanted = Vec::new();
        for range in &cfg.source_ranges {
            for port in &cfg.all_ports {
                wanted.push(Rule::tcp(*port, Source::Cidr(range.clone())));
            }
            wanted.push(Rule::icmp_mtu(Source::Cidr(range.clone())));
        }
        let mut tags = d.cluster.owned();
        tags.extend(cfg.additional_tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        let own = OwnGroup {
            existing: o.own_group.as_ref(),
            name: &sg_name,
            description: names::classic_security_group_description(name, &cfg.service_key()),
            tags,
            wanted,
        };
        let group = own.plan(d.cluster, plan)?;
        vec![group]
    };
    groups.extend(cfg.extra_security_groups.iter().cloned().map(GroupRef::Id));
    Ok(groups)
}

fn update(
    name: &str,
    lb: &LoadBalancerDescription,
    subnets: &[String],
    groups: &[GroupRef],
    listeners: &[ClassicListener],
    plan: &mut Vec<Change>,
) {
    let have: BTreeSet<&str> = lb.subnets().iter().map(String::as_str).collect();
    let want: BTreeSet<&str> = subnets.iter().map(String::as_str).collect();
    let attach: Vec<String> = want.difference(&have).map(|s| s.to_string()).collect();
    let detach: Vec<String> = have.difference(&want).map(|s| s.to_string()).collect();
    if !attach.is_empty() {
        plan.push(Change::new(Action::ElbAttachSubnets { name: name.into(), subnets: attach }, "subnets are missing"));
    }
    if !detach.is_empty() {
        plan.push(Change::new(
            Action::ElbDetachSubnets { name: name.into(), subnets: detach },
            "subnets are no longer wanted",
        ));
    }
    let have_groups: BTreeSet<GroupRef> = lb.security_groups().iter().cloned().map(GroupRef::Id).collect();
    if have_groups != groups.iter().cloned().collect() {
        plan.push(Change::new(
            Action::ElbApplySecurityGroups { name: name.into(), groups: groups.to_vec() },
            "the load balancer's security groups differ",
        ));
    }
    let existing: Vec<ClassicListener> = lb
        .listener_descriptions()
        .iter()
        .filter_map(|d| d.listener())
        .map(|l| ClassicListener {
            protocol: l.protocol().to_string(),
            port: l.load_balancer_port(),
            instance_protocol: l.instance_protocol().unwrap_or_default().to_string(),
            instance_port: l.instance_port(),
            certificate: l.ssl_certificate_id().map(String::from),
        })
        .collect();
    let same = |a: &ClassicListener, b: &ClassicListener| {
        a.port == b.port
            && a.instance_port == b.instance_port
            && a.protocol.eq_ignore_ascii_case(&b.protocol)
            && a.instance_protocol.eq_ignore_ascii_case(&b.instance_protocol)
            && a.certificate == b.certificate
    };
    let stale: Vec<i32> = existing.iter().filter(|e| !listeners.iter().any(|l| same(e, l))).map(|l| l.port).collect();
    let missing: Vec<ClassicListener> =
        listeners.iter().filter(|l| !existing.iter().any(|e| same(e, l))).cloned().collect();
    if !stale.is_empty() {
        plan.push(Change::new(
            Action::ElbDeleteListeners { name: name.into(), ports: stale },
            "listeners the Service no longer has (or has differently)",
        ));
    }
    if !missing.is_empty() {
        plan.push(Change::new(
            Action::ElbCreateListeners { name: name.into(), listeners: missing },
            "listeners the Service has that the load balancer lacks",
        ));
    }
}

fn proxy_protocol(name: &str, lb: &LoadBalancerDescription, cfg: &LbConfig, plan: &mut Vec<Change>) {
    let has_policy = lb.policies().is_some_and(|p| p.other_policies().iter().any(|x| x == PROXY_POLICY));
    if cfg.proxy_protocol && !has_policy {
        plan.push(Change::new(
            Action::ElbCreatePolicy {
                name: name.into(),
                policy: PROXY_POLICY.into(),
                policy_type: "ProxyProtocolPolicyType".into(),
                attribute: ("ProxyProtocol".into(), "true".into()),
            },
            "proxy protocol is asked for and the policy does not exist",
        ));
    }
    let want: Vec<String> = if cfg.proxy_protocol { vec![PROXY_POLICY.to_string()] } else { Vec::new() };
    for port in &cfg.ports {
        let current: Vec<String> = lb
            .backend_server_descriptions()
            .iter()
            .find(|b| b.instance_port() == Some(port.node_port.into()))
            .map(|b| b.policy_names().to_vec())
            .unwrap_or_default();
        if current != want {
            plan.push(Change::new(
                Action::ElbSetBackendPolicies {
                    name: name.into(),
                    instance_port: port.node_port.into(),
                    policies: want.clone(),
                },
                if cfg.proxy_protocol {
                    "proxy protocol is asked for"
                } else {
                    "proxy protocol is no longer asked for"
                },
            ));
        }
    }
}

/// `ssl-negotiation-policy`: upstream's `k8s-SSLNegotiationPolicy-<name>` policy on every
/// SSL/HTTPS listener.
fn ssl_policy(name: &str, lb: &LoadBalancerDescription, cfg: &LbConfig, plan: &mut Vec<Change>) {
    let Some(reference) = &cfg.ssl_negotiation_policy else { return };
    let policy = format!("k8s-SSLNegotiationPolicy-{reference}");
    if !lb.policies().is_some_and(|p| p.other_policies().contains(&policy)) {
        plan.push(Change::new(
            Action::ElbCreatePolicy {
                name: name.into(),
                policy: policy.clone(),
                policy_type: "SSLNegotiationPolicyType".into(),
                attribute: ("Reference-Security-Policy".into(), reference.clone()),
            },
            "the SSL negotiation policy the Service names does not exist on the load balancer",
        ));
    }
    for port in cfg.ports.iter().filter(|p| cfg.is_ssl_port(p)) {
        let current: Vec<&str> = lb
            .listener_descriptions()
            .iter()
            .find(|d| d.listener().is_some_and(|l| l.load_balancer_port() == i32::from(port.port)))
            .map(|d| d.policy_names().iter().map(String::as_str).collect())
            .unwrap_or_default();
        if current != [policy.as_str()] {
            plan.push(Change::new(
                Action::ElbSetListenerPolicies {
                    name: name.into(),
                    port: port.port.into(),
                    policies: vec![policy.clone()],
                },
                "the SSL listener does not use the Service's negotiation policy",
            ));
        }
    }
}

/// Access log, connection draining, idle timeout and cross-zone, as upstream sets them:
/// what the annotations give (and the four defaults), nothing more. A field the Service
/// leaves unset is not compared, so values AWS fills in by itself cause no write.
fn attributes(name: &str, have: &LoadBalancerAttributes, cfg: &LbConfig, plan: &mut Vec<Change>) {
    let same = |want: Option<&str>, have: Option<&str>| want.is_none() || want == have;
    let same_i32 = |want: Option<i32>, have: Option<i32>| want.is_none() || want == have;
    let log_matches = have.access_log().is_some_and(|l| {
        l.enabled() == cfg.access_log_enabled
            && same_i32(cfg.access_log_interval, l.emit_interval())
            && same(cfg.access_log_bucket.as_deref(), l.s3_bucket_name())
            && same(cfg.access_log_prefix.as_deref(), l.s3_bucket_prefix())
    });
    let draining_matches = have
        .connection_draining()
        .is_some_and(|d| d.enabled() == cfg.draining_enabled && same_i32(cfg.draining_timeout, d.timeout()));
    let matches = log_matches
        && draining_matches
        && have.cross_zone_load_balancing().map(CrossZoneLoadBalancing::enabled) == Some(cfg.cross_zone)
        && have.connection_settings().map(ConnectionSettings::idle_timeout) == Some(cfg.idle_timeout);
    if matches {
        return;
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
    plan.push(Change::new(
        Action::ElbModifyAttributes { name: name.into(), attributes },
        "access log, draining, idle timeout or cross-zone differ from the Service's",
    ));
}

/// Node rules ("all traffic from the ELB's first group" on every target's node group) and
/// registered instances. With `exclusive` (the group is the ELB's own), cluster groups no
/// target needs any more lose that rule; a group shared with other load balancers is never
/// revoked here: another Service may need the rule on any node group, its deletion decides.
fn targets(
    name: &str,
    lb_group: Option<&GroupRef>,
    exclusive: bool,
    d: &Desired,
    o: &Observed,
    plan: &mut Vec<Change>,
) {
    if !d.settings.disable_security_group_ingress
        && let Some(lb_group) = lb_group
    {
        let has_rule = |group: &SecurityGroup| match lb_group {
            GroupRef::Id(id) => {
                let rule = Rule::all_from_group(id);
                security_groups::ingress(group).iter().any(|r| r.identity() == rule.identity())
            }
            GroupRef::New(_) => false,
        };
        for group in o.node_groups.iter().filter(|g| !has_rule(g)) {
            plan.push(Change::new(
                Action::AdmitGroup { group: group.group_id().unwrap_or_default().into(), from: lb_group.clone() },
                "a target Node's group does not admit the load balancer's traffic",
            ));
        }
        if let (true, GroupRef::Id(lb_group)) = (exclusive, lb_group) {
            let rule = Rule::all_from_group(lb_group);
            let wanted = ids(&o.node_groups);
            for group in &o.referencing {
                let id = group.group_id().unwrap_or_default();
                let cluster = d.cluster.is_cluster(
                    group.tags().iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
                );
                if cluster && !wanted.contains(id) {
                    plan.push(Change::new(
                        Action::RevokeIngress { group: GroupRef::Id(id.into()), rules: vec![rule.clone()] },
                        "no target Node is in this group any more",
                    ));
                }
            }
        }
    }
    plan.extend(register(name, o));
}

/// Deregisters and registers instances so that exactly `o.instances` are behind the ELB.
pub(crate) fn register(name: &str, o: &Observed) -> Vec<Change> {
    let mut plan = Vec::new();
    let have: BTreeSet<String> =
        o.lb.as_ref()
            .map(|lb| lb.instances().iter().filter_map(|i| i.instance_id().map(String::from)).collect())
            .unwrap_or_default();
    let want: BTreeSet<String> = o.instances.iter().cloned().collect();
    let deregister: Vec<String> = have.difference(&want).cloned().collect();
    let register: Vec<String> = want.difference(&have).cloned().collect();
    if !deregister.is_empty() {
        plan.push(Change::new(
            Action::ElbDeregister { name: name.into(), instances: deregister },
            "these instances are no longer behind an eligible Node",
        ));
    }
    if !register.is_empty() {
        plan.push(Change::new(
            Action::ElbRegister { name: name.into(), instances: register },
            "these eligible Nodes' instances are not registered",
        ));
    }
    plan
}
