//! Planning an NLB: pure functions from what the Service asks for ([`Desired`]) and what AWS has
//! ([`Observed`]) to the writes that close the gap: its managed security group, the load
//! balancer, a target group per port (health check changed in place where AWS allows, targets,
//! attributes), listeners, attributes, and the rules on the target Nodes' groups, marked with
//! upstream's descriptions.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::SecurityGroup;
use aws_sdk_elasticloadbalancingv2::types::{Listener, LoadBalancer, ProtocolEnum, TargetGroup};
use cloud_provider::CloudError;

use super::super::Settings;
use super::super::annotations;
use super::super::names;
use super::super::plan::{Action, ArnRef, Change, GroupRef, SubnetSlot};
use super::super::security_groups::{self, OwnGroup, Rule, Source};
use super::super::service_config::{HealthPort, LbConfig};
use super::{CHUNK, Mapping};
use crate::tags::ClusterTags;

/// What the Service asks for, with the settings and tags that shape it.
pub(crate) struct Desired<'a> {
    pub cfg: &'a LbConfig,
    pub settings: &'a Settings,
    pub cluster: &'a ClusterTags,
    /// The tags the NLB and its parts carry.
    pub tags: Vec<(String, String)>,
    pub mappings: Vec<Mapping>,
    /// The target-group name of each mapping.
    pub tg_names: Vec<String>,
    /// The name of the NLB's own security group (`NLBSecurityGroupMode = Managed`).
    pub group_name: String,
}

/// What AWS has, read by `observe` before planning.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observed {
    pub lb: Option<LoadBalancer>,
    /// The subnets a new NLB goes in (read only when there is none).
    pub subnets: Vec<String>,
    /// CIDRs of the NLB's subnets (read only when health rules need them).
    pub subnet_cidrs: Vec<String>,
    /// The NLB's own group, when it has one (Managed mode).
    pub own_group: Option<SecurityGroup>,
    /// The cluster's shared backend group (read only with `NLBBackendSecurityGroup`).
    pub backend_group: Option<SecurityGroup>,
    pub listeners: Vec<Listener>,
    /// The NLB's target groups.
    pub target_groups: Vec<TargetGroup>,
    /// Wanted target groups that exist without being the NLB's (an interrupted sync).
    pub unattached: Vec<TargetGroup>,
    /// Registered (not draining) targets by target-group ARN.
    pub targets: BTreeMap<String, BTreeSet<(String, i32)>>,
    /// Target-group attributes by ARN (read only when the Service sets some).
    pub tg_attributes: BTreeMap<String, BTreeMap<String, String>>,
    /// The NLB's attributes.
    pub attributes: BTreeMap<String, String>,
    /// The instances behind the eligible Nodes, sorted.
    pub instances: Vec<String>,
    /// The target Nodes' groups that node rules go on.
    pub node_groups: Vec<SecurityGroup>,
    /// Every group tagged for the cluster (this NLB's rules are removed from the others).
    pub cluster_groups: Vec<SecurityGroup>,
    /// The Service's Classic ELB group exists, owned by the cluster: left by a Classic ELB
    /// whose making was cut short before the Service became an NLB. Not planned here: the
    /// Classic ELB's deletion removes it (and any rule naming it) before the NLB is planned.
    pub classic_leftover: bool,
}

/// Which managed group the NLB uses: `None` unless `NLBSecurityGroupMode = Managed`; never one
/// for an NLB made without groups (AWS cannot add them later).
pub(crate) fn uses_own_group(d: &Desired, lb: Option<&LoadBalancer>) -> bool {
    d.settings.nlb_security_groups_managed
        && !lb.is_some_and(|lb| lb.security_groups().is_empty())
        && d.cfg.security_groups.is_empty()
}

/// Whether the NLB also carries the cluster's shared backend group, which the Nodes' groups
/// admit instead of this NLB's client, health and MTU rules.
pub(crate) fn uses_backend_group(d: &Desired, lb: Option<&LoadBalancer>) -> bool {
    d.settings.nlb_backend_group && uses_own_group(d, lb)
}

fn health_ports(mappings: &[Mapping]) -> BTreeSet<u16> {
    mappings
        .iter()
        .map(|m| match m.health.port {
            HealthPort::TrafficPort => m.node_port,
            HealthPort::Port(p) => p,
        })
        .collect()
}

/// Whether health rules need the subnets' CIDRs: some health port is not open to everyone.
pub(crate) fn needs_subnet_cidrs(d: &Desired) -> bool {
    let open_to_all = d.cfg.source_ranges.iter().any(|r| r == "0.0.0.0/0");
    let client_ports: BTreeSet<u16> =
        d.mappings.iter().filter(|m| m.target != ProtocolEnum::Udp).map(|m| m.node_port).collect();
    health_ports(&d.mappings).iter().any(|p| !(open_to_all && client_ports.contains(p)))
}

/// Every write that makes the NLB match the Service.
pub(crate) fn ensure(d: &Desired, o: &Observed) -> Result<Vec<Change>, CloudError> {
    let cfg = d.cfg;
    let name = names::load_balancer_name(&cfg.uid);
    let mut plan = Vec::new();
    let group = if uses_own_group(d, o.lb.as_ref()) {
        Some(own_group(d, o, &mut plan)?)
    } else if d.settings.nlb_security_groups_managed && !o.lb.as_ref().is_some_and(|lb| lb.security_groups().is_empty())
    {
        cfg.security_groups.first().cloned().map(GroupRef::Id)
    } else {
        None
    };
    let backend = if uses_backend_group(d, o.lb.as_ref()) { Some(backend_group(d, o, &mut plan)?) } else { None };
    let groups: Option<Vec<GroupRef>> = group.map(|g| std::iter::once(g).chain(backend.clone()).collect());
    let lb_ref = match &o.lb {
        Some(lb) => {
            let arn = lb.load_balancer_arn().unwrap_or_default().to_string();
            let carries = |g: &GroupRef| matches!(g, GroupRef::Id(id) if lb.security_groups().contains(id));
            if let Some(groups) = &groups
                && !lb.security_groups().is_empty()
                && !groups.iter().all(carries)
            {
                plan.push(Change::new(
                    Action::NlbSetSecurityGroups { load_balancer: arn.clone(), groups: groups.clone() },
                    "the load balancer's security groups differ",
                ));
            }
            ArnRef::Arn(arn)
        }
        None => {
            for (what, list) in [
                (annotations::EIP_ALLOCATIONS, &cfg.eip_allocations),
                (annotations::PRIVATE_IPV4_ADDRESSES, &cfg.private_ipv4_addresses),
            ] {
                if !list.is_empty() && list.len() != o.subnets.len() {
                    return Err(CloudError::invalid(
                        "aws/nlb.create",
                        format!(
                            "{what}: {} given for {} subnets ({:?}); one per subnet is needed",
                            list.len(),
                            o.subnets.len(),
                            o.subnets
                        ),
                    ));
                }
            }
            let subnets = o
                .subnets
                .iter()
                .enumerate()
                .map(|(i, s)| SubnetSlot {
                    subnet: s.clone(),
                    allocation: cfg.eip_allocations.get(i).cloned(),
                    private_ip: cfg.private_ipv4_addresses.get(i).cloned(),
                })
                .collect();
            plan.push(Change::new(
                Action::NlbCreate { name: name.clone(), internal: cfg.internal, subnets, groups, tags: d.tags.clone() },
                "the Service has no load balancer yet",
            ));
            ArnRef::New(name.clone())
        }
    };
    listeners(d, o, &lb_ref, &mut plan);
    attributes(d, o, &lb_ref, &mut plan);
    if !d.settings.disable_security_group_ingress {
        node_rules(d, o, &name, backend.as_ref(), &mut plan);
    }
    let observed = o.node_groups.iter().chain(&o.cluster_groups).chain(&o.own_group).chain(&o.backend_group);
    security_groups::check_rule_quota(&plan, observed, d.settings.rule_quota, true)?;
    Ok(plan)
}

/// The NLB's own group: created, or its rules made exactly the clients' ports and ranges.
fn own_group(d: &Desired, o: &Observed, plan: &mut Vec<Change>) -> Result<GroupRef, CloudError> {
    let mut wanted = Vec::new();
    for range in &d.cfg.source_ranges {
        for m in &d.mappings {
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
    let mut tags = d.cluster.owned();
    tags.extend(d.cfg.additional_tags.iter().map(|(k, v)| (k.clone(), v.clone())));
    let own = OwnGroup {
        existing: o.own_group.as_ref(),
        name: &d.group_name,
        description: names::NLB_SECURITY_GROUP_DESCRIPTION.into(),
        tags,
        wanted,
    };
    own.plan(d.cluster, plan)
}

/// The cluster's shared backend group: created when missing, tagged for the cluster, and
/// without ingress rules (it is only ever a source).
fn backend_group(d: &Desired, o: &Observed, plan: &mut Vec<Change>) -> Result<GroupRef, CloudError> {
    let name = names::nlb_backend_group_name(&d.cluster.cluster_id);
    let shared = OwnGroup {
        existing: o.backend_group.as_ref(),
        name: &name,
        description: names::nlb_backend_group_description(&d.cluster.cluster_id),
        tags: d.cluster.owned(),
        wanted: Vec::new(),
    };
    shared.plan(d.cluster, plan)
}

/// Per port: its target group (found, or created), health check, targets and attributes, then
/// its listener; then listeners and target groups no port needs any more.
fn listeners(d: &Desired, o: &Observed, lb: &ArnRef, plan: &mut Vec<Change>) {
    let cfg = d.cfg;
    let mut unused: BTreeSet<String> = BTreeSet::new();
    let known: Vec<&TargetGroup> = o.target_groups.iter().chain(&o.unattached).collect();
    for (m, tg_name) in d.mappings.iter().zip(&d.tg_names) {
        let existing = known.iter().find(|g| g.target_group_name() == Some(tg_name.as_str()));
        let tg = match existing {
            Some(tg) => {
                let arn = tg.target_group_arn().unwrap_or_default().to_string();
                health_in_place(tg, m, plan);
                ArnRef::Arn(arn)
            }
            None => {
                plan.push(Change::new(
                    Action::NlbCreateTargetGroup {
                        name: tg_name.clone(),
                        protocol: m.target.clone(),
                        port: m.node_port.into(),
                        health: m.health.clone(),
                        tags: d.tags.clone(),
                    },
                    format!("port {} has no target group", m.port),
                ));
                ArnRef::New(tg_name.clone())
            }
        };
        targets(o, &tg, m.node_port, plan);
        tg_attributes(d, o, &tg, plan);

        let listener = o.listeners.iter().find(|l| l.port() == Some(m.port.into()));
        let certificate = cfg.ssl_cert.clone().filter(|_| m.tls);
        let ssl_policy = cfg.ssl_negotiation_policy.clone().filter(|_| m.tls);
        let tg_arn = match &tg {
            ArnRef::Arn(arn) => arn.as_str(),
            ArnRef::New(_) => "",
        };
        match listener {
            Some(l) if l.protocol() == Some(&m.front) => {
                let current_tg = l.default_actions().first().and_then(|a| a.target_group_arn()).unwrap_or_default();
                let current_cert = l.certificates().first().and_then(|c| c.certificate_arn()).map(String::from);
                let cert_drift = m.tls && current_cert != cfg.ssl_cert;
                let policy_drift = ssl_policy.is_some() && l.ssl_policy().map(String::from) != ssl_policy;
                if current_tg != tg_arn || cert_drift || policy_drift {
                    plan.push(Change::new(
                        Action::NlbModifyListener {
                            listener: l.listener_arn().unwrap_or_default().into(),
                            target_group: tg.clone(),
                            certificate: certificate.clone(),
                            ssl_policy: ssl_policy.clone(),
                        },
                        format!("port {}'s listener forwards elsewhere or has another certificate or policy", m.port),
                    ));
                    if current_tg != tg_arn && !current_tg.is_empty() {
                        unused.insert(current_tg.to_string());
                    }
                }
            }
            other => {
                if let Some(l) = other {
                    plan.push(Change::new(
                        Action::NlbDeleteListener { listener: l.listener_arn().unwrap_or_default().into() },
                        format!("port {}'s listener has another protocol", m.port),
                    ));
                    unused.extend(l.default_actions().iter().filter_map(|a| a.target_group_arn().map(String::from)));
                }
                plan.push(Change::new(
                    Action::NlbCreateListener {
                        load_balancer: lb.clone(),
                        port: m.port.into(),
                        protocol: m.front.clone(),
                        target_group: tg.clone(),
                        certificate,
                        ssl_policy,
                        tags: d.tags.clone(),
                    },
                    format!("port {} has no listener", m.port),
                ));
            }
        }
        unused.remove(tg_arn);
    }
    for l in &o.listeners {
        if !d.mappings.iter().any(|m| l.port() == Some(m.port.into())) {
            plan.push(Change::new(
                Action::NlbDeleteListener { listener: l.listener_arn().unwrap_or_default().into() },
                format!("the Service has no port {} any more", l.port().unwrap_or_default()),
            ));
            unused.extend(l.default_actions().iter().filter_map(|a| a.target_group_arn().map(String::from)));
        }
    }
    for g in &o.target_groups {
        if g.target_group_name().is_some_and(|n| !d.tg_names.iter().any(|w| w == n)) {
            unused.insert(g.target_group_arn().unwrap_or_default().to_string());
        }
    }
    for arn in unused {
        plan.push(Change::new(Action::NlbDeleteTargetGroup { target_group: arn }, "no listener uses it any more"));
    }
}

/// Port, path and thresholds change in place; protocol and interval are part of the target
/// group's name (upstream), so a change of those made a new group above. The timeout is never
/// sent, as upstream never sends it.
fn health_in_place(tg: &TargetGroup, m: &Mapping, plan: &mut Vec<Change>) {
    let h = &m.health;
    let same = tg.health_check_port() == Some(h.port.to_string().as_str())
        && (h.path.is_none() || tg.health_check_path() == h.path.as_deref())
        && tg.healthy_threshold_count() == Some(h.healthy)
        && tg.unhealthy_threshold_count() == Some(h.unhealthy);
    if !same {
        plan.push(Change::new(
            Action::NlbModifyHealthCheck {
                target_group: tg.target_group_arn().unwrap_or_default().into(),
                health: h.clone(),
            },
            format!("port {}'s health check differs from the Service's", m.port),
        ));
    }
}

/// Deregister first, then register (helps at instance-count limits), in chunks.
fn targets(o: &Observed, tg: &ArnRef, node_port: u16, plan: &mut Vec<Change>) {
    let empty = BTreeSet::new();
    let have = match tg {
        ArnRef::Arn(arn) => o.targets.get(arn).unwrap_or(&empty),
        ArnRef::New(_) => &empty,
    };
    let want: BTreeSet<(String, i32)> = o.instances.iter().map(|id| (id.clone(), i32::from(node_port))).collect();
    let remove: Vec<(String, i32)> = have.difference(&want).cloned().collect();
    let add: Vec<(String, i32)> = want.difference(have).cloned().collect();
    if let ArnRef::Arn(arn) = tg {
        for chunk in remove.chunks(CHUNK) {
            plan.push(Change::new(
                Action::NlbDeregisterTargets { target_group: arn.clone(), targets: chunk.to_vec() },
                "these instances are no longer behind an eligible Node",
            ));
        }
    }
    for chunk in add.chunks(CHUNK) {
        plan.push(Change::new(
            Action::NlbRegisterTargets { target_group: tg.clone(), targets: chunk.to_vec() },
            "these eligible Nodes' instances are not registered",
        ));
    }
}

fn tg_attributes(d: &Desired, o: &Observed, tg: &ArnRef, plan: &mut Vec<Change>) {
    if d.cfg.target_group_attributes.is_empty() {
        return;
    }
    let empty = BTreeMap::new();
    let have = match tg {
        ArnRef::Arn(arn) => o.tg_attributes.get(arn).unwrap_or(&empty),
        ArnRef::New(_) => &empty,
    };
    let changes: Vec<(String, String)> = d
        .cfg
        .target_group_attributes
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .filter(|(k, v)| have.get(k) != Some(v))
        .collect();
    if !changes.is_empty() {
        plan.push(Change::new(
            Action::NlbModifyTargetGroupAttributes { target_group: tg.clone(), attributes: changes },
            "target-group attributes differ from the Service's",
        ));
    }
}

fn attributes(d: &Desired, o: &Observed, lb: &ArnRef, plan: &mut Vec<Change>) {
    let cfg = d.cfg;
    let mut want = vec![
        ("load_balancing.cross_zone.enabled", cfg.cross_zone.to_string()),
        ("access_logs.s3.enabled", cfg.access_log_enabled.to_string()),
    ];
    if cfg.access_log_enabled {
        want.push(("access_logs.s3.bucket", cfg.access_log_bucket.clone().unwrap_or_default()));
        want.push(("access_logs.s3.prefix", cfg.access_log_prefix.clone().unwrap_or_default()));
    }
    // A value AWS does not list is its default: `false` for the switches, empty otherwise.
    let changes: Vec<(String, String)> = want
        .into_iter()
        .filter(|(k, v)| o.attributes.get(*k).map_or(if v == "false" { "false" } else { "" }, String::as_str) != v)
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    if !changes.is_empty() {
        plan.push(Change::new(
            Action::NlbModifyAttributes { load_balancer: lb.clone(), attributes: changes },
            "cross-zone or access-log attributes differ from the Service's",
        ));
    }
}

/// Client, health-check and MTU rules on the target Nodes' groups; this NLB's client and
/// health rules removed from other cluster groups. With the shared `backend` group, the Nodes'
/// groups admit it instead (one rule for every NLB, never revoked here: another NLB may need it
/// on any node group; the last NLB's deletion removes it).
fn node_rules(d: &Desired, o: &Observed, name: &str, backend: Option<&GroupRef>, plan: &mut Vec<Change>) {
    let client_marker = names::nlb_client_rule(name);
    let health_marker = names::nlb_health_rule(name);
    let mut wanted: Vec<Rule> = Vec::new();
    if let Some(backend) = backend {
        for group in &o.node_groups {
            let admits = matches!(backend, GroupRef::Id(id) if security_groups::ingress(group)
                .iter()
                .any(|r| r.identity() == Rule::all_from_group(id).identity()));
            if !admits {
                plan.push(Change::new(
                    Action::AdmitGroup { group: group.group_id().unwrap_or_default().into(), from: backend.clone() },
                    "a target Node's group does not admit the NLBs' shared backend group",
                ));
            }
        }
    }
    for m in d.mappings.iter().filter(|_| backend.is_none()) {
        let protocol = if m.target == ProtocolEnum::Udp { "udp" } else { "tcp" };
        for range in &d.cfg.source_ranges {
            wanted.push(Rule {
                protocol: protocol.into(),
                from: m.node_port.into(),
                to: m.node_port.into(),
                source: Source::Cidr(range.clone()),
                description: Some(client_marker.clone()),
            });
        }
    }
    let open_to_all: BTreeSet<i32> = wanted
        .iter()
        .filter(|r| r.protocol == "tcp" && r.source == Source::Cidr("0.0.0.0/0".into()))
        .map(|r| r.from)
        .collect();
    let health = if backend.is_none() { health_ports(&d.mappings) } else { BTreeSet::new() };
    for port in health.iter().filter(|p| !open_to_all.contains(&i32::from(**p))) {
        for cidr in &o.subnet_cidrs {
            wanted.push(Rule::tcp(*port, Source::Cidr(cidr.clone())).described(health_marker.clone()));
        }
    }
    for range in d.cfg.source_ranges.iter().filter(|_| backend.is_none()) {
        wanted.push(Rule::icmp_mtu(Source::Cidr(range.clone())).described(names::NLB_MTU_RULE));
    }

    // Upstream's set: every group tagged for the cluster (new or legacy tag), plus the untagged
    // single group of a target. Target groups get the rules; on the others, this load
    // balancer's own rules (found by their description) are removed.
    let mut groups: BTreeMap<&str, &SecurityGroup> =
        o.cluster_groups.iter().filter_map(|g| Some((g.group_id()?, g))).collect();
    for t in &o.node_groups {
        groups.entry(t.group_id().unwrap_or_default()).or_insert(t);
    }
    let mine = |r: &Rule| matches!(r.description.as_deref(), Some(d) if d == client_marker || d == health_marker);
    for (id, group) in groups {
        let current = security_groups::ingress(group);
        let is_target = o.node_groups.iter().any(|t| t.group_id() == Some(id));
        let keep: BTreeSet<_> = if is_target { wanted.iter().map(Rule::identity).collect() } else { BTreeSet::new() };
        let remove: Vec<Rule> = current.iter().filter(|r| mine(r) && !keep.contains(&r.identity())).cloned().collect();
        if !remove.is_empty() {
            plan.push(Change::new(
                Action::RevokeIngress { group: GroupRef::Id(id.into()), rules: remove },
                if is_target {
                    "rules of this load balancer it no longer needs"
                } else {
                    "no target Node is in this group"
                },
            ));
        }
        if is_target {
            let have: BTreeSet<_> = current.iter().map(Rule::identity).collect();
            let add: Vec<Rule> = wanted.iter().filter(|r| !have.contains(&r.identity())).cloned().collect();
            if !add.is_empty() {
                plan.push(Change::new(
                    Action::AuthorizeIngress { group: GroupRef::Id(id.into()), rules: add },
                    "a target Node's group does not admit the load balancer's clients and health checks",
                ));
            }
        }
    }
}

/// Only the targets of one existing target group (for a Service whose annotations are invalid).
pub(crate) fn retarget(o: &Observed, tg: &str, node_port: u16) -> Vec<Change> {
    let mut plan = Vec::new();
    targets(o, &ArnRef::Arn(tg.to_string()), node_port, &mut plan);
    plan
}
