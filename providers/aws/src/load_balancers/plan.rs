//! A plan: the typed list of AWS writes that brings a load balancer in line with its Service.
//!
//! Planners (`classic::plan`, ...) are pure functions of what the Service asks for and what
//! AWS has (read beforehand, in an `observe` step); [`AwsLoadBalancers::apply`](super::AwsLoadBalancers)
//! executes a plan in order and stops at the first failure. Each [`Change`] is one AWS
//! operation with its parameters and the reason it is needed, so a plan can be printed
//! (`cloud-controller-manager plan`), compared in unit tests, and checked against the calls a
//! run actually made.

use aws_sdk_elasticloadbalancing::types::{HealthCheck, LoadBalancerAttributes};
use aws_sdk_elasticloadbalancingv2::types::ProtocolEnum;
use cloud_provider::PlannedChange;

use super::security_groups::{Rule, Source};
use super::service_config::{HealthPort, HealthProtocol};
use crate::operations::{Ec2Op, ElbOp, Elbv2Op, Op};

/// A security group by ID, or one this plan creates (by name; its ID is known once created).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupRef {
    Id(String),
    New(String),
}

impl std::fmt::Display for GroupRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => f.write_str(id),
            Self::New(name) => write!(f, "(new {name})"),
        }
    }
}

/// An ELBv2 object (load balancer, target group) by ARN, or one this plan creates (by name;
/// its ARN is known once created).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ArnRef {
    Arn(String),
    New(String),
}

impl std::fmt::Display for ArnRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Arn(arn) => f.write_str(arn),
            Self::New(name) => write!(f, "(new {name})"),
        }
    }
}

/// An NLB target group's health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub protocol: HealthProtocol,
    pub port: HealthPort,
    pub path: Option<String>,
    pub interval: i32,
    pub healthy: i32,
    pub unhealthy: i32,
}

/// One subnet of a new NLB, with its Elastic IP or private address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetSlot {
    pub subnet: String,
    pub allocation: Option<String>,
    pub private_ip: Option<String>,
}

/// A Classic ELB listener, as planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicListener {
    pub protocol: String,
    pub port: i32,
    pub instance_protocol: String,
    pub instance_port: i32,
    pub certificate: Option<String>,
}

impl ClassicListener {
    /// The listener as the ELB API takes it.
    pub fn to_sdk(&self) -> aws_sdk_elasticloadbalancing::types::Listener {
        aws_sdk_elasticloadbalancing::types::Listener::builder()
            .protocol(&self.protocol)
            .load_balancer_port(self.port)
            .instance_protocol(&self.instance_protocol)
            .instance_port(self.instance_port)
            .set_ssl_certificate_id(self.certificate.clone())
            .build()
            .expect("protocol and ports are set")
    }
}

impl std::fmt::Display for ClassicListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}->{}:{}", self.protocol, self.port, self.instance_protocol, self.instance_port)?;
        if let Some(cert) = &self.certificate {
            write!(f, "[{cert}]")?;
        }
        Ok(())
    }
}

/// One AWS write.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    CreateSecurityGroup {
        name: String,
        description: String,
        tags: Vec<(String, String)>,
    },
    /// Read-repair of the cluster tag on a group of ours that lost it.
    TagSecurityGroup {
        group: String,
        tags: Vec<(String, String)>,
    },
    AuthorizeIngress {
        group: GroupRef,
        rules: Vec<Rule>,
    },
    RevokeIngress {
        group: GroupRef,
        rules: Vec<Rule>,
    },
    /// "All traffic from `from`" on `group`: a Classic ELB's node rule.
    AdmitGroup {
        group: String,
        from: GroupRef,
    },
    DeleteSecurityGroup {
        group: String,
    },

    ElbCreate {
        name: String,
        internal: bool,
        listeners: Vec<ClassicListener>,
        subnets: Vec<String>,
        groups: Vec<GroupRef>,
        tags: Vec<(String, String)>,
    },
    ElbAttachSubnets {
        name: String,
        subnets: Vec<String>,
    },
    ElbDetachSubnets {
        name: String,
        subnets: Vec<String>,
    },
    ElbApplySecurityGroups {
        name: String,
        groups: Vec<GroupRef>,
    },
    ElbDeleteListeners {
        name: String,
        ports: Vec<i32>,
    },
    ElbCreateListeners {
        name: String,
        listeners: Vec<ClassicListener>,
    },
    ElbAddTags {
        name: String,
        tags: Vec<(String, String)>,
    },
    ElbCreatePolicy {
        name: String,
        policy: String,
        policy_type: String,
        attribute: (String, String),
    },
    ElbSetBackendPolicies {
        name: String,
        instance_port: i32,
        policies: Vec<String>,
    },
    ElbSetListenerPolicies {
        name: String,
        port: i32,
        policies: Vec<String>,
    },
    ElbModifyAttributes {
        name: String,
        attributes: LoadBalancerAttributes,
    },
    ElbConfigureHealthCheck {
        name: String,
        check: HealthCheck,
    },
    ElbDeregister {
        name: String,
        instances: Vec<String>,
    },
    ElbRegister {
        name: String,
        instances: Vec<String>,
    },
    ElbDelete {
        name: String,
    },

    NlbCreate {
        name: String,
        internal: bool,
        subnets: Vec<SubnetSlot>,
        groups: Option<Vec<GroupRef>>,
        tags: Vec<(String, String)>,
    },
    NlbSetSecurityGroups {
        load_balancer: String,
        groups: Vec<GroupRef>,
    },
    NlbCreateTargetGroup {
        name: String,
        protocol: ProtocolEnum,
        port: i32,
        health: Health,
        tags: Vec<(String, String)>,
    },
    /// Port, path and thresholds of a target group's health check, changed in place.
    NlbModifyHealthCheck {
        target_group: String,
        health: Health,
    },
    NlbRegisterTargets {
        target_group: ArnRef,
        targets: Vec<(String, i32)>,
    },
    NlbDeregisterTargets {
        target_group: String,
        targets: Vec<(String, i32)>,
    },
    NlbModifyTargetGroupAttributes {
        target_group: ArnRef,
        attributes: Vec<(String, String)>,
    },
    NlbCreateListener {
        load_balancer: ArnRef,
        port: i32,
        protocol: ProtocolEnum,
        target_group: ArnRef,
        certificate: Option<String>,
        ssl_policy: Option<String>,
        tags: Vec<(String, String)>,
    },
    NlbModifyListener {
        listener: String,
        target_group: ArnRef,
        certificate: Option<String>,
        ssl_policy: Option<String>,
    },
    NlbDeleteListener {
        listener: String,
    },
    NlbDeleteTargetGroup {
        target_group: String,
    },
    NlbModifyAttributes {
        load_balancer: ArnRef,
        attributes: Vec<(String, String)>,
    },
    NlbDelete {
        load_balancer: String,
    },
}

/// An [`Action`] and why it is needed.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub action: Action,
    pub reason: String,
}

impl Change {
    pub fn new(action: Action, reason: impl Into<String>) -> Self {
        Self { action, reason: reason.into() }
    }
}

fn tags(tags: &[(String, String)]) -> String {
    let pairs: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("tags {{{}}}", pairs.join(", "))
}

fn rule(r: &Rule) -> String {
    let ports = match r.protocol.as_str() {
        "-1" => "all".to_string(),
        "icmp" => format!("icmp {}/{}", r.from, r.to),
        p if r.from == r.to => format!("{p}/{}", r.from),
        p => format!("{p}/{}-{}", r.from, r.to),
    };
    let source = match &r.source {
        Source::Cidr(c) => c.clone(),
        Source::Group(g) => g.clone(),
    };
    match &r.description {
        Some(d) => format!("{ports} from {source} ({d})"),
        None => format!("{ports} from {source}"),
    }
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn health(h: &HealthCheck) -> String {
    format!(
        "{} interval {}s timeout {}s healthy {} unhealthy {}",
        h.target(),
        h.interval(),
        h.timeout(),
        h.healthy_threshold(),
        h.unhealthy_threshold()
    )
}

fn attributes(a: &LoadBalancerAttributes) -> String {
    let mut out = Vec::new();
    if let Some(c) = a.cross_zone_load_balancing() {
        out.push(format!("cross-zone={}", c.enabled()));
    }
    if let Some(d) = a.connection_draining() {
        out.push(match d.timeout() {
            Some(t) => format!("draining={} ({t}s)", d.enabled()),
            None => format!("draining={}", d.enabled()),
        });
    }
    if let Some(s) = a.connection_settings() {
        out.push(format!("idle-timeout={}s", s.idle_timeout()));
    }
    if let Some(l) = a.access_log() {
        let mut log = format!("access-log={}", l.enabled());
        if let Some(b) = l.s3_bucket_name() {
            log.push_str(&format!(" s3://{b}/{}", l.s3_bucket_prefix().unwrap_or_default()));
        }
        if let Some(i) = l.emit_interval() {
            log.push_str(&format!(" every {i}m"));
        }
        out.push(log);
    }
    out.join(", ")
}

fn nlb_health(h: &Health) -> String {
    let path = h.path.as_deref().map(|p| format!("{p} ")).unwrap_or_default();
    let protocol = h.protocol.as_str();
    format!("{protocol}:{} {path}every {}s healthy {} unhealthy {}", h.port, h.interval, h.healthy, h.unhealthy)
}

fn targets(targets: &[(String, i32)]) -> String {
    format!("[{}]", targets.iter().map(|(id, port)| format!("{id}:{port}")).collect::<Vec<_>>().join(", "))
}

fn pairs(pairs: &[(String, String)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

fn tls(certificate: &Option<String>, policy: &Option<String>) -> String {
    let mut out = String::new();
    if let Some(c) = certificate {
        out.push_str(&format!(" certificate {c}"));
    }
    if let Some(p) = policy {
        out.push_str(&format!(" policy {p}"));
    }
    out
}

impl Action {
    /// The AWS operation.
    pub fn operation(&self) -> Op {
        match self {
            Self::CreateSecurityGroup { .. } => Ec2Op::CreateSecurityGroup.op(),
            Self::TagSecurityGroup { .. } => Ec2Op::CreateTags.op(),
            Self::AuthorizeIngress { .. } => Ec2Op::AuthorizeSecurityGroupIngress.op(),
            Self::RevokeIngress { .. } => Ec2Op::RevokeSecurityGroupIngress.op(),
            Self::AdmitGroup { .. } => Ec2Op::AuthorizeSecurityGroupIngress.op(),
            Self::DeleteSecurityGroup { .. } => Ec2Op::DeleteSecurityGroup.op(),
            Self::ElbCreate { .. } => ElbOp::CreateLoadBalancer.op(),
            Self::ElbAttachSubnets { .. } => ElbOp::AttachLoadBalancerToSubnets.op(),
            Self::ElbDetachSubnets { .. } => ElbOp::DetachLoadBalancerFromSubnets.op(),
            Self::ElbApplySecurityGroups { .. } => ElbOp::ApplySecurityGroupsToLoadBalancer.op(),
            Self::ElbDeleteListeners { .. } => ElbOp::DeleteLoadBalancerListeners.op(),
            Self::ElbCreateListeners { .. } => ElbOp::CreateLoadBalancerListeners.op(),
            Self::ElbAddTags { .. } => ElbOp::AddTags.op(),
            Self::ElbCreatePolicy { .. } => ElbOp::CreateLoadBalancerPolicy.op(),
            Self::ElbSetBackendPolicies { .. } => ElbOp::SetLoadBalancerPoliciesForBackendServer.op(),
            Self::ElbSetListenerPolicies { .. } => ElbOp::SetLoadBalancerPoliciesOfListener.op(),
            Self::ElbModifyAttributes { .. } => ElbOp::ModifyLoadBalancerAttributes.op(),
            Self::ElbConfigureHealthCheck { .. } => ElbOp::ConfigureHealthCheck.op(),
            Self::ElbDeregister { .. } => ElbOp::DeregisterInstancesFromLoadBalancer.op(),
            Self::ElbRegister { .. } => ElbOp::RegisterInstancesWithLoadBalancer.op(),
            Self::ElbDelete { .. } => ElbOp::DeleteLoadBalancer.op(),
            Self::NlbCreate { .. } => Elbv2Op::CreateLoadBalancer.op(),
            Self::NlbSetSecurityGroups { .. } => Elbv2Op::SetSecurityGroups.op(),
            Self::NlbCreateTargetGroup { .. } => Elbv2Op::CreateTargetGroup.op(),
            Self::NlbModifyHealthCheck { .. } => Elbv2Op::ModifyTargetGroup.op(),
            Self::NlbRegisterTargets { .. } => Elbv2Op::RegisterTargets.op(),
            Self::NlbDeregisterTargets { .. } => Elbv2Op::DeregisterTargets.op(),
            Self::NlbModifyTargetGroupAttributes { .. } => Elbv2Op::ModifyTargetGroupAttributes.op(),
            Self::NlbCreateListener { .. } => Elbv2Op::CreateListener.op(),
            Self::NlbModifyListener { .. } => Elbv2Op::ModifyListener.op(),
            Self::NlbDeleteListener { .. } => Elbv2Op::DeleteListener.op(),
            Self::NlbDeleteTargetGroup { .. } => Elbv2Op::DeleteTargetGroup.op(),
            Self::NlbModifyAttributes { .. } => Elbv2Op::ModifyLoadBalancerAttributes.op(),
            Self::NlbDelete { .. } => Elbv2Op::DeleteLoadBalancer.op(),
        }
    }

    /// What the action changes, and its parameters in short.
    fn target_and_detail(&self) -> (String, String) {
        match self {
            Self::CreateSecurityGroup { name, description, tags: t } => {
                (name.clone(), format!("\"{description}\" {}", tags(t)))
            }
            Self::TagSecurityGroup { group, tags: t } => (group.clone(), tags(t)),
            Self::AuthorizeIngress { group, rules } | Self::RevokeIngress { group, rules } => {
                (group.to_string(), rules.iter().map(rule).collect::<Vec<_>>().join("; "))
            }
            Self::AdmitGroup { group, from } => (group.clone(), format!("all from {from}")),
            Self::DeleteSecurityGroup { group } => (group.clone(), String::new()),
            Self::ElbCreate { name, internal, listeners, subnets, groups, tags: t } => (
                name.clone(),
                format!(
                    "{} listeners [{}] subnets [{}] groups [{}] {}",
                    if *internal { "internal" } else { "internet-facing" },
                    list(listeners),
                    subnets.join(", "),
                    list(groups),
                    tags(t)
                ),
            ),
            Self::ElbAttachSubnets { name, subnets } | Self::ElbDetachSubnets { name, subnets } => {
                (name.clone(), format!("[{}]", subnets.join(", ")))
            }
            Self::ElbApplySecurityGroups { name, groups } => (name.clone(), format!("[{}]", list(groups))),
            Self::ElbDeleteListeners { name, ports } => (name.clone(), format!("ports [{}]", list(ports))),
            Self::ElbCreateListeners { name, listeners } => (name.clone(), format!("[{}]", list(listeners))),
            Self::ElbAddTags { name, tags: t } => (name.clone(), tags(t)),
            Self::ElbCreatePolicy { name, policy, policy_type, attribute } => {
                (name.clone(), format!("{policy} ({policy_type}, {}={})", attribute.0, attribute.1))
            }
            Self::ElbSetBackendPolicies { name, instance_port, policies } => {
                (name.clone(), format!("instance port {instance_port}: [{}]", policies.join(", ")))
            }
            Self::ElbSetListenerPolicies { name, port, policies } => {
                (name.clone(), format!("port {port}: [{}]", policies.join(", ")))
            }
            Self::ElbModifyAttributes { name, attributes: a } => (name.clone(), attributes(a)),
            Self::ElbConfigureHealthCheck { name, check } => (name.clone(), health(check)),
            Self::ElbDeregister { name, instances } | Self::ElbRegister { name, instances } => {
                (name.clone(), format!("[{}]", instances.join(", ")))
            }
            Self::ElbDelete { name } => (name.clone(), String::new()),
            Self::NlbCreate { name, internal, subnets, groups, tags: t } => {
                let slots: Vec<String> = subnets
                    .iter()
                    .map(|s| match (&s.allocation, &s.private_ip) {
                        (Some(eip), _) => format!("{}({eip})", s.subnet),
                        (None, Some(ip)) => format!("{}({ip})", s.subnet),
                        (None, None) => s.subnet.clone(),
                    })
                    .collect();
                let groups = groups.as_ref().map_or_else(|| "none".to_string(), |g| list(g));
                (
                    name.clone(),
                    format!(
                        "{} subnets [{}] groups [{groups}] {}",
                        if *internal { "internal" } else { "internet-facing" },
                        slots.join(", "),
                        tags(t)
                    ),
                )
            }
            Self::NlbSetSecurityGroups { load_balancer, groups } => {
                (load_balancer.clone(), format!("[{}]", list(groups)))
            }
            Self::NlbCreateTargetGroup { name, protocol, port, health: h, tags: t } => {
                (name.clone(), format!("{}:{port} health {} {}", protocol.as_str(), nlb_health(h), tags(t)))
            }
            Self::NlbModifyHealthCheck { target_group, health: h } => (target_group.clone(), nlb_health(h)),
            Self::NlbRegisterTargets { target_group, targets } => (target_group.to_string(), self::targets(targets)),
            Self::NlbDeregisterTargets { target_group, targets } => (target_group.clone(), self::targets(targets)),
            Self::NlbModifyTargetGroupAttributes { target_group, attributes }
            | Self::NlbModifyAttributes { load_balancer: target_group, attributes } => {
                (target_group.to_string(), pairs(attributes))
            }
            Self::NlbCreateListener {
                load_balancer, port, protocol, target_group, certificate, ssl_policy, ..
            } => (
                load_balancer.to_string(),
                format!("{}:{port} -> {target_group}{}", protocol.as_str(), tls(certificate, ssl_policy)),
            ),
            Self::NlbModifyListener { listener, target_group, certificate, ssl_policy } => {
                (listener.clone(), format!("-> {target_group}{}", tls(certificate, ssl_policy)))
            }
            Self::NlbDeleteListener { listener } => (listener.clone(), String::new()),
            Self::NlbDeleteTargetGroup { target_group } => (target_group.clone(), String::new()),
            Self::NlbDelete { load_balancer } => (load_balancer.clone(), String::new()),
        }
    }
}

impl From<&Change> for PlannedChange {
    fn from(change: &Change) -> Self {
        let (target, detail) = change.action.target_and_detail();
        Self { operation: change.action.operation().name.to_string(), target, detail, reason: change.reason.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_prints_its_operation_target_parameters_and_reason() {
        let change = Change::new(
            Action::AuthorizeIngress {
                group: GroupRef::New("k8s-elb-a1".into()),
                rules: vec![Rule::tcp(80, Source::Cidr("0.0.0.0/0".into()))],
            },
            "port 80 is open to 0.0.0.0/0",
        );
        assert_eq!(
            PlannedChange::from(&change).to_string(),
            "aws/ec2.AuthorizeSecurityGroupIngress (new k8s-elb-a1) tcp/80 from 0.0.0.0/0  # port 80 is open to 0.0.0.0/0"
        );
    }
}
