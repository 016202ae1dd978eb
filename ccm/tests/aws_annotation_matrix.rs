//! An annotation matrix: 24 Services with different annotations, made at once by the real
//! binary against moto, each checked against the AWS state read back, then all deleted with
//! nothing left.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_sdk_elasticloadbalancing::types::{LoadBalancerAttributes, LoadBalancerDescription};
use aws_sdk_elasticloadbalancingv2::types::{Listener, LoadBalancer, TargetGroup};
use ccm_e2e::{SeedOptions, TestCluster};
use k8s_openapi::api::core::v1::{Node, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use support::aws::{WAIT, off_aws_config, register, start, wait_all_initialized};
use support::eventually;

const P: &str = "service.beta.kubernetes.io/aws-load-balancer-";

/// What AWS has for one Service.
enum Seen {
    Classic {
        lb: LoadBalancerDescription,
        attributes: LoadBalancerAttributes,
        tags: BTreeMap<String, String>,
        /// The ELB's own (first) security group's ingress: (protocol, from port, CIDR).
        group_rules: Vec<(String, i32, String)>,
    },
    Nlb {
        lb: LoadBalancer,
        listeners: Vec<Listener>,
        groups: Vec<TargetGroup>,
        group_attributes: BTreeMap<String, String>,
        lb_attributes: BTreeMap<String, String>,
        /// The first target group's targets (instance IDs).
        targets: Vec<String>,
        tags: BTreeMap<String, String>,
    },
}

struct Ctx {
    node_port: i32,
    hc_node_port: Option<i32>,
    extra_group: String,
    chosen_subnet: String,
    labelled_instance: String,
}

type Check = fn(&Seen, &Ctx) -> Result<(), String>;

struct Case {
    name: &'static str,
    annotations: Vec<(String, String)>,
    protocol: &'static str,
    local: bool,
    check: Check,
}

fn case(name: &'static str, annotations: &[(&str, &str)], check: Check) -> Case {
    let annotations = annotations
        .iter()
        .map(|(k, v)| (if k.contains('/') { k.to_string() } else { format!("{P}{k}") }, v.to_string()))
        .collect();
    Case { name, annotations, protocol: "TCP", local: false, check }
}

fn classic(
    seen: &Seen,
) -> Result<(&LoadBalancerDescription, &LoadBalancerAttributes, &BTreeMap<String, String>), String> {
    match seen {
        Seen::Classic { lb, attributes, tags, .. } => Ok((lb, attributes, tags)),
        Seen::Nlb { .. } => Err("expected a Classic ELB".into()),
    }
}

#[allow(clippy::type_complexity)]
fn nlb(
    seen: &Seen,
) -> Result<(&LoadBalancer, &[Listener], &[TargetGroup], &BTreeMap<String, String>, &BTreeMap<String, String>), String>
{
    match seen {
        Seen::Nlb { lb, listeners, groups, group_attributes, lb_attributes, .. } => {
            Ok((lb, listeners, groups, group_attributes, lb_attributes))
        }
        Seen::Classic { .. } => Err("expected an NLB".into()),
    }
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

fn cases(extra_group_annotation: &str, subnet: &str) -> Vec<Case> {
    let nlb_type = ("type", "nlb");
    let mut all = vec![
        case("clb-default", &[], |s, c| {
            let (lb, _, _) = classic(s)?;
            let l = lb.listener_descriptions()[0].listener().unwrap();
            ensure(
                l.protocol() == "TCP" && l.instance_protocol() == Some("TCP") && l.instance_port() == c.node_port,
                || format!("{l:?}"),
            )?;
            ensure(lb.health_check().unwrap().target() == format!("TCP:{}", c.node_port), || {
                format!("{:?}", lb.health_check())
            })
        }),
        case("clb-internal", &[("internal", "true")], |s, _| {
            let (lb, _, _) = classic(s)?;
            ensure(lb.scheme() == Some("internal"), || format!("scheme {:?}", lb.scheme()))
        }),
        case("clb-http", &[("backend-protocol", "http")], |s, _| {
            let (lb, _, _) = classic(s)?;
            let l = lb.listener_descriptions()[0].listener().unwrap();
            ensure(l.protocol() == "HTTP" && l.instance_protocol() == Some("HTTP"), || format!("{l:?}"))
        }),
        case("clb-proxy", &[("proxy-protocol", "*")], |s, c| {
            let (lb, _, _) = classic(s)?;
            let backend = lb.backend_server_descriptions().iter().find(|b| b.instance_port() == Some(c.node_port));
            ensure(backend.is_some_and(|b| b.policy_names().iter().any(|p| p == "k8s-proxyprotocol-enabled")), || {
                format!("{backend:?}")
            })
        }),
        case(
            "clb-logs",
            &[
                ("access-log-enabled", "true"),
                ("access-log-s3-bucket-name", "logs"),
                ("access-log-s3-bucket-prefix", "elb"),
                ("access-log-emit-interval", "5"),
            ],
            |s, _| {
                let (_, a, _) = classic(s)?;
                let log = a.access_log().unwrap();
                ensure(log.enabled() && log.s3_bucket_name() == Some("logs") && log.emit_interval() == Some(5), || {
                    format!("{log:?}")
                })
            },
        ),
        case(
            "clb-draining",
            &[("connection-draining-enabled", "true"), ("connection-draining-timeout", "30")],
            |s, _| {
                let (_, a, _) = classic(s)?;
                let d = a.connection_draining().unwrap();
                ensure(d.enabled() && d.timeout() == Some(30), || format!("{d:?}"))
            },
        ),
        case("clb-idle", &[("connection-idle-timeout", "120")], |s, _| {
            let (_, a, _) = classic(s)?;
            ensure(a.connection_settings().unwrap().idle_timeout() == 120, || format!("{:?}", a.connection_settings()))
        }),
        case("clb-crosszone", &[("cross-zone-load-balancing-enabled", "true")], |s, _| {
            let (_, a, _) = classic(s)?;
            ensure(a.cross_zone_load_balancing().unwrap().enabled(), || format!("{:?}", a.cross_zone_load_balancing()))
        }),
        case(
            "clb-hc",
            &[
                ("healthcheck-protocol", "HTTP"),
                ("healthcheck-path", "/ready"),
                ("healthcheck-port", "traffic-port"),
                ("healthcheck-interval", "15"),
                ("healthcheck-healthy-threshold", "4"),
            ],
            |s, c| {
                let (lb, _, _) = classic(s)?;
                let hc = lb.health_check().unwrap();
                ensure(
                    hc.target() == format!("HTTP:{}/ready", c.node_port)
                        && hc.interval() == 15
                        && hc.healthy_threshold() == 4,
                    || format!("{hc:?}"),
                )
            },
        ),
        case("clb-ranges", &[("service.beta.kubernetes.io/load-balancer-source-ranges", "10.0.0.0/8")], |s, _| {
            let Seen::Classic { group_rules, .. } = s else { return Err("expected a Classic ELB".into()) };
            let mut rules = group_rules.clone();
            rules.sort();
            ensure(
                rules
                    == [
                        ("icmp".to_string(), 3, "10.0.0.0/8".to_string()),
                        ("tcp".to_string(), 80, "10.0.0.0/8".to_string()),
                    ],
                || format!("{rules:?}"),
            )
        }),
        case("clb-extra-sg", &[("extra-security-groups", extra_group_annotation)], |s, c| {
            let (lb, _, _) = classic(s)?;
            ensure(lb.security_groups().len() == 2 && lb.security_groups().contains(&c.extra_group), || {
                format!("{:?}", lb.security_groups())
            })
        }),
        case("clb-own-sg", &[("security-groups", extra_group_annotation)], |s, c| {
            let (lb, _, _) = classic(s)?;
            ensure(lb.security_groups() == [c.extra_group.clone()], || format!("{:?}", lb.security_groups()))
        }),
        case("clb-tags", &[("additional-resource-tags", "team=edge,cost-center=42")], |s, _| {
            let (_, _, tags) = classic(s)?;
            ensure(
                tags.get("team").map(String::as_str) == Some("edge")
                    && tags.get("cost-center").map(String::as_str) == Some("42"),
                || format!("{tags:?}"),
            )
        }),
        case("clb-node-labels", &[("target-node-labels", "pool=edge")], |s, c| {
            let (lb, _, _) = classic(s)?;
            let ids: Vec<&str> = lb.instances().iter().filter_map(|i| i.instance_id()).collect();
            ensure(ids == [c.labelled_instance.as_str()], || format!("{ids:?}"))
        }),
        case("clb-subnets", &[("subnets", subnet)], |s, c| {
            let (lb, _, _) = classic(s)?;
            ensure(lb.subnets() == [c.chosen_subnet.clone()], || format!("{:?}", lb.subnets()))
        }),
        case("nlb-default", &[nlb_type], |s, c| {
            let (_, listeners, groups, _, _) = nlb(s)?;
            let tg = &groups[0];
            ensure(listeners.len() == 1 && groups.len() == 1, || {
                format!("{} listeners, {} groups", listeners.len(), groups.len())
            })?;
            ensure(
                tg.port() == Some(c.node_port)
                    && tg.health_check_port() == Some("traffic-port")
                    && tg.health_check_interval_seconds() == Some(30),
                || format!("{tg:?}"),
            )
        }),
        case("nlb-crosszone", &[nlb_type, ("cross-zone-load-balancing-enabled", "true")], |s, _| {
            let (_, _, _, _, attrs) = nlb(s)?;
            ensure(attrs.get("load_balancing.cross_zone.enabled").map(String::as_str) == Some("true"), || {
                format!("{attrs:?}")
            })
        }),
        case("nlb-tg-attrs", &[nlb_type, ("target-group-attributes", "proxy_protocol_v2.enabled=true")], |s, _| {
            let (_, _, _, attrs, _) = nlb(s)?;
            ensure(attrs.get("proxy_protocol_v2.enabled").map(String::as_str) == Some("true"), || format!("{attrs:?}"))
        }),
        case(
            "nlb-hc",
            &[
                nlb_type,
                ("healthcheck-protocol", "HTTP"),
                ("healthcheck-path", "/up"),
                ("healthcheck-interval", "10"),
                ("healthcheck-unhealthy-threshold", "5"),
            ],
            |s, _| {
                let (_, _, groups, _, _) = nlb(s)?;
                let tg = &groups[0];
                ensure(
                    tg.health_check_path() == Some("/up")
                        && tg.health_check_interval_seconds() == Some(10)
                        && tg.unhealthy_threshold_count() == Some(5),
                    || format!("{tg:?}"),
                )
            },
        ),
        case("nlb-internal", &[nlb_type, ("internal", "true")], |s, _| {
            let (lb, _, _, _, _) = nlb(s)?;
            ensure(lb.scheme().map(|s| s.as_str()) == Some("internal"), || format!("{:?}", lb.scheme()))
        }),
        case("nlb-logs", &[nlb_type, ("access-log-enabled", "true"), ("access-log-s3-bucket-name", "logs")], |s, _| {
            let (_, _, _, _, attrs) = nlb(s)?;
            ensure(
                attrs.get("access_logs.s3.enabled").map(String::as_str) == Some("true")
                    && attrs.get("access_logs.s3.bucket").map(String::as_str) == Some("logs"),
                || format!("{attrs:?}"),
            )
        }),
        case("nlb-node-labels", &[nlb_type, ("target-node-labels", "pool=edge")], |s, c| {
            let Seen::Nlb { targets, .. } = s else { return Err("expected an NLB".into()) };
            ensure(*targets == [c.labelled_instance.clone()], || format!("{targets:?}"))
        }),
        case("nlb-tags", &[nlb_type, ("additional-resource-tags", "team=edge")], |s, _| {
            let Seen::Nlb { tags, .. } = s else { return Err("expected an NLB".into()) };
            ensure(tags.get("team").map(String::as_str) == Some("edge"), || format!("{tags:?}"))
        }),
    ];
    let mut udp = case("nlb-udp", &[nlb_type], |s, _| {
        let (_, listeners, groups, _, _) = nlb(s)?;
        ensure(
            listeners[0].protocol().map(|p| p.as_str()) == Some("UDP")
                && groups[0].protocol().map(|p| p.as_str()) == Some("UDP"),
            || format!("{:?}", listeners[0]),
        )
    });
    udp.protocol = "UDP";
    all.push(udp);
    let mut local = case("clb-local", &[], |s, c| {
        let (lb, _, _) = classic(s)?;
        ensure(lb.health_check().unwrap().target() == format!("HTTP:{}/healthz", c.hc_node_port.unwrap()), || {
            format!("{:?}", lb.health_check())
        })
    });
    local.local = true;
    all.push(local);
    all
}

fn lb_name(svc: &Service) -> String {
    let uid: String = svc.metadata.uid.clone().unwrap_or_default().chars().filter(|c| *c != '-').collect();
    format!("a{uid}").chars().take(32).collect()
}

async fn read_back(cluster: &TestCluster, svc: &Service) -> Result<Seen> {
    let name = lb_name(svc);
    if let Ok(out) = cluster.direct.elb.describe_load_balancers().load_balancer_names(&name).send().await {
        let lb = out.load_balancer_descriptions()[0].clone();
        let attributes = cluster
            .direct
            .elb
            .describe_load_balancer_attributes()
            .load_balancer_name(&name)
            .send()
            .await?
            .load_balancer_attributes()
            .cloned()
            .context("attributes")?;
        let tag_out = cluster.direct.elb.describe_tags().load_balancer_names(&name).send().await?;
        let tags = tag_out
            .tag_descriptions()
            .iter()
            .flat_map(|d| d.tags())
            .map(|t| (t.key().to_string(), t.value().unwrap_or_default().to_string()))
            .collect();
        let group = lb.security_groups().first().cloned().unwrap_or_default();
        let described = cluster.direct.ec2.describe_security_groups().group_ids(&group).send().await?;
        let group_rules = described
            .security_groups()
            .iter()
            .flat_map(|g| g.ip_permissions())
            .flat_map(|p| {
                p.ip_ranges().iter().map(move |r| {
                    (
                        p.ip_protocol().unwrap_or_default().to_string(),
                        p.from_port().unwrap_or_default(),
                        r.cidr_ip().unwrap_or_default().to_string(),
                    )
                })
            })
            .collect();
        return Ok(Seen::Classic { lb, attributes, tags, group_rules });
    }
    let v2 = &cluster.direct.elbv2;
    let lb = v2.describe_load_balancers().names(&name).send().await?.load_balancers()[0].clone();
    let arn = lb.load_balancer_arn().unwrap_or_default().to_string();
    let listeners = v2.describe_listeners().load_balancer_arn(&arn).send().await?.listeners().to_vec();
    let groups = v2.describe_target_groups().load_balancer_arn(&arn).send().await?.target_groups().to_vec();
    let tg_arn = groups.first().and_then(|g| g.target_group_arn()).unwrap_or_default();
    let group_attributes = v2
        .describe_target_group_attributes()
        .target_group_arn(tg_arn)
        .send()
        .await?
        .attributes()
        .iter()
        .filter_map(|a| Some((a.key()?.to_string(), a.value()?.to_string())))
        .collect();
    let lb_attributes = v2
        .describe_load_balancer_attributes()
        .load_balancer_arn(&arn)
        .send()
        .await?
        .attributes()
        .iter()
        .filter_map(|a| Some((a.key()?.to_string(), a.value()?.to_string())))
        .collect();
    let mut targets: Vec<String> = v2
        .describe_target_health()
        .target_group_arn(tg_arn)
        .send()
        .await?
        .target_health_descriptions()
        .iter()
        .filter_map(|d| d.target().and_then(|t| t.id()).map(String::from))
        .collect();
    targets.sort();
    let tags = v2
        .describe_tags()
        .resource_arns(&arn)
        .send()
        .await?
        .tag_descriptions()
        .iter()
        .flat_map(|d| d.tags())
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
        .collect();
    Ok(Seen::Nlb { lb, listeners, groups, group_attributes, lb_attributes, targets, tags })
}

#[tokio::test]
async fn twenty_four_annotation_combinations_against_aws_state() -> Result<()> {
    if !support::aws::elb_or_skip() {
        return Ok(());
    }
    let _serial = support::serial().await;
    let cluster = TestCluster::new("matrix").await?;
    let client = cluster.kube().await?;
    support::clean_cluster(&client).await?;
    let vpc = cluster.seed(SeedOptions::default().with_instances(2)).await?;
    let names = register(&cluster, &client, &vpc).await?;
    let label = serde_json::json!({"metadata": {"labels": {"pool": "edge"}}});
    Api::<Node>::all(client.clone()).patch(&names[1], &PatchParams::default(), &Patch::Merge(&label)).await?;
    // The brownfield's user group tagged `owned` for the cluster, for extra-security-groups
    // on one Service and security-groups on another: neither may change or delete it.
    let extra_group = vpc.brownfield.as_ref().context("the seed's brownfield")?.user_groups["owned"].clone();
    let subnet = vpc.subnets.iter().find(|s| s.public).unwrap().id.clone();
    let ccm = start(
        &cluster,
        &off_aws_config(&cluster, &vpc),
        None,
        &["--controllers=service,cloud-node", "--concurrent-service-syncs=8"],
    )?;
    wait_all_initialized(&client, &names, &ccm).await?;

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let all = cases(&extra_group, &subnet);
    assert!(all.len() >= 20);
    for c in &all {
        let svc = Service {
            metadata: ObjectMeta {
                name: Some(c.name.into()),
                annotations: Some(c.annotations.iter().cloned().collect()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("LoadBalancer".into()),
                external_traffic_policy: c.local.then(|| "Local".to_string()),
                ports: Some(vec![ServicePort { port: 80, protocol: Some(c.protocol.into()), ..Default::default() }]),
                ..Default::default()
            }),
            status: None,
        };
        services.create(&PostParams::default(), &svc).await?;
    }
    let mut failures = Vec::new();
    for c in &all {
        let svc = eventually(&format!("{} to get its load balancer", c.name), WAIT, || async {
            let svc = services.get(c.name).await?;
            let has = svc
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|l| l.ingress.as_ref())
                .is_some_and(|i| !i.is_empty());
            Ok(has.then_some(svc))
        })
        .await
        .with_context(|| ccm.log_tail(40))?;
        let spec = svc.spec.clone().unwrap();
        let ctx = Ctx {
            node_port: spec.ports.unwrap()[0].node_port.unwrap(),
            hc_node_port: spec.health_check_node_port,
            extra_group: extra_group.clone(),
            chosen_subnet: subnet.clone(),
            labelled_instance: vpc.instances[1].id.clone(),
        };
        let seen = read_back(&cluster, &svc).await?;
        if let Err(why) = (c.check)(&seen, &ctx) {
            failures.push(format!("{}: {why}", c.name));
        }
    }
    for c in &all {
        services.delete(c.name, &DeleteParams::default()).await?;
    }
    eventually("every Service gone", Duration::from_secs(120), || async {
        let left = services
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter(|s| s.metadata.name.as_deref() != Some("kubernetes"))
            .count();
        Ok((left == 0).then_some(()))
    })
    .await
    .with_context(|| ccm.log_tail(40))?;
    if !failures.is_empty() {
        bail!("{} of {} combinations wrong:\n{}", failures.len(), all.len(), failures.join("\n"));
    }
    cluster.assert_nothing_left().await
}
