//! Routes: the cluster's route table (`RouteTableID`, else the one route table in the VPC
//! carrying the cluster tag), a route per Node pod CIDR with the Node's instance as target.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_ec2::types::{RouteState, RouteTable};
use cloud_provider::{CloudError, NodeInfo, Route, Routes};

use crate::ec2::{Ec2, filter};
use crate::errors::AwsError;
use crate::instance_cache::{InstanceCache, InstanceKey};
use crate::instances::AwsInstances;
use crate::tags::ClusterTags;

/// A route's target instance that no Node names.
enum Stranger {
    /// Terminated, or unknown to EC2.
    Gone,
    /// A cluster instance (tagged for this cluster).
    Ours,
    /// Someone else's.
    Theirs,
}

pub struct AwsRoutes {
    ec2: Ec2,
    cache: Arc<InstanceCache>,
    cluster: ClusterTags,
    vpc_id: String,
    route_table_id: Option<String>,
}

impl AwsRoutes {
    pub fn new(
        ec2: Ec2,
        cache: Arc<InstanceCache>,
        cluster: ClusterTags,
        vpc_id: String,
        route_table_id: Option<String>,
    ) -> Self {
        Self { ec2, cache, cluster, vpc_id, route_table_id }
    }

    async fn table(&self) -> Result<RouteTable, CloudError> {
        if let Some(id) = &self.route_table_id {
            let tables = self.ec2.route_tables(vec![id.clone()], Vec::new()).await?;
            return tables
                .into_iter()
                .next()
                .ok_or_else(|| CloudError::invalid("aws/routes.table", format!("RouteTableID {id} does not exist")));
        }
        let tables = self
            .ec2
            // The cluster tag is matched here rather than by a `tag-key` filter, which not every
            // EC2 emulator implements for route tables.
            .route_tables(Vec::new(), vec![filter("vpc-id", [self.vpc_id.clone()])])
            .await?;
        let mut tagged: Vec<RouteTable> = tables
            .into_iter()
            .filter(|t| {
                self.cluster
                    .is_cluster(t.tags().iter().map(|x| (x.key().unwrap_or_default(), x.value().unwrap_or_default())))
            })
            .collect();
        match tagged.len() {
            1 => Ok(tagged.remove(0)),
            n => Err(CloudError::invalid(
                "aws/routes.table",
                format!(
                    "found {n} route tables in {} tagged {}; exactly one is needed (or set RouteTableID)",
                    self.vpc_id,
                    self.cluster.key()
                ),
            )),
        }
    }

    /// What a route's target instance is, when no Node names it.
    async fn stranger(&self, instance_id: &str) -> Result<Stranger, CloudError> {
        let Some(instance) = self.cache.get(&InstanceKey::Id(instance_id.to_string())).await? else {
            return Ok(Stranger::Gone);
        };
        if instance.state().and_then(|s| s.name()) == Some(&aws_sdk_ec2::types::InstanceStateName::Terminated) {
            return Ok(Stranger::Gone);
        }
        let tags = instance.tags().iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()));
        Ok(if self.cluster.is_cluster(tags) { Stranger::Ours } else { Stranger::Theirs })
    }

    fn table_id(table: &RouteTable) -> String {
        table.route_table_id().unwrap_or_default().to_string()
    }
}

impl Routes for AwsRoutes {
    async fn list(&self, cluster_name: &str, nodes: &[NodeInfo]) -> Result<Vec<Route>, CloudError> {
        let table = self.table().await?;
        let mut node_by_instance: HashMap<String, String> = HashMap::new();
        let mut by_dns = Vec::new();
        for n in nodes {
            match AwsInstances::key_for(n) {
                Some(InstanceKey::Id(id)) => {
                    node_by_instance.insert(id, n.name.clone());
                }
                Some(key @ InstanceKey::PrivateDns(_)) => by_dns.push((key, n.name.clone())),
                None => {}
            }
        }
        let mut resolved_dns = false;
        let mut routes = Vec::new();
        for route in table.routes() {
            let Some(cidr) = route.destination_cidr_block() else { continue };
            let mut blackhole = route.state() == Some(&RouteState::Blackhole);
            // A Node without a providerID yet (not initialized) is known by its private DNS
            // name: its instance is looked up (once, from the shared snapshot) only when a route
            // points at an instance no providerID names, so such a Node's route is not taken
            // for a stranger's and deleted.
            if let Some(id) = route.instance_id()
                && !node_by_instance.contains_key(id)
                && !resolved_dns
            {
                resolved_dns = true;
                for (key, name) in &by_dns {
                    if let Some(instance) = self.cache.get(key).await?
                        && let Some(found) = instance.instance_id()
                    {
                        node_by_instance.insert(found.to_string(), name.clone());
                    }
                }
            }
            let target = match route.instance_id() {
                Some(id) => match node_by_instance.get(id) {
                    Some(node) => node.clone(),
                    // Not a Node's instance. A cluster instance's is a stale pod route, and one
                    // to an instance that is gone a blackhole (AWS marks them so; some emulators
                    // do not, so look): the controller removes them inside the cluster CIDR.
                    // Anyone else's instance (a NAT instance, a VPN appliance) is not listed at
                    // all, so its routes are never touched, whatever the cluster CIDR.
                    None => match self.stranger(id).await? {
                        Stranger::Theirs => continue,
                        Stranger::Ours => String::new(),
                        Stranger::Gone => {
                            blackhole = true;
                            String::new()
                        }
                    },
                },
                None if blackhole => String::new(),
                // Gateways, peering, endpoints: never ours.
                None => continue,
            };
            routes.push(Route {
                name: format!("{cluster_name}-{cidr}"),
                target_node: target,
                destination_cidr: cidr.to_string(),
                blackhole,
            });
        }
        Ok(routes)
    }

    async fn create(
        &self,
        _cluster_name: &str,
        _name_hint: &str,
        route: &Route,
        node: &NodeInfo,
    ) -> Result<(), CloudError> {
        let key = AwsInstances::key_for(node).ok_or_else(|| AwsInstances::foreign(node))?;
        let instance = self.cache.get(&key).await?.ok_or(CloudError::InstanceNotFound)?;
        let instance_id = instance.instance_id().unwrap_or_default().to_string();
        if instance.source_dest_check() != Some(false) {
            self.ec2.disable_source_dest_check(&instance_id).await?;
        }
        let table = self.table().await?;
        let table_id = Self::table_id(&table);
        let stale = table.routes().iter().any(|r| {
            r.destination_cidr_block() == Some(route.destination_cidr.as_str())
                && r.state() == Some(&RouteState::Blackhole)
        });
        if stale {
            self.ec2.delete_route(&table_id, &route.destination_cidr).await?;
        }
        match self.ec2.create_route(&table_id, &route.destination_cidr, &instance_id).await {
            Ok(()) => Ok(()),
            Err(err) if err.has_code("RouteAlreadyExists") => Err(AwsError {
                message: format!(
                    "{} already routes somewhere else; it is removed on the next pass if it is ours",
                    route.destination_cidr
                ),
                ..err
            }
            .into()),
            Err(err) => Err(err.into()),
        }
    }

    async fn delete(&self, _cluster_name: &str, route: &Route) -> Result<(), CloudError> {
        let table = self.table().await?;
        match self.ec2.delete_route(&Self::table_id(&table), &route.destination_cidr).await {
            Err(err) if !err.is_not_found() => Err(err.into()),
            _ => Ok(()),
        }
    }
}
