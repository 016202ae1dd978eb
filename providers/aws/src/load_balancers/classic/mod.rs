//! Classic ELB: listeners, security groups, attributes, health check, node rules, instances.
//!
//! Every sync is `observe` (reads, batched with concurrent syncs where AWS allows), a pure
//! [`plan`] of the writes that close the gap, and `apply` of that plan: a re-ensure with
//! nothing changed plans, and so makes, no write.

pub(crate) mod plan;
#[cfg(test)]
mod plan_tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_sdk_ec2::types::SecurityGroup;
use aws_sdk_elasticloadbalancing::types::LoadBalancerDescription;
use cloud_provider::{CloudError, IngressPoint, LoadBalancerStatus, NodeInfo};

use super::plan::{Action, Change, GroupRef};
use super::security_groups::{self, Rule};
use super::service_config::LbConfig;
use super::{AwsLoadBalancers, names, tick};
use crate::errors::AwsError;
use plan::{Desired, Observed};

/// What a deletion needs to know.
#[derive(Debug, Default)]
pub(crate) struct DeleteObserved {
    pub lb: Option<LoadBalancerDescription>,
    /// `k8s-elb-<name>` groups owned by the cluster.
    pub own: Vec<SecurityGroup>,
    /// For each group whose node rules this deletion revokes, the groups with rules from it.
    pub referencing: BTreeMap<String, Vec<SecurityGroup>>,
}

impl AwsLoadBalancers {
    /// Describes by name, batched with concurrent callers (see `describe_batch`).
    pub(crate) async fn classic_describe(&self, name: &str) -> Result<Option<LoadBalancerDescription>, AwsError> {
        self.classic_batch.get(name).await
    }

    fn classic_desired<'a>(&'a self, cfg: &'a LbConfig) -> Desired<'a> {
        Desired { cfg, settings: &self.settings, cluster: &self.cluster, tags: self.resource_tags(cfg) }
    }

    /// Reads everything planning a Classic ELB for `cfg` needs. `full`: also what only a full
    /// ensure needs (subnets, tags, attributes, its own group); otherwise only the targets.
    /// `periodic`: for a periodic re-ensure, which shares what it can with the others of its
    /// tick (see `tick.rs`).
    async fn classic_observe(
        &self,
        cfg: &LbConfig,
        nodes: &[NodeInfo],
        full: bool,
        periodic: bool,
    ) -> Result<Observed, CloudError> {
        let name = names::load_balancer_name(&cfg.uid);
        let shared = if periodic {
            self.tick.classic.get(|| self.classic_vpc_listing()).await?.get(&name).cloned()
        } else {
            None
        };
        let (lb, tags) = match shared {
            Some((lb, tags)) => (Some(lb), Some(tags)),
            None => (self.classic_describe(&name).await?, None),
        };
        let instances = self.target_instances(&cfg.target_node_labels, nodes).await?;
        let own_group_used = cfg.security_groups.is_empty() && self.settings.elb_security_group.is_none();
        let rules = !self.settings.disable_security_group_ingress;
        // A full ensure reads every group it needs in one VPC-wide call: the Nodes', its own
        // (by name) and those with rules from its own.
        let vpc = if full && (rules || own_group_used) { Some(self.vpc_groups_for(periodic).await?) } else { None };
        let node_groups = match (&vpc, rules) {
            (_, false) => Vec::new(),
            (Some(all), true) => self.pick_node_groups(&instances, all),
            (None, true) => self.node_groups(&instances).await?,
        };
        let mut observed = Observed {
            instances: instances.iter().filter_map(|i| i.instance_id().map(String::from)).collect(),
            node_groups,
            ..Default::default()
        };
        if let Some(all) = &vpc {
            let markers = [names::nlb_client_rule(&name), names::nlb_health_rule(&name)];
            observed.nlb_leftover = all.iter().any(|g| {
                security_groups::ingress(g).iter().any(|r| r.description.as_ref().is_some_and(|d| markers.contains(d)))
            });
        }
        if full {
            observed.subnets = self.subnets_for(cfg).await?;
            if own_group_used && let Some(all) = &vpc {
                let own = names::classic_security_group_name(&name);
                observed.own_group = all.iter().find(|g| g.group_name() == Some(own.as_str())).cloned();
            }
            if lb.is_some() {
                observed.tags = match tags {
                    Some(tags) => tags,
                    None => self.classic_tags(&name).await?,
                };
                observed.attributes =
                    self.tick.classic_attributes.get(&name, periodic, self.elb.attributes(&name)).await?;
            }
        }
        let own_group_id = match (&observed.own_group, &lb) {
            (Some(g), _) => g.group_id().map(String::from),
            (None, Some(lb)) if !full => lb.security_groups().first().cloned(),
            _ => None,
        };
        if own_group_used
            && rules
            && let Some(id) = own_group_id
        {
            observed.referencing = match &vpc {
                Some(all) => Self::referencing_in(all, &id),
                None => self.groups_referencing(&id).await?,
            };
        }
        observed.lb = lb;
        Ok(observed)
    }

    async fn classic_tags(&self, name: &str) -> Result<Vec<(String, String)>, CloudError> {
        Ok(self.elb.tags(vec![name.to_string()]).await?.iter().flat_map(|d| tag_pairs(d.tags())).collect())
    }

    /// The VPC's Classic ELBs with their tags, by name: what the periodic re-ensures of one
    /// tick share (one `DescribeLoadBalancers` per 400 load balancers, one `DescribeTags` per 20).
    async fn classic_vpc_listing(&self) -> Result<Arc<HashMap<String, tick::ClassicEntry>>, CloudError> {
        let mut found: HashMap<String, tick::ClassicEntry> = self
            .elb
            .all_load_balancers()
            .await?
            .into_iter()
            .filter(|d| d.vpc_id() == Some(self.vpc_id.as_str()))
            .filter_map(|d| Some((d.load_balancer_name()?.to_string(), (d, Vec::new()))))
            .collect();
        let names: Vec<String> = found.keys().cloned().collect();
        let mut tagged = std::collections::HashSet::new();
        for chunk in names.chunks(20) {
            let described = match self.elb.tags(chunk.to_vec()).await {
                Ok(described) => described,
                // One of them deleted since the listing (by anyone: the VPC may hold other
                // clusters' ELBs) fails the call: ask for each alone, skipping the gone.
                Err(err) if err.is_not_found() && chunk.len() > 1 => {
                    let mut one_by_one = Vec::new();
                    for name in chunk {
                        match self.elb.tags(vec![name.clone()]).await {
                            Ok(described) => one_by_one.extend(described),
                            Err(err) if err.is_not_found() => {}
                            Err(err) => return Err(err.into()),
                        }
                    }
                    one_by_one
                }
                Err(err) if err.is_not_found() => Vec::new(),
                Err(err) => return Err(err.into()),
            };
            for d in described {
                if let Some((_, tags)) = d.load_balancer_name().and_then(|n| found.get_mut(n)) {
                    *tags = tag_pairs(d.tags());
                    tagged.insert(d.load_balancer_name().unwrap_or_default().to_string());
                }
            }
        }
        // Those gone meanwhile are left to each one's own describe.
        found.retain(|name, _| tagged.contains(name));
        Ok(Arc::new(found))
    }

    pub(crate) async fn classic_plan(&self, cfg: &LbConfig, nodes: &[NodeInfo]) -> Result<Vec<Change>, CloudError> {
        let observed = self.classic_observe(cfg, nodes, true, false).await?;
        plan::ensure(&self.classic_desired(cfg), &observed)
    }

    /// Ensures the Classic ELB. `nlb_may_exist`: the Service may have an NLB from an earlier
    /// type, which then goes first with all it owns (upstream refuses the change); it is looked
    /// for only when there is no Classic ELB yet (one is made only after the NLB went), so a
    /// Classic ELB's first error names the API it needs. Returns whether an NLB was deleted.
    pub(crate) async fn classic_ensure(
        &self,
        cfg: &LbConfig,
        cluster_name: &str,
        nodes: &[NodeInfo],
        periodic: bool,
        nlb_may_exist: bool,
    ) -> Result<(LoadBalancerStatus, bool), CloudError> {
        let mut observed = self.classic_observe(cfg, nodes, true, periodic).await?;
        let name = names::load_balancer_name(&cfg.uid);
        let nlb = nlb_may_exist && observed.lb.is_none() && self.nlb_describe(&name).await?.is_some();
        let service = format!("{}/{}", cfg.namespace, cfg.name);
        let mut warnings = Vec::new();
        let nlb_handled = nlb || observed.nlb_leftover;
        if nlb_handled {
            // The NLB itself goes before its replacement is made; pieces without their NLB
            // never hold up the Classic ELB: one that cannot go yet (a rule someone else wrote
            // on its group, say) is reported and left. (Boxed: these futures are large.)
            let what = if nlb {
                "deleting the NLB of this Service's earlier type"
            } else {
                "deleting what an NLB of this Service left"
            };
            tracing::info!(%service, "{what}");
            match Box::pin(self.nlb_delete(&cfg.namespace, &cfg.name, &cfg.uid, cluster_name)).await {
                Ok(()) => observed = Box::pin(self.classic_observe(cfg, nodes, true, false)).await?,
                Err(err) if !nlb => warnings.push(super::leftover_warning("NLB", &err)),
                Err(err) => return Err(err),
            }
        }
        let plan = plan::ensure(&self.classic_desired(cfg), &observed)?;
        let applied = self.apply(&plan).await?;
        let dns = observed.lb.as_ref().and_then(|lb| lb.dns_name().map(String::from)).or(applied.dns_name);
        let status =
            LoadBalancerStatus { ingress: dns.map(|d| vec![IngressPoint::hostname(d)]).unwrap_or_default(), warnings };
        Ok((status, nlb_handled))
    }

    pub(crate) async fn classic_update_hosts(&self, cfg: &LbConfig, nodes: &[NodeInfo]) -> Result<(), CloudError> {
        let observed = self.classic_observe(cfg, nodes, false, false).await?;
        if observed.lb.is_none() {
            let name = names::load_balancer_name(&cfg.uid);
            return Err(CloudError::transient("aws/elb.update_hosts", format!("load balancer {name} not found")));
        }
        self.apply(&plan::hosts(&self.classic_desired(cfg), &observed)).await.map(|_| ())
    }

    /// Registers and deregisters instances so that exactly `instances` are behind the ELB (the
    /// targets of a Service whose annotations are invalid: nothing else changes).
    pub(crate) async fn classic_register(
        &self,
        name: &str,
        lb: &LoadBalancerDescription,
        instances: &[aws_sdk_ec2::types::Instance],
    ) -> Result<(), CloudError> {
        let observed = Observed {
            lb: Some(lb.clone()),
            instances: instances.iter().filter_map(|i| i.instance_id().map(String::from)).collect(),
            ..Default::default()
        };
        self.apply(&plan::register(name, &observed)).await.map(|_| ())
    }

    /// Deletes the Classic ELB named after `uid` and what this controller made for it, whatever
    /// the Service's annotations say now: the ELB, its own `k8s-elb-…` group (found by name and
    /// the `owned` tag, never a group a user or the cloud-config gave it), and the node-group
    /// rules admitting traffic from its group. Idempotent: each piece is found again on every
    /// call.
    pub(crate) async fn classic_delete(&self, uid: &str) -> Result<(), CloudError> {
        let name = names::load_balancer_name(uid);
        let mut observed = DeleteObserved {
            lb: self.classic_describe(&name).await?,
            own: self.owned_groups_named(&names::classic_security_group_name(&name)).await?,
            ..Default::default()
        };
        let mut _serialized = None;
        if !self.settings.disable_security_group_ingress {
            for group in &observed.own {
                let id = group.group_id().unwrap_or_default();
                observed.referencing.insert(id.to_string(), self.groups_referencing(id).await?);
            }
            // A group the user or the cloud-config gave: its node rules go only with the last
            // of this cluster's load balancers that use it. Deletions of ELBs sharing a group
            // are serialized from this look until the ELB is gone, so the last one sees the
            // others gone.
            if let Some(primary) = observed.lb.as_ref().and_then(|lb| lb.security_groups().first()).cloned()
                && !observed.own.iter().any(|g| g.group_id() == Some(primary.as_str()))
            {
                let mut users = self.shared_group_deletions.lock().await;
                if !self.classic_group_used_elsewhere(&mut users, &primary, &name).await? {
                    observed.referencing.insert(primary.clone(), self.groups_referencing(&primary).await?);
                }
                _serialized = Some(users);
            }
        }
        self.apply(&plan_delete(&name, &observed)).await.map(|_| ())
    }

    /// Whether another of this cluster's Classic ELBs (not `except`) sends its traffic from
    /// `group` (it is their first group). `users` holds the ELBs last seen using each group:
    /// one of them still there and still using it answers with one describe; when none is
    /// left, every load balancer is listed again (one made since may use the group), so a
    /// burst of deletions lists once at its start and once at its end instead of per deletion.
    async fn classic_group_used_elsewhere(
        &self,
        users: &mut HashMap<String, Vec<String>>,
        group: &str,
        except: &str,
    ) -> Result<bool, CloudError> {
        if let Some(known) = users.get_mut(group) {
            known.retain(|n| n != except);
            while let Some(candidate) = known.last() {
                let lb = self.classic_describe(candidate).await?;
                if lb.is_some_and(|lb| lb.security_groups().first().map(String::as_str) == Some(group)) {
                    return Ok(true);
                }
                known.pop();
            }
        }
        // The VPC's ELBs with their tags (a group is used only within its VPC).
        let found: Vec<String> = self
            .classic_vpc_listing()
            .await?
            .iter()
            .filter(|(name, _)| name.as_str() != except)
            .filter(|(_, (d, _))| d.security_groups().first().map(String::as_str) == Some(group))
            .filter(|(_, (_, tags))| self.cluster.is_cluster(tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
            .map(|(name, _)| name.clone())
            .collect();
        let used = !found.is_empty();
        if used {
            users.insert(group.to_string(), found);
        } else {
            users.remove(group);
        }
        Ok(used)
    }
}

fn tag_pairs(tags: &[aws_sdk_elasticloadbalancing::types::Tag]) -> Vec<(String, String)> {
    tags.iter().map(|t| (t.key().to_string(), t.value().unwrap_or_default().to_string())).collect()
}

/// The writes that delete a Classic ELB: our node rules from each group in
/// `observed.referencing`, the ELB, its own groups.
pub(crate) fn plan_delete(name: &str, observed: &DeleteObserved) -> Vec<Change> {
    let mut plan = Vec::new();
    for (from, groups) in &observed.referencing {
        let rule = Rule::all_from_group(from);
        let ours = |g: &&SecurityGroup| security_groups::ingress(g).iter().any(|r| r.identity() == rule.identity());
        for g in groups.iter().filter(ours) {
            plan.push(Change::new(
                Action::RevokeIngress {
                    group: GroupRef::Id(g.group_id().unwrap_or_default().into()),
                    rules: vec![rule.clone()],
                },
                format!("the node rule admitting {from}, whose load balancer is being deleted"),
            ));
        }
    }
    if observed.lb.is_some() {
        plan.push(Change::new(Action::ElbDelete { name: name.into() }, "the Service no longer wants a load balancer"));
    }
    for group in &observed.own {
        plan.push(Change::new(
            Action::DeleteSecurityGroup { group: group.group_id().unwrap_or_default().into() },
            "the deleted load balancer's own group",
        ));
    }
    plan
}
