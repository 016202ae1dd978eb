//! Table tests of the NLB planner: desired + observed → exact plan, and for every Service shape,
//! "apply the plan to what AWS has, plan again → nothing to do".

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{SecurityGroup, Tag as Ec2Tag};
use aws_sdk_elasticloadbalancingv2::types::{
    Action as V2Action, AvailabilityZone, Certificate, Listener, LoadBalancer, TargetGroup,
};
use cloud_provider::{Protocol, ServiceInfo, ServicePort, TrafficPolicy};

use super::plan::{self, Desired, Observed};
use crate::load_balancers::plan::{Action, ArnRef, Change, GroupRef};
use crate::load_balancers::plan_fixtures::{
    A, CERT, NODE_GROUP, cluster, config, node_group, operations, own_group_after,
};
use crate::load_balancers::security_groups::{Rule, Source, ingress};
use crate::load_balancers::service_config::LbConfig;
use crate::load_balancers::{AwsLoadBalancers, Settings, names};
use crate::tags::ClusterTags;

const BACKEND: &str = "sg-backend";

fn service(annotations: &[(String, String)], udp: bool) -> ServiceInfo {
    let mut annotations: BTreeMap<String, String> = annotations.iter().cloned().collect();
    annotations.insert(format!("{A}type"), "nlb".into());
    // Upstream refuses mixed protocols: UDP Services have UDP ports only.
    let ports = if udp {
        vec![ServicePort { name: Some("dns".into()), protocol: Protocol::Udp, port: 53, node_port: 30053 }]
    } else {
        vec![
            ServicePort { name: Some("https".into()), protocol: Protocol::Tcp, port: 443, node_port: 30443 },
            ServicePort { name: Some("http".into()), protocol: Protocol::Tcp, port: 80, node_port: 30080 },
        ]
    };
    ServiceInfo {
        namespace: "default".into(),
        name: "web".into(),
        uid: "u".into(),
        annotations,
        ports,
        ..Default::default()
    }
}

fn desired<'a>(cfg: &'a LbConfig, settings: &'a Settings, cluster: &'a ClusterTags) -> Desired<'a> {
    let mappings = AwsLoadBalancers::mappings(cfg, settings);
    let tg_names = mappings.iter().map(|m| AwsLoadBalancers::target_group_name(&cluster.cluster_id, cfg, m)).collect();
    let mut tags = cluster.owned();
    tags.push(("kubernetes.io/service-name".into(), cfg.service_key()));
    Desired {
        cfg,
        settings,
        cluster,
        tags,
        mappings,
        tg_names,
        group_name: names::nlb_security_group_name("kubernetes", &cfg.namespace, &cfg.name, &cfg.uid),
    }
}

/// A cluster with two target instances in two subnets and nothing made for the Service yet.
fn empty() -> Observed {
    Observed {
        subnets: vec!["subnet-a".into(), "subnet-b".into()],
        subnet_cidrs: vec!["10.0.1.0/24".into(), "10.0.2.0/24".into()],
        instances: vec!["i-1".into(), "i-2".into()],
        node_groups: vec![node_group()],
        cluster_groups: vec![node_group()],
        ..Default::default()
    }
}

fn with_rules(o: &mut Observed, id: &str, change: impl Fn(&mut Vec<Rule>)) {
    let groups = o.own_group.iter_mut().chain(&mut o.backend_group).chain(&mut o.node_groups);
    for g in groups.chain(o.cluster_groups.iter_mut()) {
        if g.group_id() == Some(id) {
            let mut rules = ingress(g);
            change(&mut rules);
            g.ip_permissions = Some(rules.iter().map(Rule::to_permission).collect());
        }
    }
}

/// What AWS would hold after `plan`: the in-memory effect of each action on `o`.
fn simulate(mut o: Observed, plan: &[Change]) -> Observed {
    let group_id = |g: &GroupRef| match g {
        GroupRef::Id(id) => id.clone(),
        GroupRef::New(name) if name.starts_with("k8s-nlb-backend-") => BACKEND.to_string(),
        GroupRef::New(_) => "sg-own".to_string(),
    };
    let tg_arn = |t: &ArnRef| match t {
        ArnRef::Arn(arn) => arn.clone(),
        ArnRef::New(name) => format!("arn:tg/{name}"),
    };
    for change in plan {
        match &change.action {
            Action::CreateSecurityGroup { name, tags, .. } if name.starts_with("k8s-nlb-backend-") => {
                let tags = tags.iter().map(|(k, v)| Ec2Tag::builder().key(k).value(v).build());
                o.backend_group = Some(
                    SecurityGroup::builder().group_id(BACKEND).group_name(name).set_tags(Some(tags.collect())).build(),
                )
            }
            Action::AdmitGroup { group, from } => {
                let rule = Rule::all_from_group(&group_id(from));
                with_rules(&mut o, group, |r| r.push(rule.clone()))
            }
            Action::CreateSecurityGroup { .. } | Action::TagSecurityGroup { .. } => {
                own_group_after(&mut o.own_group, change)
            }
            Action::AuthorizeIngress { group, rules } => {
                with_rules(&mut o, &group_id(group), |r| r.extend(rules.iter().cloned()))
            }
            Action::RevokeIngress { group, rules } => with_rules(&mut o, &group_id(group), |r| {
                r.retain(|x| !rules.iter().any(|y| y.identity() == x.identity()))
            }),
            Action::NlbCreate { name, subnets, groups, .. } => {
                let zones = subnets.iter().map(|s| AvailabilityZone::builder().subnet_id(&s.subnet).build()).collect();
                o.lb = Some(
                    LoadBalancer::builder()
                        .load_balancer_arn("arn:lb")
                        .load_balancer_name(name)
                        .dns_name("lb.example")
                        .set_availability_zones(Some(zones))
                        .set_security_groups(groups.as_ref().map(|g| g.iter().map(group_id).collect()))
                        .build(),
                );
            }
            Action::NlbSetSecurityGroups { groups, .. } => {
                o.lb.as_mut().unwrap().security_groups = Some(groups.iter().map(group_id).collect());
            }
            Action::NlbCreateTargetGroup { name, protocol, port, health, .. } => o.target_groups.push(
                TargetGroup::builder()
                    .target_group_arn(format!("arn:tg/{name}"))
                    .target_group_name(name)
                    .protocol(protocol.clone())
                    .port(*port)
                    .health_check_port(health.port.to_string())
                    .set_health_check_path(health.path.clone())
                    .healthy_threshold_count(health.healthy)
                    .unhealthy_threshold_count(health.unhealthy)
                    .build(),
            ),
            Action::NlbModifyHealthCheck { target_group, health } => {
                let tg =
                    o.target_groups.iter_mut().find(|g| g.target_group_arn() == Some(target_group.as_str())).unwrap();
                tg.health_check_port = Some(health.port.to_string());
                tg.health_check_path.clone_from(&health.path);
                tg.healthy_threshold_count = Some(health.healthy);
                tg.unhealthy_threshold_count = Some(health.unhealthy);
            }
            Action::NlbRegisterTargets { target_group, targets } => {
                o.targets.entry(tg_arn(target_group)).or_default().extend(targets.iter().cloned());
            }
            Action::NlbDeregisterTargets { target_group, targets } => {
                o.targets.entry(target_group.clone()).or_default().retain(|t| !targets.contains(t));
            }
            Action::NlbModifyTargetGroupAttributes { target_group, attributes } => {
                o.tg_attributes.entry(tg_arn(target_group)).or_default().extend(attributes.iter().cloned());
            }
            Action::NlbCreateListener { port, protocol, target_group, certificate, ssl_policy, .. } => {
                o.listeners.push(
                    Listener::builder()
                        .listener_arn(format!("arn:listener/{port}"))
                        .port(*port)
                        .protocol(protocol.clone())
                        .default_actions(V2Action::builder().target_group_arn(tg_arn(target_group)).build())
                        .set_certificates(
                            certificate.as_ref().map(|c| vec![Certificate::builder().certificate_arn(c).build()]),
                        )
                        .set_ssl_policy(ssl_policy.clone())
                        .build(),
                )
            }
            Action::NlbModifyListener { listener, target_group, certificate, ssl_policy } => {
                let l = o.listeners.iter_mut().find(|l| l.listener_arn() == Some(listener.as_str())).unwrap();
                l.default_actions = Some(vec![V2Action::builder().target_group_arn(tg_arn(target_group)).build()]);
                l.certificates = certificate.as_ref().map(|c| vec![Certificate::builder().certificate_arn(c).build()]);
                l.ssl_policy.clone_from(ssl_policy);
            }
            Action::NlbDeleteListener { listener } => {
                o.listeners.retain(|l| l.listener_arn() != Some(listener.as_str()))
            }
            Action::NlbDeleteTargetGroup { target_group } => {
                o.target_groups.retain(|g| g.target_group_arn() != Some(target_group.as_str()));
                o.targets.remove(target_group);
            }
            Action::NlbModifyAttributes { attributes, .. } => o.attributes.extend(attributes.iter().cloned()),
            other => panic!("not in an NLB ensure: {other:?}"),
        }
    }
    o
}

type Shape = (&'static str, Vec<(String, String)>, bool, Settings);

fn corpus() -> Vec<Shape> {
    let a = |k: &str, v: &str| (format!("{A}{k}"), v.to_string());
    let plain = Settings::default();
    let managed = Settings { nlb_security_groups_managed: true, ..Default::default() };
    let probe = Settings {
        shared_health_probe: true,
        shared_probe_port: 10256,
        shared_probe_path: "/healthz".into(),
        ..Default::default()
    };
    let no_ingress = Settings { disable_security_group_ingress: true, ..Default::default() };
    let backend = Settings { nlb_backend_group: true, ..managed.clone() };
    let ranges = ("service.beta.kubernetes.io/load-balancer-source-ranges".to_string(), "10.0.0.0/8".to_string());
    vec![
        ("defaults", vec![], false, plain.clone()),
        ("udp", vec![], true, plain.clone()),
        ("internal", vec![a("internal", "true")], false, plain.clone()),
        ("tls", vec![a("ssl-cert", CERT), a("ssl-ports", "443")], false, plain.clone()),
        ("tls to tls", vec![a("ssl-cert", CERT), a("backend-protocol", "ssl")], false, plain.clone()),
        (
            "policy",
            vec![a("ssl-cert", CERT), a("ssl-negotiation-policy", "ELBSecurityPolicy-TLS13-1-2-2021-06")],
            false,
            plain.clone(),
        ),
        (
            "health",
            vec![
                a("healthcheck-protocol", "HTTP"),
                a("healthcheck-path", "/ready"),
                a("healthcheck-port", "8080"),
                a("healthcheck-interval", "10"),
                a("healthcheck-healthy-threshold", "4"),
                a("healthcheck-unhealthy-threshold", "5"),
            ],
            false,
            plain.clone(),
        ),
        ("source ranges", vec![ranges.clone()], true, plain.clone()),
        (
            "tg attributes",
            vec![a("target-group-attributes", "preserve_client_ip.enabled=false,proxy_protocol_v2.enabled=true")],
            false,
            plain.clone(),
        ),
        (
            "access log",
            vec![
                a("access-log-enabled", "true"),
                a("access-log-s3-bucket-name", "logs"),
                a("access-log-s3-bucket-prefix", "p"),
            ],
            false,
            plain.clone(),
        ),
        ("cross zone", vec![a("cross-zone-load-balancing-enabled", "true")], false, plain.clone()),
        ("eips", vec![a("eip-allocations", "eipalloc-1,eipalloc-2")], false, plain.clone()),
        ("managed group", vec![ranges.clone()], false, managed.clone()),
        ("backend group", vec![ranges], false, backend.clone()),
        ("backend group, udp", vec![], true, backend),
        ("given group", vec![a("security-groups", "sg-given")], false, managed),
        ("shared probe", vec![], false, probe),
        ("no node rules", vec![], false, no_ingress),
    ]
}

#[test]
fn every_service_shape_settles_in_one_plan() {
    let cluster = cluster();
    for (what, annotations, udp, settings) in corpus() {
        let cfg = config(&service(&annotations, udp));
        let d = desired(&cfg, &settings, &cluster);
        let first = plan::ensure(&d, &empty()).unwrap();
        assert!(!first.is_empty(), "{what}");
        let second = plan::ensure(&d, &simulate(empty(), &first)).unwrap();
        assert!(second.is_empty(), "{what}: still planned after applying: {second:#?}");
    }
}

#[test]
fn a_new_service_gets_its_nlb_then_per_port_group_targets_listener_then_node_rules() {
    let cluster = cluster();
    let settings = Settings::default();
    let cfg = config(&service(&[], false));
    let plan = plan::ensure(&desired(&cfg, &settings, &cluster), &empty()).unwrap();
    assert_eq!(
        operations(&plan),
        [
            "elbv2.CreateLoadBalancer",
            "elbv2.CreateTargetGroup",
            "elbv2.RegisterTargets",
            "elbv2.CreateListener",
            "elbv2.CreateTargetGroup",
            "elbv2.RegisterTargets",
            "elbv2.CreateListener",
            "ec2.AuthorizeSecurityGroupIngress",
        ]
    );
    let Action::NlbRegisterTargets { targets, .. } = &plan[2].action else { panic!() };
    assert_eq!(targets, &[("i-1".to_string(), 30443), ("i-2".to_string(), 30443)]);
    // Client rules from everywhere cover the traffic-port health checks: no subnet rules.
    let Action::AuthorizeIngress { group, rules } = &plan[7].action else { panic!() };
    assert_eq!(group, &GroupRef::Id(NODE_GROUP.into()));
    let described: Vec<String> = rules.iter().map(|r| format!("{}/{} {:?}", r.protocol, r.from, r.source)).collect();
    assert_eq!(
        described,
        ["tcp/30443 Cidr(\"0.0.0.0/0\")", "tcp/30080 Cidr(\"0.0.0.0/0\")", "icmp/3 Cidr(\"0.0.0.0/0\")"]
    );
}

#[test]
fn a_port_change_replaces_the_listener_target_and_group() {
    let cluster = cluster();
    let settings = Settings::default();
    let before = config(&service(&[], false));
    let settled = simulate(empty(), &plan::ensure(&desired(&before, &settings, &cluster), &empty()).unwrap());
    let mut s = service(&[], false);
    s.ports[1].node_port = 31080;
    let cfg = config(&s);
    let plan = plan::ensure(&desired(&cfg, &settings, &cluster), &settled).unwrap();
    assert_eq!(
        operations(&plan),
        [
            "elbv2.CreateTargetGroup",
            "elbv2.RegisterTargets",
            "elbv2.ModifyListener",
            "elbv2.DeleteTargetGroup",
            "ec2.RevokeSecurityGroupIngress",
            "ec2.AuthorizeSecurityGroupIngress",
        ],
        "{plan:#?}"
    );
}

#[test]
fn rules_of_this_nlb_leave_a_cluster_group_no_target_uses_and_others_rules_stay() {
    let cluster = cluster();
    let settings = Settings::default();
    let cfg = config(&service(&[], false));
    let d = desired(&cfg, &settings, &cluster);
    let mut o = simulate(empty(), &plan::ensure(&d, &empty()).unwrap());
    // The targets moved to another cluster group; someone else's rule sits in the old one.
    with_rules(&mut o, NODE_GROUP, |r| r.push(Rule::tcp(22, Source::Cidr("10.0.0.0/8".into()))));
    o.node_groups = vec![SecurityGroup::builder().group_id("sg-new").build()];
    let plan = plan::ensure(&d, &o).unwrap();
    // sg-new gets the rules; sg-node loses this NLB's client rules, and only those.
    assert_eq!(operations(&plan), ["ec2.AuthorizeSecurityGroupIngress", "ec2.RevokeSecurityGroupIngress"]);
    assert!(matches!(&plan[0].action, Action::AuthorizeIngress { group: GroupRef::Id(g), .. } if g == "sg-new"));
    let Action::RevokeIngress { group, rules } = &plan[1].action else { panic!("{plan:#?}") };
    assert_eq!(group, &GroupRef::Id(NODE_GROUP.into()));
    let name = names::load_balancer_name("u");
    assert!(rules.iter().all(|r| r.description == Some(names::nlb_client_rule(&name))), "{rules:?}");
    assert_eq!(rules.len(), 2);
}

#[test]
fn local_traffic_and_narrow_ranges_add_health_rules_from_the_subnets() {
    let cluster = cluster();
    let settings = Settings::default();
    let mut s =
        service(&[("service.beta.kubernetes.io/load-balancer-source-ranges".into(), "10.0.0.0/8".into())], false);
    s.external_traffic_policy = TrafficPolicy::Local;
    s.health_check_node_port = Some(32000);
    let cfg = config(&s);
    let d = desired(&cfg, &settings, &cluster);
    assert!(plan::needs_subnet_cidrs(&d));
    let plan = plan::ensure(&d, &empty()).unwrap();
    let rules: Vec<Rule> = plan
        .iter()
        .flat_map(|c| match &c.action {
            Action::AuthorizeIngress { rules, .. } => rules.clone(),
            _ => Vec::new(),
        })
        .collect();
    let health: Vec<(i32, Source)> = rules
        .iter()
        .filter(|r| r.description.as_deref().is_some_and(|d| d.contains("health")))
        .map(|r| (r.from, r.source.clone()))
        .collect();
    assert_eq!(health, [(32000, Source::Cidr("10.0.1.0/24".into())), (32000, Source::Cidr("10.0.2.0/24".into()))]);
}

#[test]
fn eips_must_match_the_subnets_before_anything_is_made() {
    let cluster = cluster();
    let settings = Settings::default();
    let cfg = config(&service(&[(format!("{A}eip-allocations"), "eipalloc-1".into())], false));
    let err = plan::ensure(&desired(&cfg, &settings, &cluster), &empty()).unwrap_err();
    assert!(err.to_string().contains("1 given for 2 subnets"), "{err}");
}

/// Filler rules another tool wrote on the Nodes' group (port 1000 + i from one address each).
fn filler(n: usize) -> impl Fn(&mut Vec<Rule>) {
    move |rules: &mut Vec<Rule>| {
        rules.extend((0..n).map(|i| Rule::tcp(1000 + i as u16, Source::Cidr(format!("192.0.2.{i}/32")))))
    }
}

#[test]
fn a_node_group_without_room_fails_the_service_before_anything_is_made() {
    let cluster = cluster();
    let settings = Settings::default();
    let cfg = config(&service(&[], false));
    // The NLB needs 3 rules on the Nodes' group: two client ports and the MTU rule.
    let mut o = empty();
    with_rules(&mut o, NODE_GROUP, filler(57));
    let plan = plan::ensure(&desired(&cfg, &settings, &cluster), &o).expect("57 + 3 fits in 60");
    assert_eq!(plan.len(), 8);
    let mut o = empty();
    with_rules(&mut o, NODE_GROUP, filler(58));
    let err = plan::ensure(&desired(&cfg, &settings, &cluster), &o).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&format!("{NODE_GROUP} has 58 inbound rules and this load balancer needs 3 more")),
        "{message}"
    );
    assert!(message.contains("quota of 60") && message.contains("SecurityGroupRuleQuota"), "{message}");
    assert_eq!(err.retry(), cloud_provider::Retry::After(crate::load_balancers::security_groups::QUOTA_RETRY));
    // A raised quota, configured, lets it through.
    let raised = Settings { rule_quota: 100, ..Default::default() };
    assert!(plan::ensure(&desired(&cfg, &raised, &cluster), &o).is_ok());
    // Rules this NLB already has do not count again: a settled NLB on a full group plans nothing.
    let settled = simulate(empty(), &plan);
    let mut full = settled.clone();
    with_rules(&mut full, NODE_GROUP, filler(57));
    assert_eq!(plan::ensure(&desired(&cfg, &settings, &cluster), &full).unwrap(), []);
}

#[test]
fn with_the_shared_backend_group_the_node_group_admits_it_once_for_every_nlb() {
    let cluster = cluster();
    let settings = Settings { nlb_security_groups_managed: true, nlb_backend_group: true, ..Default::default() };
    let cfg = config(&service(&[], false));
    let plan = plan::ensure(&desired(&cfg, &settings, &cluster), &empty()).unwrap();
    let ops = operations(&plan);
    assert_eq!(
        &ops[..4],
        [
            "ec2.CreateSecurityGroup",
            "ec2.AuthorizeSecurityGroupIngress",
            "ec2.CreateSecurityGroup",
            "elbv2.CreateLoadBalancer"
        ]
    );
    let Action::NlbCreate { groups: Some(groups), .. } = &plan[3].action else { panic!("{:?}", plan[3]) };
    assert_eq!(groups.len(), 2, "its own group and the shared backend group: {groups:?}");
    assert_eq!(groups[1], GroupRef::New("k8s-nlb-backend-c1".into()));
    // The Nodes' group gets one rule, "all from the backend group", and no per-port rules.
    let node_writes: Vec<&Change> = plan.iter().filter(|c| format!("{:?}", c.action).contains(NODE_GROUP)).collect();
    assert_eq!(node_writes.len(), 1, "{node_writes:?}");
    assert!(matches!(&node_writes[0].action, Action::AdmitGroup { from, .. } if *from == groups[1]));

    // A second NLB, once the first is settled, adds nothing to the Nodes' group.
    let settled = simulate(empty(), &plan);
    let mut second = empty();
    second.backend_group.clone_from(&settled.backend_group);
    second.node_groups.clone_from(&settled.node_groups);
    second.cluster_groups.clone_from(&settled.node_groups);
    let mut other = service(&[], false);
    other.name = "other".into();
    other.uid = "u2".into();
    let other_cfg = config(&other);
    let plan = plan::ensure(&desired(&other_cfg, &settings, &cluster), &second).unwrap();
    assert!(plan.iter().all(|c| !format!("{:?}", c.action).contains(NODE_GROUP)), "{plan:?}");
    let Some(Action::NlbCreate { groups: Some(groups), .. }) =
        plan.iter().map(|c| &c.action).find(|a| matches!(a, Action::NlbCreate { .. }))
    else {
        panic!("{plan:?}")
    };
    assert_eq!(groups[1], GroupRef::Id(BACKEND.into()), "the existing backend group is shared");
    // A node group already full of other rules still takes any number of NLBs.
    let mut full = second.clone();
    with_rules(&mut full, NODE_GROUP, filler(59));
    assert!(plan::ensure(&desired(&other_cfg, &settings, &cluster), &full).is_ok());
}
