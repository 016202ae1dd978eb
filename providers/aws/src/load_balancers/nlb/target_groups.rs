//! NLB listeners and target groups: one per port, health checks changed in place, targets,
//! attributes.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, Listener, ProtocolEnum, TargetDescription, TargetGroup, TargetGroupAttribute,
    TargetHealthStateEnum, TargetTypeEnum,
};
use cloud_provider::CloudError;

use super::super::AwsLoadBalancers;
use super::super::service_config::LbConfig;
use super::{CHUNK, Mapping};
use crate::errors::AwsError;

impl AwsLoadBalancers {
    pub(crate) async fn target_groups_of(&self, arn: &str) -> Result<Vec<TargetGroup>, AwsError> {
        let r = self.elbv2.describe_target_groups().load_balancer_arn(arn);
        match self.calls.run("aws/elbv2.DescribeTargetGroups", r.send()).await {
            Ok(out) => Ok(out.target_groups().to_vec()),
            // AWS answers an empty list; some emulators answer "not found".
            Err(err) if err.has_code("TargetGroupNotFound") => Ok(Vec::new()),
            Err(err) => Err(err),
        }
    }

    pub(super) async fn target_group_named(&self, name: &str) -> Result<Option<TargetGroup>, AwsError> {
        let r = self.elbv2.describe_target_groups().names(name);
        match self.calls.run("aws/elbv2.DescribeTargetGroups", r.send()).await {
            Ok(out) => Ok(out.target_groups().first().cloned()),
            Err(err) if err.has_code("TargetGroupNotFound") => Ok(None),
            Err(err) => Err(err),
        }
    }

    pub(super) async fn nlb_listeners(
        &self,
        cfg: &LbConfig,
        arn: &str,
        mappings: &[Mapping],
        instances: &[aws_sdk_ec2::types::Instance],
    ) -> Result<(), CloudError> {
        let listeners: Vec<Listener> = self
            .calls
            .run("aws/elbv2.DescribeListeners", self.elbv2.describe_listeners().load_balancer_arn(arn).send())
            .await?
            .listeners()
            .to_vec();
        let mut groups: Vec<TargetGroup> = self.target_groups_of(arn).await?;
        let mut unused_groups: BTreeSet<String> = BTreeSet::new();

        for m in mappings {
            let tg_name = self.tg_name(cfg, m);
            let tg = match groups.iter().find(|g| g.target_group_name() == Some(tg_name.as_str())).cloned() {
                Some(tg) => tg,
                None => match self.target_group_named(&tg_name).await? {
                    Some(tg) => tg,
                    None => {
                        let tg = self.nlb_create_target_group(cfg, &tg_name, m).await?;
                        groups.push(tg.clone());
                        tg
                    }
                },
            };
            let tg_arn = tg.target_group_arn().unwrap_or_default().to_string();
            self.nlb_health_in_place(&tg, m).await?;
            self.nlb_targets(&tg_arn, m.node_port, instances).await?;
            self.nlb_target_group_attributes(cfg, &tg_arn).await?;

            let listener = listeners.iter().find(|l| l.port() == Some(m.port.into()));
            let forward = Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(&tg_arn).build();
            let certificates =
                cfg.ssl_cert.clone().filter(|_| m.tls).map(|c| vec![Certificate::builder().certificate_arn(c).build()]);
            let ssl_policy = cfg.ssl_negotiation_policy.clone().filter(|_| m.tls);
            match listener {
                Some(l) if l.protocol() == Some(&m.front) => {
                    let current_tg = l.default_actions().first().and_then(|a| a.target_group_arn()).unwrap_or_default();
                    let current_cert = l.certificates().first().and_then(|c| c.certificate_arn()).map(String::from);
                    let cert_drift = m.tls && current_cert != cfg.ssl_cert;
                    let policy_drift = ssl_policy.is_some() && l.ssl_policy().map(String::from) != ssl_policy;
                    if current_tg != tg_arn || cert_drift || policy_drift {
                        let r = self
                            .elbv2
                            .modify_listener()
                            .listener_arn(l.listener_arn().unwrap_or_default())
                            .default_actions(forward)
                            .set_certificates(certificates)
                            .set_ssl_policy(ssl_policy);
                        self.calls.run("aws/elbv2.ModifyListener", r.send()).await?;
                        if current_tg != tg_arn && !current_tg.is_empty() {
                            unused_groups.insert(current_tg.to_string());
                        }
                    }
                }
                other => {
                    if let Some(l) = other {
                        // Same port, other protocol: replace the listener.
                        let r = self.elbv2.delete_listener().listener_arn(l.listener_arn().unwrap_or_default());
                        self.calls.run("aws/elbv2.DeleteListener", r.send()).await?;
                        unused_groups
                            .extend(l.default_actions().iter().filter_map(|a| a.target_group_arn().map(String::from)));
                    }
                    let r = self
                        .elbv2
                        .create_listener()
                        .load_balancer_arn(arn)
                        .port(m.port.into())
                        .protocol(m.front.clone())
                        .default_actions(forward)
                        .set_certificates(certificates)
                        .set_ssl_policy(ssl_policy)
                        .set_tags(Some(self.v2_tags(cfg)));
                    self.calls.run("aws/elbv2.CreateListener", r.send()).await?;
                }
            }
            unused_groups.remove(&tg_arn);
        }
        // Listeners for ports the Service no longer has.
        for l in &listeners {
            if !mappings.iter().any(|m| l.port() == Some(m.port.into())) {
                let r = self.elbv2.delete_listener().listener_arn(l.listener_arn().unwrap_or_default());
                self.calls.run("aws/elbv2.DeleteListener", r.send()).await?;
                unused_groups.extend(l.default_actions().iter().filter_map(|a| a.target_group_arn().map(String::from)));
            }
        }
        let wanted: BTreeSet<String> = mappings.iter().map(|m| self.tg_name(cfg, m)).collect();
        for g in &groups {
            if g.target_group_name().is_some_and(|n| !wanted.contains(n)) {
                unused_groups.insert(g.target_group_arn().unwrap_or_default().to_string());
            }
        }
        for tg in unused_groups {
            self.delete_target_group(&tg).await?;
        }
        Ok(())
    }

    pub(super) async fn delete_target_group(&self, arn: &str) -> Result<(), CloudError> {
        match self
            .calls
            .run("aws/elbv2.DeleteTargetGroup", self.elbv2.delete_target_group().target_group_arn(arn).send())
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if err.is_not_found() => Ok(()),
            Err(err) if err.has_code("ResourceInUse") => Err(CloudError::retry_after(
                "aws/nlb.delete_target_group",
                format!("target group {arn} is still in use; deleting it again shortly"),
                std::time::Duration::from_secs(10),
            )),
            Err(err) => Err(err.into()),
        }
    }

    pub(super) async fn nlb_create_target_group(
        &self,
        cfg: &LbConfig,
        name: &str,
        m: &Mapping,
    ) -> Result<TargetGroup, CloudError> {
        let h = &m.health;
        let r = self
            .elbv2
            .create_target_group()
            .name(name)
            .protocol(m.target.clone())
            .port(m.node_port.into())
            .vpc_id(&self.vpc_id)
            .target_type(TargetTypeEnum::Instance)
            .health_check_protocol(ProtocolEnum::from(h.protocol.as_str()))
            .health_check_port(&h.port)
            .set_health_check_path(h.path.clone())
            .health_check_interval_seconds(h.interval)
            .healthy_threshold_count(h.healthy)
            .unhealthy_threshold_count(h.unhealthy)
            .set_tags(Some(self.v2_tags(cfg)));
        let out = self.calls.run("aws/elbv2.CreateTargetGroup", r.send()).await?;
        out.target_groups()
            .first()
            .cloned()
            .ok_or_else(|| CloudError::transient("aws/nlb.target_group", "CreateTargetGroup returned nothing"))
    }

    /// Port, path and thresholds change in place; protocol and interval are part of the target
    /// group's name (upstream), so a change of those made a new group above. The timeout is
    /// never sent, as upstream never sends it: AWS derives it from the protocol, and sending
    /// it would modify every target group upstream made.
    pub(super) async fn nlb_health_in_place(&self, tg: &TargetGroup, m: &Mapping) -> Result<(), CloudError> {
        let h = &m.health;
        let same = tg.health_check_port() == Some(h.port.as_str())
            && (h.path.is_none() || tg.health_check_path() == h.path.as_deref())
            && tg.healthy_threshold_count() == Some(h.healthy)
            && tg.unhealthy_threshold_count() == Some(h.unhealthy);
        if same {
            return Ok(());
        }
        let r = self
            .elbv2
            .modify_target_group()
            .target_group_arn(tg.target_group_arn().unwrap_or_default())
            .health_check_port(&h.port)
            .set_health_check_path(h.path.clone())
            .healthy_threshold_count(h.healthy)
            .unhealthy_threshold_count(h.unhealthy);
        self.calls.run("aws/elbv2.ModifyTargetGroup", r.send()).await?;
        Ok(())
    }

    /// Deregister first, then register (helps at instance-count limits), in chunks.
    pub(crate) async fn nlb_targets(
        &self,
        tg: &str,
        node_port: u16,
        instances: &[aws_sdk_ec2::types::Instance],
    ) -> Result<(), CloudError> {
        let health = self
            .calls
            .run("aws/elbv2.DescribeTargetHealth", self.elbv2.describe_target_health().target_group_arn(tg).send())
            .await?;
        let have: BTreeSet<(String, i32)> = health
            .target_health_descriptions()
            .iter()
            .filter(|d| d.target_health().and_then(|h| h.state()) != Some(&TargetHealthStateEnum::Draining))
            .filter_map(|d| d.target().map(|t| (t.id().unwrap_or_default().to_string(), t.port().unwrap_or_default())))
            .collect();
        let want: BTreeSet<(String, i32)> =
            instances.iter().filter_map(|i| i.instance_id().map(|id| (id.to_string(), i32::from(node_port)))).collect();
        let to_target = |(id, port): &(String, i32)| TargetDescription::builder().id(id).port(*port).build();
        let remove: Vec<TargetDescription> = have.difference(&want).map(to_target).collect();
        let add: Vec<TargetDescription> = want.difference(&have).map(to_target).collect();
        for chunk in remove.chunks(CHUNK) {
            let r = self.elbv2.deregister_targets().target_group_arn(tg).set_targets(Some(chunk.to_vec()));
            self.calls.run("aws/elbv2.DeregisterTargets", r.send()).await?;
        }
        for chunk in add.chunks(CHUNK) {
            let r = self.elbv2.register_targets().target_group_arn(tg).set_targets(Some(chunk.to_vec()));
            self.calls.run("aws/elbv2.RegisterTargets", r.send()).await?;
        }
        Ok(())
    }

    pub(super) async fn nlb_target_group_attributes(&self, cfg: &LbConfig, tg: &str) -> Result<(), CloudError> {
        if cfg.target_group_attributes.is_empty() {
            return Ok(());
        }
        let out = self
            .calls
            .run(
                "aws/elbv2.DescribeTargetGroupAttributes",
                self.elbv2.describe_target_group_attributes().target_group_arn(tg).send(),
            )
            .await?;
        let have: BTreeMap<&str, &str> = out.attributes().iter().filter_map(|a| Some((a.key()?, a.value()?))).collect();
        let changes: Vec<TargetGroupAttribute> = cfg
            .target_group_attributes
            .iter()
            .filter(|(k, v)| have.get(k.as_str()) != Some(&v.to_string().as_str()))
            .map(|(k, v)| TargetGroupAttribute::builder().key(k).value(v.to_string()).build())
            .collect();
        if !changes.is_empty() {
            let r = self.elbv2.modify_target_group_attributes().target_group_arn(tg).set_attributes(Some(changes));
            self.calls.run("aws/elbv2.ModifyTargetGroupAttributes", r.send()).await?;
        }
        Ok(())
    }
}
