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
#[cfg(test)]
mod plan_fixtures;
pub mod security_groups;
pub mod service_config;
pub mod subnets;
mod tick;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_sdk_ec2::types::{Instance, InstanceStateName};
use cloud_provider::{CloudError, LoadBalancerStatus, LoadBalancers, NodeInfo, ServiceInfo};

use crate::describe_batch::DescribeBatch;
use crate::ec2::Ec2;
use crate::elb::Elb;
use crate::elbv2::Elbv2;
use crate::errors::AwsError;
use crate::instance_cache::InstanceCache;
use crate::instances::AwsInstances;
use crate::tags::ClusterTags;
use service_config::{Kind, LbConfig, Parsed};

/// `kubernetes.io/service-name`: which Service a load balancer and its parts belong to.
pub const SERVICE_NAME_TAG: &str = "kubernetes.io/service-name";

/// Cloud-config settings the load balancers follow.
#[derive(Debug, Clone)]
pub struct Settings {
    pub disable_security_group_ingress: bool,
    pub elb_security_group: Option<String>,
    pub shared_health_probe: bool,
    pub shared_probe_port: u16,
    pub shared_probe_path: String,
    pub nlb_security_groups_managed: bool,
    /// Inbound rules a security group may hold (`SecurityGroupRuleQuota`).
    pub rule_quota: usize,
    /// `NLBBackendSecurityGroup`: managed NLBs carry the cluster's shared backend group.
    pub nlb_backend_group: bool,
}

impl From<&crate::config::Global> for Settings {
    fn from(g: &crate::config::Global) -> Self {
        Self {
            disable_security_group_ingress: g.disable_security_group_ingress,
            elb_security_group: g.elb_security_group.clone(),
            shared_health_probe: g.health_probe_mode == crate::config::HealthProbeMode::Shared,
            shared_probe_port: g.shared_health_probe_port,
            shared_probe_path: g.shared_health_probe_path.clone(),
            nlb_security_groups_managed: g.nlb_security_group_managed,
            rule_quota: g.security_group_rule_quota as usize,
            nlb_backend_group: g.nlb_backend_security_group,
        }
    }
}

/// The cloud-config's defaults.
impl Default for Settings {
    fn default() -> Self {
        Self::from(&crate::config::Global::default())
    }
}

pub struct AwsLoadBalancers {
    pub(crate) ec2: Ec2,
    pub(crate) elb: Elb,
    pub(crate) elbv2: Elbv2,
    pub(crate) cache: Arc<InstanceCache>,
    pub(crate) cluster: ClusterTags,
    pub(crate) vpc_id: String,
    pub(crate) fallback_subnet: Option<String>,
    pub(crate) settings: Settings,
    zone_types: tokio::sync::Mutex<HashMap<String, String>>,
    /// The VPC's subnets as discovery last read them, and when (see `subnets.rs`).
    discovered: tick::Shared<Vec<subnets::Candidate>>,
    pub(crate) classic_batch: DescribeBatch<aws_sdk_elasticloadbalancing::types::LoadBalancerDescription>,
    pub(crate) nlb_batch: DescribeBatch<aws_sdk_elasticloadbalancingv2::types::LoadBalancer>,
    /// The type last ensured per Service UID: while it stays the same, the other type's API is
    /// not asked (a type change is looked for after a restart or an annotation change), and a
    /// deletion looks for that type only.
    ensured: std::sync::Mutex<HashMap<String, Kind>>,
    /// Held by a Classic ELB deletion from "does another load balancer still use this given
    /// group?" until its DeleteLoadBalancer: the last of several concurrent deletions of ELBs
    /// sharing a group then sees the others gone and revokes the group's node rule. Holds, per
    /// shared group, this cluster's Classic ELBs last seen using it (see `classic_delete`).
    pub(crate) shared_group_deletions: tokio::sync::Mutex<HashMap<String, Vec<String>>>,
    /// Readings shared by the periodic re-ensures of one tick (see `tick.rs`).
    pub(crate) tick: tick::TickReadings,
}

#[allow(clippy::too_many_arguments)]
impl AwsLoadBalancers {
    pub fn new(
        ec2: Ec2,
        elb: Elb,
        elbv2: Elbv2,
        cache: Arc<InstanceCache>,
        cluster: ClusterTags,
        vpc_id: String,
        fallback_subnet: Option<String>,
        settings: Settings,
    ) -> Self {
        let classic = elb.clone();
        let classic_batch = DescribeBatch::new(Arc::new(move |names: Vec<String>| {
            let elb = classic.clone();
            Box::pin(async move {
                let found = elb.load_balancers(names).await?;
                Ok(found.into_iter().filter_map(|d| Some((d.load_balancer_name()?.to_string(), d))).collect())
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
        }));
        let network = elbv2.clone();
        let nlb_batch = DescribeBatch::new(Arc::new(move |names: Vec<String>| {
            let elbv2 = network.clone();
            Box::pin(async move {
                let found = elbv2.load_balancers(names).await?;
                Ok(found.into_iter().filter_map(|l| Some((l.load_balancer_name()?.to_string(), l))).collect())
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
        }));
        Self {
            ec2,
            elb,
            elbv2,
            cache,
            cluster,
            vpc_id,
            fallback_subnet,
            settings,
            zone_types: Default::default(),
            discovered: Default::default(),
            classic_batch,
            nlb_batch,
            ensured: Default::default(),
            shared_group_deletions: Default::default(),
            tick: Default::default(),
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
            for tg in self.elbv2.target_groups_of(lb.load_balancer_arn().unwrap_or_default()).await.map_err(from_aws)? {
                let port = u16::try_from(tg.port().unwrap_or_default()).unwrap_or_default();
                self.nlb_retarget(tg.target_group_arn().unwrap_or_default(), port, &instances).await?;
            }
        }
        Ok(())
    }
}

/// A Warning's text for pieces an earlier load balancer of the Service (`other`) left that
/// could not all be deleted now.
fn leftover_warning(other: &str, err: &CloudError) -> String {
    format!(
        "what an earlier {other} of this Service left could not all be deleted yet ({err}); it is looked for again when the Service is deleted"
    )
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
        let same_as_before = {
            let mut ensured = self.ensured.lock().expect("lock");
            let same = ensured.get(&cfg.uid) == Some(&cfg.kind);
            if !same {
                // Until this ensure succeeds, either type may exist: deletion asks both.
                ensured.remove(&cfg.uid);
            }
            same
        };
        let mut other_deleted = false;
        let mut status = match cfg.kind {
            Kind::Classic => {
                let (status, deleted) =
                    self.classic_ensure(&cfg, cluster, nodes, service.periodic, !same_as_before).await?;
                other_deleted = deleted;
                status
            }
            Kind::Nlb => {
                if !same_as_before && self.classic_describe(&name).await.map_err(from_aws)?.is_some() {
                    self.classic_delete(&cfg.uid).await?;
                    other_deleted = true;
                }
                self.nlb_ensure(&cfg, cluster, nodes, service.periodic).await?
            }
        };
        // The status showed another load balancer: a type change cut short after the old one
        // went (by a restart, before its status was written) may have left the old type's
        // pieces, found by name and tags. Never on a create (no status yet) nor on a re-ensure
        // (the status shows this load balancer), so it costs nothing there.
        if !other_deleted
            && !service.current_ingress.is_empty()
            && !status.ingress.is_empty()
            && service.current_ingress != status.ingress
        {
            // Best effort: the new load balancer works, and its status is written, whatever
            // its predecessor left.
            let cleaned = match cfg.kind {
                Kind::Classic => Box::pin(self.nlb_delete(&cfg.namespace, &cfg.name, &cfg.uid, cluster)).await,
                Kind::Nlb => Box::pin(self.classic_delete(&cfg.uid)).await,
            };
            if let Err(err) = cleaned {
                let other = if cfg.kind == Kind::Classic { "NLB" } else { "Classic ELB" };
                status.warnings.push(leftover_warning(other, &err));
            }
        }
        // Pieces of the other type left (the only warnings of the ensures above): the type stays
        // unknown, so the Service's deletion looks for both types and tries them again.
        if status.warnings.is_empty() {
            self.ensured.lock().expect("lock").insert(cfg.uid.clone(), cfg.kind);
        }
        warnings.append(&mut status.warnings);
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
            Kind::Nlb => self.nlb_ensure(&cfg, cluster, nodes, false).await.map(|_| ()),
        }
    }

    async fn ensure_deleted(&self, cluster: &str, service: &ServiceInfo) -> Result<(), CloudError> {
        // Whatever the annotation says now: the type this process last ensured when it knows
        // one (an ensure of the other type clears it first), else both types.
        let known = self.ensured.lock().expect("lock").get(&service.uid).copied();
        if known != Some(Kind::Nlb) {
            self.classic_delete(&service.uid).await?;
        }
        if known != Some(Kind::Classic) {
            self.nlb_delete(&service.namespace, &service.name, &service.uid, cluster).await?;
        }
        self.ensured.lock().expect("lock").remove(&service.uid);
        Ok(())
    }
}
