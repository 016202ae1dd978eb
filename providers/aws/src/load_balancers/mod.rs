//! Load balancers: a Classic ELB by default, an NLB with instance targets for
//! `aws-load-balancer-type: nlb`; `nlb-ip` / `external` are left to the AWS Load Balancer
//! Controller.
//!
//! The Service is parsed first ([`service_config`]); any invalid annotation fails the sync with
//! every problem listed, before any AWS call. The two types are separate modules
//! ([`classic`], [`nlb`]) picked once from the parsed config. Deletion never trusts the
//! Service's current annotations: both APIs are asked for the load balancer named after the
//! UID, and everything it owns is found by name and tags.

pub mod annotations;
mod apply;
mod classic;
pub mod names;
mod nlb;
pub(crate) mod plan;
pub mod security_groups;
pub mod service_config;
pub mod subnets;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_sdk_ec2::types::{Instance, InstanceStateName, SecurityGroup};
use cloud_provider::{CloudError, LoadBalancerStatus, LoadBalancers, NodeInfo, ServiceInfo};

use crate::calls::Calls;
use crate::describe_batch::DescribeBatch;
use crate::ec2::{Ec2, filter};
use crate::errors::AwsError;
use crate::instance_cache::InstanceCache;
use crate::instances::AwsInstances;
use crate::tags::ClusterTags;
use service_config::{Kind, LbConfig, Parsed};

pub use classic::OPERATIONS as ELB_OPERATIONS;
pub use nlb::OPERATIONS as ELBV2_OPERATIONS;

/// `kubernetes.io/service-name`: which Service a load balancer and its parts belong to.
pub const SERVICE_NAME_TAG: &str = "kubernetes.io/service-name";

/// Cloud-config settings the load balancers follow.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub disable_security_group_ingress: bool,
    pub elb_security_group: Option<String>,
    pub shared_health_probe: bool,
    pub shared_probe_port: u16,
    pub shared_probe_path: String,
    pub nlb_security_groups_managed: bool,
}

pub struct AwsLoadBalancers {
    pub(crate) ec2: Ec2,
    pub(crate) elb: aws_sdk_elasticloadbalancing::Client,
    pub(crate) elbv2: aws_sdk_elasticloadbalancingv2::Client,
    pub(crate) calls: Arc<Calls>,
    pub(crate) cache: Arc<InstanceCache>,
    pub(crate) cluster: ClusterTags,
    pub(crate) vpc_id: String,
    pub(crate) fallback_subnet: Option<String>,
    pub(crate) settings: Settings,
    zone_types: tokio::sync::Mutex<HashMap<String, String>>,
    pub(crate) classic_batch: DescribeBatch<aws_sdk_elasticloadbalancing::types::LoadBalancerDescription>,
    pub(crate) nlb_batch: DescribeBatch<aws_sdk_elasticloadbalancingv2::types::LoadBalancer>,
    /// The type last ensured per Service UID: while it stays the same, the other type's API is
    /// not asked (a type change is looked for after a restart or an annotation change).
    ensured: std::sync::Mutex<HashMap<String, Kind>>,
    /// Held by a Classic ELB deletion from "does another load balancer still use this given
    /// group?" until its DeleteLoadBalancer: the last of several concurrent deletions of ELBs
    /// sharing a group then sees the others gone and revokes the group's node rule.
    pub(crate) shared_group_deletions: tokio::sync::Mutex<()>,
}

#[allow(clippy::too_many_arguments)]
impl AwsLoadBalancers {
    pub fn new(
        ec2: Ec2,
        elb: aws_sdk_elasticloadbalancing::Client,
        elbv2: aws_sdk_elasticloadbalancingv2::Client,
        calls: Arc<Calls>,
        cache: Arc<InstanceCache>,
        cluster: ClusterTags,
        vpc_id: String,
        fallback_subnet: Option<String>,
        settings: Settings,
    ) -> Self {
        let (elb_client, elb_calls) = (elb.clone(), calls.clone());
        let classic_batch = DescribeBatch::new(Arc::new(move |names: Vec<String>| {
            let (elb, calls) = (elb_client.clone(), elb_calls.clone());
            Box::pin(async move {
                let r = elb.describe_load_balancers().set_load_balancer_names(Some(names));
                let out = calls.run("aws/elb.DescribeLoadBalancers", r.send()).await?;
                Ok(out
                    .load_balancer_descriptions()
                    .iter()
                    .filter_map(|d| Some((d.load_balancer_name()?.to_string(), d.clone())))
                    .collect())
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
        }));
        let (v2_client, v2_calls) = (elbv2.clone(), calls.clone());
        let nlb_batch = DescribeBatch::new(Arc::new(move |names: Vec<String>| {
            let (elbv2, calls) = (v2_client.clone(), v2_calls.clone());
            Box::pin(async move {
                let r = elbv2.describe_load_balancers().set_names(Some(names));
                let out = calls.run("aws/elbv2.DescribeLoadBalancers", r.send()).await?;
                Ok(out
                    .load_balancers()
                    .iter()
                    .filter_map(|l| Some((l.load_balancer_name()?.to_string(), l.clone())))
                    .collect())
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
        }));
        Self {
            ec2,
            elb,
            elbv2,
            calls,
            cache,
            cluster,
            vpc_id,
            fallback_subnet,
            settings,
            zone_types: Default::default(),
            classic_batch,
            nlb_batch,
            ensured: Default::default(),
            shared_group_deletions: Default::default(),
        }
    }

    /// Cluster tag (owned), service name, and the Service's additional tags.
    pub(crate) fn resource_tags(&self, cfg: &LbConfig) -> Vec<(String, String)> {
        let mut tags = self.cluster.owned();
        tags.push((SERVICE_NAME_TAG.to_string(), cfg.service_key()));
        for (k, v) in &cfg.additional_tags {
            if !tags.iter().any(|(key, _)| key == k) {
                tags.push((k.clone(), v.clone()));
            }
        }
        tags
    }

    /// The subnets for a new or existing load balancer: the annotation's, else discovery.
    pub(crate) async fn subnets_for(&self, cfg: &LbConfig) -> Result<Vec<String>, CloudError> {
        if let Some(wanted) = &cfg.subnets {
            let (ids, names): (Vec<String>, Vec<String>) =
                wanted.iter().cloned().partition(|s| s.starts_with("subnet-"));
            let mut found: Vec<String> = Vec::new();
            if !ids.is_empty() {
                found.extend(
                    self.ec2.subnets(ids, Vec::new()).await?.iter().filter_map(|s| s.subnet_id().map(String::from)),
                );
            }
            if !names.is_empty() {
                let by_name = self
                    .ec2
                    .subnets(Vec::new(), vec![filter("vpc-id", [self.vpc_id.clone()]), filter("tag:Name", names)])
                    .await?;
                found.extend(by_name.iter().filter_map(|s| s.subnet_id().map(String::from)));
            }
            if found.len() != wanted.len() {
                return Err(CloudError::invalid(
                    "aws/lb.subnets",
                    format!("{}: {} given, {} found: {found:?}", annotations::SUBNETS, wanted.len(), found.len()),
                ));
            }
            return Ok(found);
        }
        let subnets = self.ec2.subnets(Vec::new(), vec![filter("vpc-id", [self.vpc_id.clone()])]).await?;
        let tables = self.ec2.route_tables(Vec::new(), vec![filter("vpc-id", [self.vpc_id.clone()])]).await?;
        let zone_types = self.zone_types().await?;
        let candidates = subnets::candidates(&subnets, &tables, &zone_types);
        match subnets::choose(&candidates, cfg.internal, &self.cluster) {
            Ok(chosen) => Ok(chosen),
            Err(why) => match &self.fallback_subnet {
                Some(subnet) if candidates.is_empty() => {
                    tracing::warn!(%subnet, "no subnets found; using the configured SubnetID");
                    Ok(vec![subnet.clone()])
                }
                _ => Err(CloudError::Failed {
                    op: "aws/lb.subnets",
                    message: why,
                    retry: cloud_provider::Retry::Backoff,
                    kind: "no_subnets",
                }),
            },
        }
    }

    async fn zone_types(&self) -> Result<HashMap<String, String>, CloudError> {
        let mut cached = self.zone_types.lock().await;
        if cached.is_empty() {
            *cached = self
                .ec2
                .availability_zones()
                .await?
                .iter()
                .filter_map(|z| {
                    Some((z.zone_name()?.to_string(), z.zone_type().unwrap_or("availability-zone").to_string()))
                })
                .collect();
        }
        Ok(cached.clone())
    }

    /// The instances behind the eligible Nodes that carry the target-node labels.
    pub(crate) async fn target_instances(
        &self,
        target_node_labels: &BTreeMap<String, String>,
        nodes: &[NodeInfo],
    ) -> Result<Vec<Instance>, CloudError> {
        let mut out = Vec::new();
        for node in nodes {
            let labelled = target_node_labels
                .iter()
                .all(|(k, v)| node.labels.get(k).is_some_and(|have| v.is_empty() || have == v));
            if !labelled {
                continue;
            }
            // Another provider's Node (eks-hybrid, Fargate, a virtual kubelet) is no target.
            let Some(key) = AwsInstances::key_for(node) else { continue };
            if let Some(instance) = self.cache.get(&key).await?
                && instance.state().and_then(|s| s.name()) != Some(&InstanceStateName::Terminated)
            {
                out.push(instance);
            }
        }
        out.sort_by(|a, b| a.instance_id().cmp(&b.instance_id()));
        Ok(out)
    }

    /// The security group of each instance that node rules go on: its cluster-tagged group,
    /// else its only group (upstream's rule).
    pub(crate) async fn node_groups(&self, instances: &[Instance]) -> Result<Vec<SecurityGroup>, CloudError> {
        let ids: Vec<String> = instances
            .iter()
            .flat_map(|i| i.security_groups().iter().filter_map(|g| g.group_id().map(String::from)))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let groups = self.ec2.security_groups(ids, Vec::new()).await?;
        let by_id: HashMap<&str, &SecurityGroup> = groups.iter().filter_map(|g| Some((g.group_id()?, g))).collect();
        let mut chosen: BTreeMap<String, SecurityGroup> = BTreeMap::new();
        for instance in instances {
            let mine: Vec<&SecurityGroup> =
                instance.security_groups().iter().filter_map(|g| by_id.get(g.group_id()?).copied()).collect();
            let tagged: Vec<&SecurityGroup> = mine.iter().copied().filter(|g| self.is_cluster_group(g)).collect();
            let pick = match (tagged.as_slice(), mine.as_slice()) {
                ([one], _) | ([], [one]) => Some(*one),
                _ => None,
            };
            match pick {
                Some(g) => {
                    chosen.insert(g.group_id().unwrap_or_default().to_string(), g.clone());
                }
                None => {
                    tracing::warn!(instance = ?instance.instance_id(), "no single (cluster-tagged) security group; no node rules for it")
                }
            }
        }
        Ok(chosen.into_values().collect())
    }

    /// Every security group in the cluster's VPC (one call; callers filter).
    pub(crate) async fn vpc_groups(&self) -> Result<Vec<SecurityGroup>, CloudError> {
        Ok(self.ec2.security_groups(Vec::new(), vec![filter("vpc-id", [self.vpc_id.clone()])]).await?)
    }

    pub(crate) fn is_cluster_group(&self, g: &SecurityGroup) -> bool {
        self.cluster.is_cluster(g.tags().iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())))
    }

    fn is_owned_group(&self, g: &SecurityGroup) -> bool {
        self.cluster.is_owned(g.tags().iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())))
    }

    /// The group named `name` in the cluster's VPC, if any.
    pub(crate) async fn group_named(&self, name: &str) -> Result<Option<SecurityGroup>, CloudError> {
        let filters = vec![filter("group-name", [name]), filter("vpc-id", [self.vpc_id.clone()])];
        Ok(self.ec2.security_groups(Vec::new(), filters).await?.into_iter().next())
    }

    pub(crate) async fn owned_groups_named(&self, name: &str) -> Result<Vec<SecurityGroup>, CloudError> {
        let groups = self
            .ec2
            .security_groups(Vec::new(), vec![filter("group-name", [name]), filter("vpc-id", [self.vpc_id.clone()])])
            .await?;
        Ok(groups.into_iter().filter(|g| self.is_owned_group(g)).collect())
    }

    /// Deletes owned groups; one still in use means "come back later", never a wait here.
    pub(crate) async fn delete_groups(&self, groups: &[SecurityGroup]) -> Result<(), CloudError> {
        let plan: Vec<plan::Change> = groups
            .iter()
            .map(|g| {
                let group = g.group_id().unwrap_or_default().to_string();
                plan::Change::new(plan::Action::DeleteSecurityGroup { group }, "owned by the deleted load balancer")
            })
            .collect();
        self.apply(&plan).await.map(|_| ())
    }

    /// The Service's config, or `None` when another controller owns it. Settings of the
    /// cloud-config that change what an annotation means are applied here.
    fn parse(&self, service: &ServiceInfo) -> Result<Option<(LbConfig, Vec<String>)>, CloudError> {
        match service_config::parse(service) {
            Parsed::Elsewhere => Ok(None),
            Parsed::Ok { mut config, mut warnings } => {
                if config.kind == Kind::Nlb
                    && !self.settings.nlb_security_groups_managed
                    && !config.security_groups.is_empty()
                {
                    warnings.push(format!(
                        "{} on an NLB needs NLBSecurityGroupMode = Managed in the cloud-config; ignored",
                        annotations::SECURITY_GROUPS
                    ));
                    config.security_groups.clear();
                }
                Ok(Some((*config, warnings)))
            }
            Parsed::Invalid(problems) => Err(CloudError::invalid(
                "aws/lb.annotations",
                format!(
                    "invalid Service for an AWS load balancer ({} problems; nothing was changed):\n- {}",
                    problems.len(),
                    problems.join("\n- ")
                ),
            )),
        }
    }

    /// A type value upstream reads as a Classic ELB but that spells `nlb` loosely (`NLB`,
    /// ` nlb`) never replaces an NLB the Service already has (made by an earlier version of this
    /// CCM, which read it loosely): the NLB is kept, with a Warning. Only the exact value changes
    /// a type.
    async fn keep_existing_nlb(&self, service: &ServiceInfo) -> Result<(ServiceInfo, Option<String>), CloudError> {
        let loose = service
            .annotations
            .get(annotations::TYPE)
            .is_some_and(|v| v != "nlb" && v.trim().eq_ignore_ascii_case("nlb"));
        if !loose || self.nlb_describe(&names::load_balancer_name(&service.uid)).await?.is_none() {
            return Ok((service.clone(), None));
        }
        let raw = service.annotations.get(annotations::TYPE).cloned().unwrap_or_default();
        let mut as_nlb = service.clone();
        as_nlb.annotations.insert(annotations::TYPE.to_string(), "nlb".to_string());
        let note = format!(
            "{}: {raw:?} is not the exact `nlb` upstream reads, but this Service already has an NLB, which is kept (write `nlb`)",
            annotations::TYPE
        );
        Ok((as_nlb, Some(note)))
    }

    /// Node changes for a Service whose annotations are invalid: the load balancer it already
    /// has (if any) keeps following the Nodes, so an unrelated typo never strands traffic on
    /// Nodes that are gone. Only targets change; nothing the annotations describe.
    async fn hosts_only(&self, service: &ServiceInfo, nodes: &[NodeInfo]) -> Result<(), CloudError> {
        let labels = service_config::target_node_labels(&service.annotations);
        let instances = self.target_instances(&labels, nodes).await?;
        let name = names::load_balancer_name(&service.uid);
        if let Some(lb) = self.classic_describe(&name).await.map_err(from_aws)? {
            return self.classic_register(&name, &lb, &instances).await;
        }
        if let Some(lb) = self.nlb_describe(&name).await? {
            for tg in self.target_groups_of(lb.load_balancer_arn().unwrap_or_default()).await.map_err(from_aws)? {
                let port = u16::try_from(tg.port().unwrap_or_default()).unwrap_or_default();
                self.nlb_retarget(tg.target_group_arn().unwrap_or_default(), port, &instances).await?;
            }
        }
        Ok(())
    }
}

fn from_aws(err: AwsError) -> CloudError {
    err.into()
}

impl LoadBalancers for AwsLoadBalancers {
    async fn get(&self, _cluster: &str, service: &ServiceInfo) -> Result<Option<LoadBalancerStatus>, CloudError> {
        let name = names::load_balancer_name(&service.uid);
        if let Some(lb) = self.classic_describe(&name).await.map_err(from_aws)? {
            let ingress = lb.dns_name().map(|d| vec![cloud_provider::IngressPoint::hostname(d)]).unwrap_or_default();
            return Ok(Some(LoadBalancerStatus { ingress, warnings: Vec::new() }));
        }
        Ok(self.nlb_describe(&name).await?.map(|lb| LoadBalancerStatus {
            ingress: lb.dns_name().map(|d| vec![cloud_provider::IngressPoint::hostname(d)]).unwrap_or_default(),
            warnings: Vec::new(),
        }))
    }

    fn name(&self, _cluster: &str, service: &ServiceInfo) -> String {
        names::load_balancer_name(&service.uid)
    }

    async fn ensure(
        &self,
        cluster: &str,
        service: &ServiceInfo,
        nodes: &[NodeInfo],
    ) -> Result<LoadBalancerStatus, CloudError> {
        let (service, kept) = self.keep_existing_nlb(service).await?;
        let Some((cfg, mut warnings)) = self.parse(&service)? else { return Err(CloudError::ImplementedElsewhere) };
        warnings.extend(kept);
        // A type change: the other type's load balancer, if there is one, goes first with all
        // it owns (upstream refuses the change). One describe when there is none.
        let name = names::load_balancer_name(&cfg.uid);
        let same_as_before = self.ensured.lock().expect("lock").get(&cfg.uid) == Some(&cfg.kind);
        let mut status = match cfg.kind {
            Kind::Classic => {
                if !same_as_before && self.nlb_describe(&name).await?.is_some() {
                    self.nlb_delete(&cfg.namespace, &cfg.name, &cfg.uid, cluster).await?;
                }
                self.classic_ensure(&cfg, nodes).await?
            }
            Kind::Nlb => {
                if !same_as_before && self.classic_describe(&name).await.map_err(from_aws)?.is_some() {
                    self.classic_delete(&cfg.uid).await?;
                }
                self.nlb_ensure(&cfg, cluster, nodes).await?
            }
        };
        self.ensured.lock().expect("lock").insert(cfg.uid.clone(), cfg.kind);
        status.warnings = warnings;
        Ok(status)
    }

    async fn plan(
        &self,
        cluster: &str,
        service: &ServiceInfo,
        nodes: &[NodeInfo],
    ) -> Result<Vec<cloud_provider::PlannedChange>, CloudError> {
        let (service, _) = self.keep_existing_nlb(service).await?;
        let Some((cfg, _)) = self.parse(&service)? else { return Err(CloudError::ImplementedElsewhere) };
        let name = names::load_balancer_name(&cfg.uid);
        let plan = match cfg.kind {
            Kind::Classic if self.nlb_describe(&name).await?.is_some() => {
                return Err(CloudError::invalid(
                    "aws/lb.plan",
                    "the Service has an NLB and asks for a Classic ELB: planning a type change is not supported yet",
                ));
            }
            Kind::Classic => self.classic_plan(&cfg, nodes).await?,
            Kind::Nlb if self.classic_describe(&name).await.map_err(from_aws)?.is_some() => {
                return Err(CloudError::invalid(
                    "aws/lb.plan",
                    "the Service has a Classic ELB and asks for an NLB: planning a type change is not supported yet",
                ));
            }
            Kind::Nlb => self.nlb_plan(&cfg, cluster, nodes).await?,
        };
        Ok(plan.iter().map(cloud_provider::PlannedChange::from).collect())
    }

    async fn update_hosts(&self, cluster: &str, service: &ServiceInfo, nodes: &[NodeInfo]) -> Result<(), CloudError> {
        let (service, _) = self.keep_existing_nlb(service).await?;
        let service = &service;
        let cfg = match self.parse(service) {
            Ok(Some((cfg, _))) => cfg,
            Ok(None) => return Err(CloudError::ImplementedElsewhere),
            Err(_) => {
                tracing::warn!(service = %service.key(), "annotations invalid; updating the existing load balancer's targets only");
                return self.hosts_only(service, nodes).await;
            }
        };
        match cfg.kind {
            Kind::Classic => self.classic_update_hosts(&cfg, nodes).await,
            Kind::Nlb => self.nlb_ensure(&cfg, cluster, nodes).await.map(|_| ()),
        }
    }

    async fn ensure_deleted(&self, cluster: &str, service: &ServiceInfo) -> Result<(), CloudError> {
        // Both types, whatever the annotation says now.
        self.ensured.lock().expect("lock").remove(&service.uid);
        self.classic_delete(&service.uid).await?;
        self.nlb_delete(&service.namespace, &service.name, &service.uid, cluster).await
    }
}
