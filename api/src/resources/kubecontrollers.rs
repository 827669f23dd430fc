//! [`KubeControllersConfiguration`]: Calico's settings of kube-controllers
//! (the one resource named `default`), stored and validated so that YAML
//! from a Calico cluster applies here. felix's IPAM leak collector
//! (`datastore::ipam::collector`) reads `controllers.node`
//! (`leakGracePeriod`, `reconcilerPeriod`), as Calico's node controller
//! does; nothing reads the rest.

use serde::{Deserialize, Serialize};

use super::Spec;
use super::bgp::LogSeverity;
use super::felix::Toggle;
use crate::{meta::ObjectMeta, types::GoDuration, validate::Errors};

/// A controller with only a reconciler period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReconcilerController {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciler_period: Option<GoDuration>,
}

/// Automatic host endpoints (`controllers.node.hostEndpoint`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoHostEndpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_create: Option<Toggle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_default_host_endpoint: Option<Toggle>,
}

/// `controllers.node`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeController {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciler_period: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_labels: Option<Toggle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_endpoint: Option<AutoHostEndpoint>,
    /// How long an address may lack its workload before it counts as leaked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leak_grace_period: Option<GoDuration>,
}

/// Which Services get addresses (`controllers.loadBalancer.assignIPs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AssignIps {
    AllServices,
    RequestedServicesOnly,
}

/// `controllers.loadBalancer`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerController {
    #[serde(default, rename = "assignIPs", skip_serializing_if = "Option::is_none")]
    pub assign_ips: Option<AssignIps>,
}

/// `spec.controllers`: each one on when present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Controllers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeController>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<ReconcilerController>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_endpoint: Option<ReconcilerController>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ReconcilerController>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<ReconcilerController>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerController>,
}

/// `spec` of a [`KubeControllersConfiguration`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeControllersConfigurationSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<LogSeverity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_checks: Option<Toggle>,
    #[serde(
        default,
        rename = "etcdV3CompactionPeriod",
        skip_serializing_if = "Option::is_none"
    )]
    pub etcd_v3_compaction_period: Option<GoDuration>,
    /// 0 turns metrics off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_profile_port: Option<u32>,
    #[serde(default)]
    pub controllers: Controllers,
}

impl Spec for KubeControllersConfigurationSpec {
    fn validate(&self, meta: &ObjectMeta, errs: &mut Errors) {
        if !meta.name.is_empty() && meta.name != "default" {
            errs.add(
                "metadata.name",
                format!(
                    "the KubeControllersConfiguration must be named \"default\", not {:?}",
                    meta.name
                ),
            );
        }
        for (field, port) in [
            ("spec.prometheusMetricsPort", self.prometheus_metrics_port),
            ("spec.debugProfilePort", self.debug_profile_port),
        ] {
            if let Some(p) = port.filter(|&p| p > 65_535) {
                errs.add(field, format!("{p} is not a port (0 to 65535)"));
            }
        }
    }
}

resource!(
    /// Calico's kube-controllers settings, stored and validated.
    KubeControllersConfiguration,
    KubeControllersConfigurationSpec
);
