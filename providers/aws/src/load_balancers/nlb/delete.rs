//! Deleting an NLB and everything it owns.

use aws_sdk_ec2::types::SecurityGroup;
use cloud_provider::CloudError;

use super::super::plan::{Action, Change, GroupRef};
use super::super::security_groups::{self, Rule};
use super::super::{AwsLoadBalancers, SERVICE_NAME_TAG, names};

impl AwsLoadBalancers {
    /// Deletes the NLB named after `uid` and everything it owns: listeners go with it, then its
    /// target groups (also orphans found by name and tags), its rules on node groups, and its
    /// managed security group.
    pub(crate) async fn nlb_delete(
        &self,
        namespace: &str,
        service: &str,
        uid: &str,
        cluster_name: &str,
    ) -> Result<(), CloudError> {
        let name = names::load_balancer_name(uid);
        let lb = self.nlb_describe(&name).await?;
        let arn = lb.as_ref().and_then(|lb| lb.load_balancer_arn()).map(String::from);
        // Listed before the load balancer goes, while they still show it.
        let groups = self.nlb_target_groups(namespace, service, arn.as_deref()).await?;
        if let Some(arn) = arn {
            let delete = Action::NlbDelete { load_balancer: arn };
            self.apply(&[Change::new(delete, "the Service no longer wants a load balancer")]).await?;
        }
        let plan: Vec<Change> = groups
            .into_iter()
            .map(|tg| Change::new(Action::NlbDeleteTargetGroup { target_group: tg }, "its load balancer is deleted"))
            .collect();
        self.apply(&plan).await?;
        // Its own group and the cluster's shared backend group: in the VPC's groups as the rule
        // removal last saw them, else in one look.
        let own = names::nlb_security_group_name(cluster_name, namespace, service, uid);
        let backend = names::nlb_backend_group_name(&self.cluster.cluster_id);
        let groups = if self.settings.disable_security_group_ingress {
            self.groups_named(&[&own, &backend]).await?
        } else {
            self.nlb_remove_node_rules(&name).await?
        };
        let (owned, shared): (Vec<SecurityGroup>, Vec<SecurityGroup>) = groups
            .into_iter()
            .filter(|g| g.group_name() == Some(own.as_str()) || g.group_name() == Some(backend.as_str()))
            .filter(|g| self.is_owned_group(g))
            .partition(|g| g.group_name() == Some(own.as_str()));
        // Node rules of an NLB are CIDR rules, removed above; any rule referencing its own group
        // was written by someone else and stays (the deletion then says so and waits).
        self.delete_groups(&owned).await?;
        match shared.into_iter().next() {
            Some(backend) => self.nlb_release_backend_group(backend).await,
            None => Ok(()),
        }
    }

    /// The cluster's shared backend group goes with the last NLB carrying it: the "all from it"
    /// rules it has on other groups (the Nodes') are revoked, then it is deleted. Serialized
    /// with the other shared-group deletions, so of NLBs deleted at once the last one sees the
    /// others gone.
    async fn nlb_release_backend_group(&self, backend: SecurityGroup) -> Result<(), CloudError> {
        let id = backend.group_id().unwrap_or_default().to_string();
        let _one_at_a_time = self.shared_group_deletions.lock().await;
        if self.elbv2.all_load_balancers().await?.iter().any(|lb| lb.security_groups().contains(&id)) {
            return Ok(());
        }
        let admit = Rule::all_from_group(&id).identity();
        for group in self.groups_referencing(&id).await? {
            let ours: Vec<Rule> =
                security_groups::ingress(&group).into_iter().filter(|r| r.identity() == admit).collect();
            self.revoke(&group, ours, "no NLB carries the shared backend group any more").await?;
        }
        self.delete_groups(&[backend]).await
    }

    /// The target groups to delete with the NLB, in one listing: those attached to it (`lb`),
    /// and those of this Service left without a load balancer by an interrupted create or
    /// delete (found by their name prefix, confirmed by the cluster and service-name tags).
    async fn nlb_target_groups(
        &self,
        namespace: &str,
        service: &str,
        lb: Option<&str>,
    ) -> Result<Vec<String>, CloudError> {
        let prefix = names::target_group_prefix(namespace, service);
        let mut out = Vec::new();
        let mut candidates = Vec::new();
        for g in self.elbv2.all_target_groups().await? {
            let Some(arn) = g.target_group_arn() else { continue };
            if lb.is_some_and(|lb| g.load_balancer_arns().iter().any(|a| a == lb)) {
                out.push(arn.to_string());
            } else if g.target_group_name().is_some_and(|n| n.starts_with(&prefix)) {
                candidates.push(arn.to_string());
            }
        }
        let key = format!("{namespace}/{service}");
        for chunk in candidates.chunks(20) {
            for d in self.elbv2.tags(chunk.to_vec()).await? {
                let pairs: Vec<(&str, &str)> =
                    d.tags().iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())).collect();
                let ours = self.cluster.is_owned(pairs.iter().copied())
                    && pairs.iter().any(|(k, v)| *k == SERVICE_NAME_TAG && *v == key);
                if ours {
                    out.extend(d.resource_arn().map(String::from));
                }
            }
        }
        Ok(out)
    }

    /// Removes this NLB's client and health rules, found by their descriptions, from every group
    /// in the VPC (also untagged node groups, which upstream leaves with the rules), then the
    /// shared MTU rule from groups where no NLB's client rule is left. The second look comes
    /// *after* our own revocation, so of several NLBs deleted at once the last one to revoke
    /// always sees the others gone and removes the MTU rule: it cannot be left behind by a race.
    /// Returns the VPC's groups as the second look saw them.
    async fn nlb_remove_node_rules(&self, name: &str) -> Result<Vec<SecurityGroup>, CloudError> {
        let client_marker = names::nlb_client_rule(name);
        let health_marker = names::nlb_health_rule(name);
        for group in &self.vpc_groups().await? {
            let ours: Vec<Rule> = security_groups::ingress(group)
                .into_iter()
                .filter(|r| matches!(r.description.as_deref(), Some(d) if d == client_marker || d == health_marker))
                .collect();
            self.revoke(group, ours, "the deleted load balancer's client and health rules").await?;
        }
        let groups = self.vpc_groups().await?;
        for group in &groups {
            let rules = security_groups::ingress(group);
            let clients_left = rules
                .iter()
                .any(|r| r.description.as_deref().is_some_and(|d| d.starts_with("kubernetes.io/rule/nlb/client=")));
            if !clients_left {
                let mtu: Vec<Rule> =
                    rules.into_iter().filter(|r| r.description.as_deref() == Some(names::NLB_MTU_RULE)).collect();
                self.revoke(group, mtu, "no NLB's client rule is left in this group").await?;
            }
        }
        Ok(groups)
    }

    async fn revoke(&self, group: &SecurityGroup, rules: Vec<Rule>, reason: &str) -> Result<(), CloudError> {
        if rules.is_empty() {
            return Ok(());
        }
        let group = GroupRef::Id(group.group_id().unwrap_or_default().to_string());
        self.apply(&[Change::new(Action::RevokeIngress { group, rules }, reason)]).await.map(|_| ())
    }
}
