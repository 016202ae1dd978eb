//! Finding the cluster at startup: region, VPC, cluster ID (upstream's order).
//!
//! - Region: `Zone` (its region wins, as upstream), else `Region`, else IMDS.
//! - Off-AWS mode (`VPC` + `SubnetID` or `RoleARN` + a cluster ID, as upstream): nothing more
//!   is needed, and IMDS is never asked.
//! - Otherwise this process runs on an instance: IMDS gives its ID (IMDSv2 tokens), EC2 its VPC
//!   and tags; the cluster ID comes from the config or the instance's cluster tag.

use aws_config::imds;

use crate::config::CloudConfig;
use crate::ec2::Ec2;
use crate::tags::{ClusterTags, cluster_id_from_tags};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub vpc_id: String,
    pub cluster: ClusterTags,
    /// Our own instance, when running on one.
    pub self_instance_id: Option<String>,
    /// The subnet of the self instance (or `SubnetID`): the fallback for load balancers.
    pub subnet_id: Option<String>,
}

pub async fn region(config: &CloudConfig) -> Result<String, String> {
    if let Some(region) = config.region() {
        return Ok(region);
    }
    let client = crate::clients::imds(config)?;
    let region = client
        .get("/latest/meta-data/placement/region")
        .await
        .map_err(|e| format!("no Region or Zone in the cloud-config, and IMDS did not say: {e}"))?;
    Ok(String::from(region))
}

pub async fn discover(config: &CloudConfig, ec2: &Ec2) -> Result<Discovered, String> {
    // Upstream writes the legacy `KubernetesCluster` tag whenever `KubernetesClusterTag` is
    // configured, or, without a configured ID, when this instance carries that tag.
    let legacy = config.global.kubernetes_cluster_tag.is_some();
    if config.off_aws() {
        return Ok(Discovered {
            vpc_id: config.global.vpc.clone().unwrap_or_default(),
            cluster: ClusterTags { cluster_id: config.cluster_id().unwrap_or_default(), legacy },
            self_instance_id: None,
            subnet_id: config.global.subnet_id.clone(),
        });
    }
    let client = crate::clients::imds(config)?;
    let instance_id: String = get(&client, "/latest/meta-data/instance-id").await?;
    let instance = ec2
        .instances(vec![instance_id.clone()], Vec::new())
        .await
        .map_err(|e| format!("describing this instance ({instance_id}): {e}"))?
        .into_iter()
        .next()
        .ok_or_else(|| format!("this instance ({instance_id}, from IMDS) is not known to EC2"))?;
    let vpc_id = match &config.global.vpc {
        Some(vpc) => vpc.clone(),
        None => instance.vpc_id().map(str::to_string).ok_or("this instance has no VPC")?,
    };
    let tagged = cluster_id_from_tags(
        instance.tags().iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
    )
    .map_err(|e| format!("this instance's tags: {e}"))?;
    let (cluster_id, legacy) = match (config.cluster_id(), tagged) {
        (Some(id), _) => (id, legacy),
        (None, Some(t)) => (t.cluster_id, t.legacy),
        (None, None) => {
            return Err(format!(
                "no cluster ID: set KubernetesClusterID in [Global], or tag this instance ({instance_id}) kubernetes.io/cluster/<id>"
            ));
        }
    };
    Ok(Discovered {
        vpc_id,
        cluster: ClusterTags { cluster_id, legacy },
        self_instance_id: Some(instance_id),
        subnet_id: config.global.subnet_id.clone().or_else(|| instance.subnet_id().map(str::to_string)),
    })
}

async fn get(client: &imds::Client, path: &str) -> Result<String, String> {
    client.get(path).await.map(String::from).map_err(|e| format!("IMDS {path}: {e}"))
}
