//! Table tests of the Classic ELB planner: desired + observed → exact plan, and for every
//! Service shape, "apply the plan to what AWS has, plan again → nothing to do".

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{SecurityGroup, Tag as Ec2Tag};
use aws_sdk_elasticloadbalancing::types::{
    BackendServerDescription, ConnectionDraining, Instance as ElbInstance, ListenerDescription, LoadBalancerAttributes,
    LoadBalancerDescription, Policies,
};
use cloud_provider::{Protocol, ServiceInfo, ServicePort, TrafficPolicy};

use super::plan::{self, Desired, Observed};
use crate::load_balancers::Settings;
use crate::load_balancers::plan::{Action, Change, ClassicListener, GroupRef};
use crate::load_balancers::plan_fixtures::{
    A, CERT, NODE_GROUP, cluster, config, node_group, operations, own_group_after,
};
use crate::load_balancers::security_groups::{Rule, Source, ingress};
use crate::load_balancers::service_config::LbConfig;
use crate::tags::ClusterTags;

const LB: &str = "au";

fn service(annotations: &[(&str, &str)]) -> ServiceInfo {
    ServiceInfo {
        namespace: "default".into(),
        name: "web".into(),
        uid: "u".into(),
        annotations: annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ports: vec![
            ServicePort { name: Some("https".into()), protocol: Protocol::Tcp, port: 443, node_port: 30443 },
            ServicePort { name: Some("http".into()), protocol: Protocol::Tcp, port: 80, node_port: 30080 },
        ],
        ..Default::default()
    }
}

/// A cluster with two target instances and nothing made for the Service yet.
fn empty() -> Observed {
    Observed {
        subnets: vec!["subnet-a".into(), "subnet-b".into()],
        instances: vec!["i-1".into(), "i-2".into()],
        node_groups: vec![node_group()],
        ..Default::default()
    }
}

fn desired<'a>(cfg: &'a LbConfig, settings: &'a Settings, cluster: &'a ClusterTags) -> Desired<'a> {
    let mut tags = cluster.owned();
    tags.push(("kubernetes.io/service-name".into(), cfg.service_key()));
    tags.extend(cfg.additional_tags.iter().map(|(k, v)| (k.clone(), v.clone())));
    Desired { cfg, settings, cluster, tags }
}

/// What AWS would hold after `plan`: the in-memory effect of each action on `o`.
fn simulate(mut o: Observed, plan: &[Change]) -> Observed {
    let mut new_groups: BTreeMap<String, String> = BTreeMap::new();
    let resolve = |g: &GroupRef, new: &BTreeMap<String, String>| match g {
        GroupRef::Id(id) => id.clone(),
        GroupRef::New(name) => new[name].clone(),
    };
    let set_rules = |group: &mut SecurityGroup, rules: Vec<Rule>| {
        group.ip_permissions = Some(rules.iter().map(Rule::to_permission).collect());
    };
    for change in plan {
        let mut lb = o.lb.clone().unwrap_or_else(|| LoadBalancerDescription::builder().build());
        match &change.action {
            Action::CreateSecurityGroup { name, .. } => {
                new_groups.insert(name.clone(), "sg-own".into());
                own_group_after(&mut o.own_group, change);
            }
            Action::TagSecurityGroup { .. } => own_group_after(&mut o.own_group, change),
            Action::AuthorizeIngress { group, rules } => {
                let id = resolve(group, &new_groups);
                let g = o.own_group.as_mut().filter(|g| g.group_id() == Some(id.as_str())).unwrap();
                let mut all = ingress(g);
                all.extend(rules.iter().cloned());
                set_rules(g, all);
            }
            Action::RevokeIngress { group, rules } => {
                let id = resolve(group, &new_groups);
                let keep = |r: &Rule| !rules.iter().any(|x| x.identity() == r.identity());
                for g in o.own_group.iter_mut().chain(o.node_groups.iter_mut()).chain(o.referencing.iter_mut()) {
                    if g.group_id() == Some(id.as_str()) {
                        let left = ingress(g).into_iter().filter(keep).collect();
                        set_rules(g, left);
                    }
                }
            }
            Action::AdmitGroup { group, from } => {
                let rule = Rule::all_from_group(&resolve(from, &new_groups));
                let g = o.node_groups.iter_mut().find(|g| g.group_id() == Some(group.as_str())).unwrap();
                let mut all = ingress(g);
                all.push(rule);
                set_rules(g, all);
            }
            Action::ElbCreate { listeners, subnets, groups, tags, .. } => {
                lb = LoadBalancerDescription::builder()
                    .load_balancer_name(LB)
                    .dns_name("au.elb.example")
                    .set_listener_descriptions(Some(listeners.iter().map(description).collect()))
                    .set_subnets(Some(subnets.clone()))
                    .set_security_groups(Some(groups.iter().map(|g| resolve(g, &new_groups)).collect()))
                    .build();
                o.tags = tags.clone();
                // A new ELB starts with AWS's attributes.
                o.attributes = Some(plan::aws_default_attributes());
            }
            Action::ElbAttachSubnets { subnets, .. } => {
                lb.subnets.get_or_insert_default().extend(subnets.iter().cloned())
            }
            Action::ElbDetachSubnets { subnets, .. } => {
                lb.subnets.get_or_insert_default().retain(|s| !subnets.contains(s))
            }
            Action::ElbApplySecurityGroups { groups, .. } => {
                lb.security_groups = Some(groups.iter().map(|g| resolve(g, &new_groups)).collect());
            }
            Action::ElbDeleteListeners { ports, .. } => lb
                .listener_descriptions
                .get_or_insert_default()
                .retain(|d| !ports.contains(&d.listener().unwrap().load_balancer_port())),
            Action::ElbCreateListeners { listeners, .. } => {
                lb.listener_descriptions.get_or_insert_default().extend(listeners.iter().map(description));
            }
            Action::ElbAddTags { tags, .. } => o.tags.extend(tags.iter().cloned()),
            Action::ElbCreatePolicy { policy, .. } => {
                let policies = lb.policies.get_or_insert_with(|| Policies::builder().build());
                policies.other_policies.get_or_insert_default().push(policy.clone());
            }
            Action::ElbSetBackendPolicies { instance_port, policies, .. } => {
                let all = lb.backend_server_descriptions.get_or_insert_default();
                all.retain(|b| b.instance_port() != Some(*instance_port));
                all.push(
                    BackendServerDescription::builder()
                        .instance_port(*instance_port)
                        .set_policy_names(Some(policies.clone()))
                        .build(),
                );
            }
            Action::ElbSetListenerPolicies { port, policies, .. } => {
                for d in lb.listener_descriptions.get_or_insert_default() {
                    if d.listener().unwrap().load_balancer_port() == *port {
                        d.policy_names = Some(policies.clone());
                    }
                }
            }
            Action::ElbModifyAttributes { attributes, .. } => {
                // AWS keeps a draining timeout that is not sent.
                let old = o.attributes.clone().unwrap_or_else(plan::aws_default_attributes);
                let mut new: LoadBalancerAttributes = attributes.clone();
                if let Some(d) = new.connection_draining.as_mut()
                    && d.timeout.is_none()
                {
                    d.timeout = old.connection_draining().and_then(ConnectionDraining::timeout);
                }
                o.attributes = Some(new);
            }
            Action::ElbConfigureHealthCheck { check, .. } => lb.health_check = Some(check.clone()),
            Action::ElbRegister { instances, .. } => lb
                .instances
                .get_or_insert_default()
                .extend(instances.iter().map(|i| ElbInstance::builder().instance_id(i).build())),
            Action::ElbDeregister { instances, .. } => lb
                .instances
                .get_or_insert_default()
                .retain(|i| !instances.iter().any(|x| Some(x.as_str()) == i.instance_id())),
            other => panic!("not in a Classic ELB ensure: {other:?}"),
        }
        if o.lb.is_some() || matches!(change.action, Action::ElbCreate { .. }) {
            o.lb = Some(lb);
        }
    }
    o
}

fn description(l: &ClassicListener) -> ListenerDescription {
    ListenerDescription::builder().listener(l.to_sdk()).build()
}

/// Service shapes the planner must settle: each is applied to an empty cluster, then planned
/// again.
type Shape = (&'static str, Vec<(String, String)>, Settings);

fn corpus() -> Vec<Shape> {
    let a = |k: &str| format!("{A}{k}");
    let plain = Settings::default();
    let shared_sg = Settings { elb_security_group: Some("sg-shared".into()), ..Default::default() };
    let probe = Settings {
        shared_health_probe: true,
        shared_probe_port: 10256,
        shared_probe_path: "/healthz".into(),
        ..Default::default()
    };
    let no_ingress = Settings { disable_security_group_ingress: true, ..Default::default() };
    vec![
        ("defaults", vec![], plain.clone()),
        ("internal", vec![(a("internal"), "true".into())], plain.clone()),
        (
            "tls and http backend",
            vec![
                (a("ssl-cert"), CERT.into()),
                (a("ssl-ports"), "https".into()),
                (a("backend-protocol"), "http".into()),
            ],
            plain.clone(),
        ),
        ("ssl backend", vec![(a("ssl-cert"), CERT.into()), (a("backend-protocol"), "ssl".into())], plain.clone()),
        (
            "negotiation policy",
            vec![
                (a("ssl-cert"), CERT.into()),
                (a("ssl-negotiation-policy"), "ELBSecurityPolicy-TLS-1-2-2017-01".into()),
            ],
            plain.clone(),
        ),
        ("proxy protocol", vec![(a("proxy-protocol"), "*".into())], plain.clone()),
        (
            "access log",
            vec![
                (a("access-log-enabled"), "true".into()),
                (a("access-log-s3-bucket-name"), "logs".into()),
                (a("access-log-s3-bucket-prefix"), "p".into()),
                (a("access-log-emit-interval"), "5".into()),
            ],
            plain.clone(),
        ),
        (
            "draining",
            vec![(a("connection-draining-enabled"), "true".into()), (a("connection-draining-timeout"), "30".into())],
            plain.clone(),
        ),
        ("draining without timeout", vec![(a("connection-draining-enabled"), "true".into())], plain.clone()),
        (
            "idle and cross-zone",
            vec![(a("connection-idle-timeout"), "120".into()), (a("cross-zone-load-balancing-enabled"), "true".into())],
            plain.clone(),
        ),
        (
            "health overrides",
            vec![
                (a("healthcheck-protocol"), "HTTP".into()),
                (a("healthcheck-path"), "/ready".into()),
                (a("healthcheck-port"), "8080".into()),
                (a("healthcheck-interval"), "30".into()),
                (a("healthcheck-timeout"), "10".into()),
                (a("healthcheck-healthy-threshold"), "3".into()),
                (a("healthcheck-unhealthy-threshold"), "4".into()),
            ],
            plain.clone(),
        ),
        (
            "source ranges",
            vec![("service.beta.kubernetes.io/load-balancer-source-ranges".into(), "10.0.0.0/8,192.168.0.0/16".into())],
            plain.clone(),
        ),
        ("extra groups", vec![(a("extra-security-groups"), "sg-x1,sg-x2".into())], plain.clone()),
        ("given groups", vec![(a("security-groups"), "sg-given".into())], plain.clone()),
        ("additional tags", vec![(a("additional-resource-tags"), "team=web,env=prod".into())], plain.clone()),
        ("ElbSecurityGroup", vec![], shared_sg),
        ("shared health probe", vec![], probe),
        ("no node rules", vec![], no_ingress),
    ]
}

#[test]
fn a_new_service_gets_group_rules_elb_health_check_node_rule_and_instances_in_that_order() {
    let s = service(&[]);
    let cfg = config(&s);
    let (settings, cluster) = (Settings::default(), cluster());
    let plan = plan::ensure(&desired(&cfg, &settings, &cluster), &empty()).unwrap();
    assert_eq!(
        operations(&plan),
        [
            "ec2.CreateSecurityGroup",
            "ec2.AuthorizeSecurityGroupIngress",
            "elb.CreateLoadBalancer",
            "elb.ConfigureHealthCheck",
            "ec2.AuthorizeSecurityGroupIngress",
            "elb.RegisterInstancesWithLoadBalancer",
        ]
    );
    let own = GroupRef::New(format!("k8s-elb-{}", crate::load_balancers::names::load_balancer_name("u")));
    let Action::ElbCreate { groups, subnets, listeners, internal, .. } = &plan[2].action else { panic!() };
    assert_eq!((groups.as_slice(), subnets.len(), *internal), (std::slice::from_ref(&own), 2, false));
    assert_eq!(
        listeners.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["TCP:443->TCP:30443", "TCP:80->TCP:30080"]
    );
    let Action::AuthorizeIngress { rules, .. } = &plan[1].action else { panic!() };
    let everyone = Source::Cidr("0.0.0.0/0".into());
    assert_eq!(rules, &[Rule::tcp(443, everyone.clone()), Rule::tcp(80, everyone.clone()), Rule::icmp_mtu(everyone)]);
    assert_eq!(plan[4].action, Action::AdmitGroup { group: NODE_GROUP.into(), from: own });
    assert_eq!(
        plan[5].action,
        Action::ElbRegister {
            name: crate::load_balancers::names::load_balancer_name("u"),
            instances: vec!["i-1".into(), "i-2".into()]
        }
    );
}

#[test]
fn every_service_shape_settles_in_one_plan() {
    let cluster = cluster();
    for (what, annotations, settings) in corpus() {
        let pairs: Vec<(&str, &str)> = annotations.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let s = service(&pairs);
        let cfg = config(&s);
        let d = desired(&cfg, &settings, &cluster);
        let first = plan::ensure(&d, &empty()).unwrap();
        assert!(!first.is_empty(), "{what}");
        let after = simulate(empty(), &first);
        let second = plan::ensure(&d, &after).unwrap();
        assert!(second.is_empty(), "{what}: still planned after applying: {second:#?}");
        // With the ELB there, a change of the Nodes only plans nothing either.
        assert!(plan::hosts(&d, &after).is_empty(), "{what}");
    }
}

#[test]
fn an_edited_annotation_plans_only_what_it_changes() {
    let cluster = cluster();
    let settings = Settings::default();
    let before = config(&service(&[]));
    let settled = simulate(empty(), &plan::ensure(&desired(&before, &settings, &cluster), &empty()).unwrap());

    let idle = config(&service(&[("service.beta.kubernetes.io/aws-load-balancer-connection-idle-timeout", "300")]));
    let plan = plan::ensure(&desired(&idle, &settings, &cluster), &settled).unwrap();
    assert_eq!(operations(&plan), ["elb.ModifyLoadBalancerAttributes"]);

    let mut one_port = service(&[]);
    one_port.ports.remove(0);
    let plan = plan::ensure(&desired(&config(&one_port), &settings, &cluster), &settled).unwrap();
    assert_eq!(
        operations(&plan),
        ["ec2.RevokeSecurityGroupIngress", "elb.DeleteLoadBalancerListeners", "elb.ConfigureHealthCheck"],
        "{plan:#?}"
    );
    let Action::ElbDeleteListeners { ports, .. } = &plan[1].action else { panic!() };
    assert_eq!(ports, &[443]);
}

#[test]
fn nodes_leaving_deregister_and_a_node_group_nobody_needs_loses_the_rule() {
    let cluster = cluster();
    let settings = Settings::default();
    let cfg = config(&service(&[]));
    let d = desired(&cfg, &settings, &cluster);
    let mut o = simulate(empty(), &plan::ensure(&d, &empty()).unwrap());
    o.instances = vec!["i-2".into()];
    // The only target's group is now another cluster group; the old one still has our rule.
    let old = o.node_groups.remove(0);
    o.referencing = vec![old];
    o.node_groups = vec![
        SecurityGroup::builder()
            .group_id("sg-other")
            .tags(Ec2Tag::builder().key("kubernetes.io/cluster/c1").value("shared").build())
            .build(),
    ];
    let plan = plan::hosts(&d, &o);
    assert_eq!(
        plan.iter().map(|c| c.action.clone()).collect::<Vec<_>>(),
        [
            Action::AdmitGroup { group: "sg-other".into(), from: GroupRef::Id("sg-own".into()) },
            Action::RevokeIngress {
                group: GroupRef::Id(NODE_GROUP.into()),
                rules: vec![Rule::all_from_group("sg-own")]
            },
            Action::ElbDeregister {
                name: crate::load_balancers::names::load_balancer_name("u"),
                instances: vec!["i-1".into()]
            },
        ]
    );
}

#[test]
fn a_group_given_by_the_user_is_never_revoked_from_a_node_group() {
    let cluster = cluster();
    let settings = Settings::default();
    let cfg = config(&service(&[("service.beta.kubernetes.io/aws-load-balancer-security-groups", "sg-given")]));
    let d = desired(&cfg, &settings, &cluster);
    let mut o = simulate(empty(), &plan::ensure(&d, &empty()).unwrap());
    let mut old_node_group = node_group();
    old_node_group.group_id = Some("sg-old-node".into());
    o.referencing = vec![old_node_group];
    assert!(plan::hosts(&d, &o).is_empty());
}

#[test]
fn a_group_of_another_cluster_with_our_name_is_refused_and_an_untagged_one_repaired() {
    let cluster = cluster();
    let settings = Settings::default();
    let cfg = config(&service(&[]));
    let d = desired(&cfg, &settings, &cluster);
    let mut o = empty();
    let name = format!("k8s-elb-{}", crate::load_balancers::names::load_balancer_name("u"));
    o.own_group = Some(
        SecurityGroup::builder()
            .group_id("sg-own")
            .group_name(&name)
            .tags(Ec2Tag::builder().key("kubernetes.io/cluster/other").value("owned").build())
            .build(),
    );
    let err = plan::ensure(&d, &o).unwrap_err();
    assert!(err.to_string().contains("belongs to another cluster"), "{err}");
    o.own_group = Some(SecurityGroup::builder().group_id("sg-own").group_name(&name).build());
    let plan = plan::ensure(&d, &o).unwrap();
    assert_eq!(plan[0].action, Action::TagSecurityGroup { group: "sg-own".into(), tags: cluster.owned() });
}

#[test]
fn deleting_revokes_only_our_rule_then_the_elb_then_its_group() {
    let name = crate::load_balancers::names::load_balancer_name("u");
    let ours = Rule::all_from_group("sg-own");
    let theirs = Rule::tcp(22, Source::Group("sg-own".into()));
    let with = |id: &str, rules: &[Rule]| {
        SecurityGroup::builder()
            .group_id(id)
            .set_ip_permissions(Some(rules.iter().map(Rule::to_permission).collect()))
            .build()
    };
    let observed = super::DeleteObserved {
        lb: Some(LoadBalancerDescription::builder().load_balancer_name(&name).build()),
        own: vec![with("sg-own", &[])],
        referencing: [(
            "sg-own".to_string(),
            vec![with("sg-node", std::slice::from_ref(&ours)), with("sg-user", &[theirs])],
        )]
        .into(),
    };
    let plan = super::plan_delete(&name, &observed);
    assert_eq!(
        plan.iter().map(|c| c.action.clone()).collect::<Vec<_>>(),
        [
            Action::RevokeIngress { group: GroupRef::Id("sg-node".into()), rules: vec![ours] },
            Action::ElbDelete { name },
            Action::DeleteSecurityGroup { group: "sg-own".into() },
        ]
    );
}

#[test]
fn unset_attribute_fields_are_not_compared() {
    // AWS fills in a draining timeout of 300 s by itself; a Service that names none writes nothing.
    let cluster = cluster();
    let settings = Settings::default();
    let cfg = config(&service(&[]));
    let d = desired(&cfg, &settings, &cluster);
    let mut o = simulate(empty(), &plan::ensure(&d, &empty()).unwrap());
    let mut attrs: LoadBalancerAttributes = o.attributes.clone().unwrap();
    attrs.connection_draining = Some(ConnectionDraining::builder().enabled(false).timeout(77).build());
    o.attributes = Some(attrs);
    assert!(plan::ensure(&d, &o).unwrap().is_empty());
}

#[test]
fn local_traffic_probes_the_health_check_node_port_and_settles() {
    let cluster = cluster();
    let settings = Settings::default();
    let mut s = service(&[]);
    s.external_traffic_policy = TrafficPolicy::Local;
    s.health_check_node_port = Some(32000);
    let cfg = config(&s);
    let d = desired(&cfg, &settings, &cluster);
    let first = plan::ensure(&d, &empty()).unwrap();
    let check = first.iter().find_map(|c| match &c.action {
        Action::ElbConfigureHealthCheck { check, .. } => Some(check.target().to_string()),
        _ => None,
    });
    assert_eq!(check.as_deref(), Some("HTTP:32000/healthz"));
    assert!(plan::ensure(&d, &simulate(empty(), &first)).unwrap().is_empty());
}

fn listener_config(annotations: &[(&str, &str)]) -> LbConfig {
    config(&service(annotations))
}

fn protocols(cfg: &LbConfig) -> Vec<(String, String, Option<String>)> {
    plan::listeners(cfg).into_iter().map(|l| (l.protocol, l.instance_protocol, l.certificate)).collect()
}

const SSL_CERT: &str = "service.beta.kubernetes.io/aws-load-balancer-ssl-cert";
const SSL_PORTS: &str = "service.beta.kubernetes.io/aws-load-balancer-ssl-ports";
const BACKEND: &str = "service.beta.kubernetes.io/aws-load-balancer-backend-protocol";

#[test]
fn listeners_follow_upstreams_protocol_table() {
    let tcp = ("TCP".to_string(), "TCP".to_string(), None);
    assert_eq!(protocols(&listener_config(&[])), [tcp.clone(), tcp.clone()]);
    let http = ("HTTP".to_string(), "HTTP".to_string(), None);
    assert_eq!(protocols(&listener_config(&[(BACKEND, "http")])), [http.clone(), http.clone()]);
    // A certificate on one port: SSL in front, TCP behind without a backend annotation.
    let ssl = ("SSL".to_string(), "TCP".to_string(), Some(CERT.to_string()));
    assert_eq!(protocols(&listener_config(&[(SSL_CERT, CERT), (SSL_PORTS, "443")])), [ssl, tcp.clone()]);
    // http/https backends make an HTTPS listener where the certificate applies.
    let https_http = ("HTTPS".to_string(), "HTTP".to_string(), Some(CERT.to_string()));
    assert_eq!(
        protocols(&listener_config(&[(SSL_CERT, CERT), (SSL_PORTS, "https"), (BACKEND, "http")])),
        [https_http, http]
    );
    let ssl_ssl = ("SSL".to_string(), "SSL".to_string(), Some(CERT.to_string()));
    assert_eq!(protocols(&listener_config(&[(SSL_CERT, CERT), (BACKEND, "ssl")])), [ssl_ssl.clone(), ssl_ssl]);
    // https backend without a certificate: plain TCP, as upstream.
    assert_eq!(protocols(&listener_config(&[(BACKEND, "https")])), [tcp.clone(), tcp]);
}

#[test]
fn a_node_group_without_room_fails_the_service_before_anything_is_made() {
    let cluster = cluster();
    let settings = Settings::default();
    let cfg = config(&service(&[]));
    let full = |n: usize| {
        let mut o = empty();
        let rules: Vec<Rule> =
            (0..n).map(|i| Rule::tcp(1000 + i as u16, Source::Cidr(format!("192.0.2.{i}/32")))).collect();
        o.node_groups[0].ip_permissions = Some(rules.iter().map(Rule::to_permission).collect());
        o
    };
    // A Classic ELB needs one rule on the Nodes' group: "all from its own group".
    assert!(plan::ensure(&desired(&cfg, &settings, &cluster), &full(59)).is_ok());
    let err = plan::ensure(&desired(&cfg, &settings, &cluster), &full(60)).unwrap_err();
    assert!(
        err.to_string().contains(&format!("{NODE_GROUP} has 60 inbound rules and this load balancer needs 1 more")),
        "{err}"
    );
    // Its own group counts too: per source range, a rule per port and the MTU rule (21 × 3).
    let ranges: Vec<String> = (0..21).map(|i| format!("10.{i}.0.0/16")).collect();
    let wide = config(&service(&[(crate::load_balancers::annotations::SOURCE_RANGES, ranges.join(",").as_str())]));
    let err = plan::ensure(&desired(&wide, &settings, &cluster), &empty()).unwrap_err();
    assert!(
        err.to_string().contains("(new k8s-elb-au) has 0 inbound rules and this load balancer needs 63 more"),
        "{err}"
    );
}
