//! The `projectcalico.org/v3` resource model: typed resources with Calico's field
//! names and defaults, strict validation with field paths, document parsing, and the
//! label-selector language. Pure: no I/O.
//!
//! # Layout
//!
//! - [`kind`]: [`Kind`], every resource kind with its API group, plural and short names.
//! - [`meta`]: [`ObjectMeta`], the `metadata` block.
//! - [`resources`]: one module per resource family (`ippool`, `ipam`, `node`, `bgp`,
//!   `policy`, `networkset`, `endpoints`, `felix`, `k8s`, `staged`) holding each
//!   kind's spec, defaults and validation; a staged policy's spec is its
//!   enforced kind's plus `stagedAction`.
//! - [`resource`]: [`Resource`], any one resource; strict reading from JSON values.
//! - [`document`]: [`parse_documents`], files of YAML or JSON documents to resources.
//! - [`types`]: value types shared by resources ([`Port`], [`Protocol`], [`AsNumber`],
//!   [`Cidr`], [`GoDuration`]).
//! - `validate`: the error collector and name syntaxes the resources share.
//! - [`error`]: [`FieldError`], one problem at one field path.
//! - [`selector`]: Calico's label-selector language.

pub mod document;
pub mod error;
pub mod kind;
pub mod meta;
pub mod resource;
pub mod resources;
pub mod selector;
pub mod types;
mod validate;

pub use document::{DocumentError, parse_documents, parse_documents_in};
pub use error::FieldError;
pub use kind::Kind;
pub use meta::ObjectMeta;
pub use resource::Resource;
pub use resources::{
    bgp::{BGPConfiguration, BGPConfigurationSpec, BGPFilter, BGPFilterSpec, BGPPeer, BGPPeerSpec},
    clusterinfo::{ClusterInformation, ClusterInformationSpec},
    endpoints::{HostEndpoint, HostEndpointSpec, WorkloadEndpoint, WorkloadEndpointSpec},
    felix::{FelixConfiguration, FelixConfigurationSpec},
    ipam::{IPAMConfiguration, IPAMConfigurationSpec},
    ippool::{IPPool, IPPoolSpec, IPReservation, IPReservationSpec},
    k8s::{KubernetesNetworkPolicy, KubernetesNetworkPolicySpec},
    kubecontrollers::{KubeControllersConfiguration, KubeControllersConfigurationSpec},
    networkset::{GlobalNetworkSet, NetworkSet, NetworkSetSpec},
    node::{Node, NodeSpec},
    policy::{
        Action, EntityRule, GlobalNetworkPolicy, GlobalNetworkPolicySpec, NetworkPolicy,
        NetworkPolicySpec, PolicyType, Profile, ProfileSpec, Rule, Tier, TierSpec,
    },
    staged::{
        StagedAction, StagedGlobalNetworkPolicy, StagedGlobalNetworkPolicySpec,
        StagedKubernetesNetworkPolicy, StagedKubernetesNetworkPolicySpec, StagedNetworkPolicy,
        StagedNetworkPolicySpec, StagedSpec,
    },
    status::{CalicoNodeStatus, CalicoNodeStatusSpec, CalicoNodeStatusStatus},
};
pub use types::{AsNumber, Cidr, GoDuration, Port, Protocol};
