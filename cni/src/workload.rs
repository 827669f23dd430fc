//! Who the container is and what that makes of it, as Calico names it
//! (pure): the host veth name, the WorkloadEndpoint (name, namespace, labels,
//! profile), the IPAM handle and attributes, and the namespace's profile.
//!
//! With a pod (both `K8S_POD_NAMESPACE` and `K8S_POD_NAME`): veth `cali` + the first
//! 11 hex characters of SHA-1(`<namespace>.<pod>`), endpoint
//! `<node>-k8s-<pod>-<ifname>` in the pod's namespace, orchestrator `k8s`.
//! Without: veth `cali` + the first 11 characters of the container ID,
//! endpoint `<node>-cni-<containerID>-<ifname>` in `default`, orchestrator
//! `cni`. Each part of an endpoint name has its `-` doubled.

use std::collections::BTreeMap;

use api::meta::ObjectMeta;
use api::resources::endpoints::{WorkloadEndpoint, WorkloadEndpointSpec};
use api::resources::policy::{Action, Profile, ProfileSpec, Rule};
use api::types::Cidr;
use ipnet::IpNet;
use sha1::{Digest, Sha1};

use crate::env::CniEnv;

/// Calico's label with the endpoint's namespace.
pub const LABEL_NAMESPACE: &str = "projectcalico.org/namespace";
/// Calico's label with the endpoint's orchestrator.
pub const LABEL_ORCHESTRATOR: &str = "projectcalico.org/orchestrator";
/// The label a namespace profile applies (as kube-controllers writes it).
pub const LABEL_NAMESPACE_NAME: &str = "pcns.projectcalico.org/name";
/// Host-side interface names start with this.
pub const VETH_PREFIX: &str = "cali";

/// The container, as the datastore and the host know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub node: String,
    /// `k8s` or `cni`.
    pub orchestrator: &'static str,
    pub namespace: String,
    /// The pod's name, or the container ID.
    pub workload: String,
    pub pod: Option<String>,
    pub container_id: String,
    pub ifname: String,
    /// The host side of the veth.
    pub host_veth: String,
    /// The WorkloadEndpoint's name.
    pub endpoint_name: String,
}

/// `-` doubled, as Calico escapes each part of an endpoint name.
fn escape(part: &str) -> String {
    part.replace('-', "--")
}

/// `cali` + the first 11 hex characters of SHA-1(`<namespace>.<pod>`).
pub fn veth_name_for_pod(namespace: &str, pod: &str) -> String {
    let digest = Sha1::digest(format!("{namespace}.{pod}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{VETH_PREFIX}{}", &hex[..11])
}

impl Workload {
    /// Identifies the container of `env` on `node`.
    pub fn identify(node: &str, env: &CniEnv) -> Workload {
        let (orchestrator, namespace, workload, pod, host_veth) = match env.args.pod() {
            Some((ns, pod)) => (
                "k8s",
                ns.to_owned(),
                pod.to_owned(),
                Some(pod.to_owned()),
                veth_name_for_pod(ns, pod),
            ),
            None => {
                let short: String = env.container_id.chars().take(11).collect();
                (
                    "cni",
                    "default".to_string(),
                    env.container_id.clone(),
                    None,
                    format!("{VETH_PREFIX}{short}"),
                )
            }
        };
        let endpoint_name = [node, orchestrator, &workload, &env.ifname]
            .map(escape)
            .join("-");
        Workload {
            node: node.to_owned(),
            orchestrator,
            namespace,
            workload,
            pod,
            container_id: env.container_id.clone(),
            ifname: env.ifname.clone(),
            host_veth,
            endpoint_name,
        }
    }

    /// The profile every endpoint of the namespace names.
    pub fn profile_name(&self) -> String {
        format!("kns.{}", self.namespace)
    }

    /// The IPAM handle: `<network name>.<containerID>`.
    pub fn ipam_handle(network: &str, container_id: &str) -> String {
        format!("{network}.{container_id}")
    }

    /// The attributes stored with the addresses.
    pub fn ipam_attributes(&self) -> BTreeMap<String, String> {
        let mut attrs = BTreeMap::from([
            ("namespace".to_string(), self.namespace.clone()),
            ("node".to_string(), self.node.clone()),
        ]);
        if let Some(pod) = &self.pod {
            attrs.insert("pod".into(), pod.clone());
        }
        attrs
    }

    /// The WorkloadEndpoint for the container's addresses and MAC;
    /// `extra_labels` (from `args.cni.labels`) come first, Calico's own
    /// labels win over them.
    pub fn endpoint(
        &self,
        addresses: &[IpNet],
        container_mac: &str,
        extra_labels: &BTreeMap<String, String>,
        qos: Option<&api::resources::qos::QosControls>,
    ) -> WorkloadEndpoint {
        let mut labels = extra_labels.clone();
        labels.insert(LABEL_NAMESPACE.into(), self.namespace.clone());
        labels.insert(LABEL_ORCHESTRATOR.into(), self.orchestrator.into());
        let metadata = ObjectMeta {
            namespace: Some(self.namespace.clone()),
            labels,
            ..ObjectMeta::named(&self.endpoint_name)
        };
        let spec = WorkloadEndpointSpec {
            orchestrator: self.orchestrator.into(),
            workload: if self.pod.is_some() {
                String::new()
            } else {
                self.workload.clone()
            },
            node: self.node.clone(),
            container_id: self.container_id.clone(),
            pod: self.pod.clone().unwrap_or_default(),
            endpoint: self.ifname.clone(),
            ip_networks: addresses.iter().map(|a| Cidr(host_route(*a))).collect(),
            profiles: vec![self.profile_name()],
            interface_name: self.host_veth.clone(),
            mac: Some(container_mac.to_owned()),
            qos_controls: qos.cloned(),
            ..WorkloadEndpointSpec::default()
        };
        WorkloadEndpoint::new(metadata, spec)
    }

    /// The namespace profile as kube-controllers would write it: allow in
    /// both directions, label `pcns.projectcalico.org/name: <namespace>`.
    pub fn namespace_profile(&self) -> Profile {
        Profile::new(
            ObjectMeta::named(self.profile_name()),
            ProfileSpec {
                ingress: vec![Rule::new(Action::Allow)],
                egress: vec![Rule::new(Action::Allow)],
                labels_to_apply: BTreeMap::from([(
                    LABEL_NAMESPACE_NAME.to_string(),
                    self.namespace.clone(),
                )]),
            },
        )
    }
}

/// The address as a host route (`/32`, `/128`).
pub fn host_route(net: IpNet) -> IpNet {
    IpNet::new(net.addr(), net.max_prefix_len()).expect("the maximum prefix length is valid")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::env::{CniArgs, Command};

    fn env(pod: Option<(&str, &str)>) -> CniEnv {
        CniEnv {
            command: Command::Add,
            container_id: "0123456789abcdef0123".into(),
            netns: Some(PathBuf::from("/run/netns/c")),
            ifname: "eth0".into(),
            args: CniArgs {
                pod_namespace: pod.map(|p| p.0.into()),
                pod_name: pod.map(|p| p.1.into()),
                ..CniArgs::default()
            },
            path: vec![],
        }
    }

    #[test]
    fn pod_veth_name_is_calicos_sha1_prefix() {
        // echo -n default.nginx-1 | sha1sum
        let digest = Sha1::digest(b"default.nginx-1");
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            veth_name_for_pod("default", "nginx-1"),
            format!("cali{}", &hex[..11])
        );
        assert_eq!(veth_name_for_pod("default", "nginx-1").len(), 15);
    }

    #[test]
    fn sha1_matches_a_known_vector() {
        let digest = Sha1::digest(b"abc");
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn pod_endpoint_is_named_and_labelled_as_calico_does() {
        let w = Workload::identify("node-1", &env(Some(("web", "front-1"))));
        assert_eq!(w.endpoint_name, "node--1-k8s-front--1-eth0");
        assert_eq!(w.host_veth, veth_name_for_pod("web", "front-1"));
        let extra = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let wep = w.endpoint(
            &["10.65.0.5/26".parse().unwrap()],
            "aa:bb:cc:dd:ee:ff",
            &extra,
            None,
        );
        assert_eq!(wep.metadata.namespace.as_deref(), Some("web"));
        assert_eq!(wep.metadata.labels[LABEL_ORCHESTRATOR], "k8s");
        assert_eq!(wep.metadata.labels["app"], "web");
        assert_eq!(wep.spec.ip_networks[0].0.to_string(), "10.65.0.5/32");
        assert_eq!(wep.spec.profiles, ["kns.web"]);
        assert_eq!(wep.spec.pod, "front-1");
        assert!(api::Resource::from(wep).validate().is_ok());
    }

    #[test]
    fn plain_container_endpoint_uses_the_container_id() {
        let w = Workload::identify("node-1", &env(None));
        assert_eq!(w.host_veth, "cali0123456789a");
        assert_eq!(w.endpoint_name, "node--1-cni-0123456789abcdef0123-eth0");
        assert_eq!((w.namespace.as_str(), w.orchestrator), ("default", "cni"));
        assert_eq!(w.profile_name(), "kns.default");
    }

    #[test]
    fn a_podman_container_is_a_valid_cni_endpoint() {
        // podman: a 64-hex container ID and K8S_POD_NAME without a namespace.
        let id = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let mut env = env(None);
        env.container_id = id.into();
        env.args.pod_name = Some("web".into());
        let w = Workload::identify("host-a", &env);
        assert_eq!((w.orchestrator, w.pod.as_deref()), ("cni", None));
        assert_eq!(w.endpoint_name, format!("host--a-cni-{id}-eth0"));
        assert_eq!(w.host_veth, "cali9f86d081884");
        let wep = w.endpoint(
            &["10.65.0.5/26".parse().unwrap()],
            "aa:bb:cc:dd:ee:ff",
            &BTreeMap::new(),
            None,
        );
        assert_eq!(api::Resource::from(wep).validate(), Ok(()));
    }

    #[test]
    fn namespace_profile_allows_both_ways_and_labels_the_namespace() {
        let w = Workload::identify("node-1", &env(Some(("web", "front-1"))));
        let p = w.namespace_profile();
        assert_eq!(p.metadata.name, "kns.web");
        assert_eq!(p.spec.ingress[0].action, Action::Allow);
        assert_eq!(p.spec.labels_to_apply[LABEL_NAMESPACE_NAME], "web");
        assert!(api::Resource::from(p).validate().is_ok());
    }
}
