//! One seeded VPC with registered, initialized Nodes and the real binary running the service
//! and cloud-node controllers against it: the ground of the load-balancer tests.

use anyhow::{Context, Result};
use ccm_e2e::{SeedOptions, SeededVpc, TestCluster};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams};

use super::aws::{WAIT, off_aws_config, register, start, wait_all_initialized};
use super::services::wait_hostname;
use super::{CcmProcess, eventually};

pub struct Ground {
    pub cluster: TestCluster,
    pub vpc: SeededVpc,
    pub client: kube::Client,
    pub ccm: CcmProcess,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

pub async fn ground(name: &str, instances: usize, extra_config: &str) -> Result<Ground> {
    let extra = extra_config.to_string();
    ground_prepared(name, instances, move |_, _| Box::pin(async move { Ok(extra) })).await
}

pub type Prepared<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<String>> + 'a>>;

/// As [`ground`], with `prepare` run on the seeded VPC before the CCM starts; it returns the
/// cloud-config lines to add (for groups the config names, say).
pub async fn ground_prepared(
    name: &str,
    instances: usize,
    prepare: impl for<'a> FnOnce(&'a TestCluster, &'a SeededVpc) -> Prepared<'a>,
) -> Result<Ground> {
    let serial = super::serial().await;
    let cluster = TestCluster::new(name).await?;
    let client = cluster.kube().await?;
    super::clean_cluster(&client).await?;
    let vpc = cluster.seed(SeedOptions::default().with_instances(instances)).await?;
    let names = register(&cluster, &client, &vpc).await?;
    let extra_config = prepare(&cluster, &vpc).await?;
    let config = format!("{}{extra_config}", off_aws_config(&cluster, &vpc));
    let ccm =
        start(&cluster, &config, None, &["--controllers=service,cloud-node", "--load-balancer-resync-period=3s"])?;
    wait_all_initialized(&client, &names, &ccm).await?;
    Ok(Ground { cluster, vpc, client, ccm, _serial: serial })
}

impl Ground {
    pub fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), "default")
    }

    pub async fn hostname(&self, name: &str) -> Result<String> {
        wait_hostname(&self.services(), name, WAIT).await.with_context(|| self.ccm.log_tail(40))
    }

    /// Deletes the Service and waits until the finalizer let it go.
    pub async fn delete_service(&self, name: &str) -> Result<()> {
        let services = self.services();
        services.delete(name, &DeleteParams::default()).await?;
        eventually("the Service gone", WAIT, || async { Ok(services.get_opt(name).await?.is_none().then_some(())) })
            .await
            .with_context(|| self.ccm.log_tail(40))
    }

    /// Deletes the Service, waits until the finalizer let it go, and checks that nothing of the
    /// cluster's is left in AWS.
    pub async fn delete_and_check(&self, name: &str) -> Result<()> {
        self.delete_service(name).await?;
        self.cluster.assert_nothing_left().await
    }

    /// Deletes "fragile" and runs `meanwhile` while the deletion is under way.
    pub async fn delete_and_check_with<F, Fut>(&self, meanwhile: F) -> Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let services = self.services();
        services.delete("fragile", &DeleteParams::default()).await?;
        meanwhile().await?;
        eventually("the Service gone", WAIT, || async {
            Ok(services.get_opt("fragile").await?.is_none().then_some(()))
        })
        .await
        .with_context(|| self.ccm.log_tail(40))?;
        Ok(())
    }
}
