//! The command-line grammar: every subcommand, flag and its help text, as a
//! clap derive. Nothing here runs anything; `commands` does. Completions and
//! man pages are generated from this same definition.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit statuses, printed in `calicoctl --help` and the README.
pub const EXIT_CODES_HELP: &str = "\
Exit status:
  0  success
  1  the operation failed: datastore unreachable or failing, resource not found,
     already exists, or changed concurrently (stale resourceVersion)
  2  usage error or invalid input: bad flags or arguments, unknown kind,
     unreadable file, YAML/JSON that does not parse or does not validate;
     nothing was written";

/// Manage Calico-compatible resources in the datastore.
#[derive(Debug, Parser)]
#[command(
    name = "calicoctl",
    version,
    about = "Manage projectcalico.org/v3 resources in the datastore",
    long_about = None,
    after_long_help = EXIT_CODES_HELP,
    propagate_version = true
)]
pub struct Cli {
    /// Datastore settings.
    #[command(flatten)]
    pub datastore: DatastoreArgs,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the datastore is, Calico-style.
#[derive(Debug, Args)]
pub struct DatastoreArgs {
    /// CalicoAPIConfig file (apiVersion projectcalico.org/v3, kind CalicoAPIConfig).
    /// Defaults to /etc/calico/calicoctl.cfg when that file exists; otherwise the
    /// environment (DATASTORE_TYPE, DATASTORE_PATH, ETCD_ENDPOINTS, ...) decides,
    /// and the embedded store is used when nothing is set.
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update resources from a file, a directory or stdin.
    Apply(ApplyArgs),
    /// Check resources offline as apply would, with the same messages, and
    /// write nothing (no datastore needed); exit 2 on any problem.
    Validate(FileArgs),
    /// Create resources; fails if one already exists (unless --skip-exists).
    Create(CreateArgs),
    /// Replace existing resources; a stale metadata.resourceVersion fails.
    Replace(ApplyArgs),
    /// Delete resources named by kind and name, or listed in a file.
    Delete(DeleteArgs),
    /// Show resources.
    Get(GetArgs),
    /// Apply a JSON merge patch (RFC 7396) to one resource.
    Patch(PatchArgs),
    /// Add, change or remove a label on one resource.
    Label(LabelArgs),
    /// IP address management: usage, who owns an address, consistency
    /// check, release, pool split and configuration.
    Ipam(IpamArgs),
    /// Move the whole datastore to another (SQLite and etcd, either way),
    /// IPAM included: lock, export, import, unlock.
    Datastore(DatastoreCommandArgs),
    /// Policy tools: compile policy to the nftables ruleset felix programs;
    /// promote a staged policy to the policy it stages.
    Policy(PolicyArgs),
    /// This host's node: its BGP sessions.
    Node(NodeArgs),
    /// Flows and the policy rule that decided each, from felix's flow API or
    /// the cluster's goldmane: the last ones, or live with --follow.
    Flows(FlowsArgs),
    /// The web console on localhost: live flows with their policy traces,
    /// tiers and policies with their hits, every node's BGP sessions, IPAM.
    /// Read-only.
    Console(ConsoleArgs),
    /// Print the client version and the datastore in use.
    Version,
    /// Print a shell completion script.
    Completion(CompletionArgs),
    /// Write man pages into a directory, or print the main page to stdout.
    Man(ManArgs),
}

/// `-f` plus the namespace used for namespaced resources that name none.
#[derive(Debug, Args)]
pub struct FileArgs {
    /// A file, a directory (its *.yaml, *.yml and *.json, sorted) or `-` for stdin.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub filename: PathBuf,
    /// Namespace for namespaced resources whose metadata names none.
    #[arg(short = 'n', long = "namespace", value_name = "NS")]
    pub namespace: Option<String>,
}

/// `apply` and `replace`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub file: FileArgs,
}

/// `create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// Do not fail on resources that already exist; leave them unchanged.
    #[arg(long)]
    pub skip_exists: bool,
}

/// `delete`: by kind and names, or by file.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The kind (case-insensitive; plural and short forms accepted).
    #[arg(value_name = "KIND", required_unless_present = "filename")]
    pub kind: Option<String>,
    /// Names of the resources to delete.
    #[arg(value_name = "NAME", conflicts_with = "filename", requires = "kind")]
    pub names: Vec<String>,
    /// A file, a directory or `-` listing the resources to delete.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "PATH",
        conflicts_with = "kind"
    )]
    pub filename: Option<PathBuf>,
    /// Namespace of namespaced resources (default: "default").
    #[arg(short = 'n', long = "namespace", value_name = "NS")]
    pub namespace: Option<String>,
    /// Do not fail on resources that do not exist.
    #[arg(long)]
    pub skip_not_exists: bool,
}

/// Output formats of `get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A table with the name and a few columns per kind.
    Ps,
    /// A table with more columns.
    Wide,
    /// YAML, as accepted by `apply`.
    Yaml,
    /// JSON, as accepted by `apply`.
    Json,
}

/// `get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The kind (case-insensitive; plural and short forms accepted).
    #[arg(value_name = "KIND")]
    pub kind: String,
    /// Names to show; all resources of the kind when none.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// Namespace of namespaced resources (default: "default").
    #[arg(
        short = 'n',
        long = "namespace",
        value_name = "NS",
        conflicts_with = "all_namespaces"
    )]
    pub namespace: Option<String>,
    /// List namespaced resources of every namespace.
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Ps)]
    pub output: OutputFormat,
}

/// `patch`.
#[derive(Debug, Args)]
pub struct PatchArgs {
    /// The kind (case-insensitive; plural and short forms accepted).
    #[arg(value_name = "KIND")]
    pub kind: String,
    /// Name of the resource.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The merge patch, as JSON (or YAML), e.g. '{"spec":{"disabled":true}}'.
    #[arg(short = 'p', long = "patch", value_name = "PATCH")]
    pub patch: String,
    /// Namespace of a namespaced resource (default: "default").
    #[arg(short = 'n', long = "namespace", value_name = "NS")]
    pub namespace: Option<String>,
}

/// `label`.
#[derive(Debug, Args)]
pub struct LabelArgs {
    /// The kind (case-insensitive; plural and short forms accepted).
    #[arg(value_name = "KIND")]
    pub kind: String,
    /// Name of the resource.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// `key=value` to set, or `key` with --remove.
    #[arg(value_name = "LABEL")]
    pub label: String,
    /// Replace the value of a label that is already set.
    #[arg(long, conflicts_with = "remove")]
    pub overwrite: bool,
    /// Remove the label `key`.
    #[arg(long)]
    pub remove: bool,
    /// Namespace of a namespaced resource (default: "default").
    #[arg(short = 'n', long = "namespace", value_name = "NS")]
    pub namespace: Option<String>,
}

/// `policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

/// The `policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the nftables ruleset (`table inet calico`, loadable with
    /// `nft -f`) compiled from the policy, endpoints and network sets in
    /// `-f`, or in the datastore when `-f` is not given.
    Compile(PolicyCompileArgs),
    /// Enforce a staged policy: a stagedAction Set creates or replaces the
    /// enforced policy of its name with its spec, a Delete deletes it; the
    /// staged policy is deleted in the same transaction (all or nothing).
    Promote(PolicyPromoteArgs),
    /// Would this packet pass, and why: every tier, policy and rule the
    /// first packet of a connection from --src to --dst meets in the
    /// compiled ruleset, in both directions (egress of the source, ingress
    /// of the destination), why each earlier rule did not match, and the
    /// verdict. Offline: nothing is sent.
    Trace(PolicyTraceArgs),
}

/// `policy promote`.
#[derive(Debug, Args)]
pub struct PolicyPromoteArgs {
    /// The staged kind: StagedNetworkPolicy, StagedGlobalNetworkPolicy or
    /// StagedKubernetesNetworkPolicy (case-insensitive; plural and short
    /// forms such as snp, sgnp and sknp accepted).
    #[arg(value_name = "KIND")]
    pub kind: String,
    /// Name of the staged policy (and of the policy it stages).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Namespace of a namespaced staged policy (default: "default").
    #[arg(short = 'n', long = "namespace", value_name = "NS")]
    pub namespace: Option<String>,
}

/// `policy trace`.
#[derive(Debug, Args)]
pub struct PolicyTraceArgs {
    /// The source: an endpoint (`ns/name` of a workload, or `ns/pod` as
    /// flow logs name it; `name` of a host endpoint), an IP address, or a label set `[ns:]key=value,...` (a pod
    /// with those labels in namespace ns, default "default").
    #[arg(long, value_name = "END")]
    pub src: String,
    /// The destination, as --src.
    #[arg(long, value_name = "END")]
    pub dst: String,
    /// tcp, udp, icmp, icmpv6, sctp, udplite or a number.
    #[arg(long, value_name = "PROTO", default_value = "tcp")]
    pub protocol: String,
    /// The destination port (protocols with ports).
    #[arg(long, value_name = "PORT", default_value_t = 80)]
    pub port: u16,
    /// IP version (default: an address end's, else 4 when both ends have one).
    #[arg(long, value_name = "4|6", value_parser = ["4", "6"])]
    pub ip_version: Option<String>,
    /// Trace as if the staged policies were enforced: the pending verdict
    /// that flow logs report (a staged Set replaces its policy, a staged
    /// Delete removes it).
    #[arg(long)]
    pub staged: bool,
    #[command(flatten)]
    pub model: PolicyModelArgs,
    /// Output format: text, or the trace as JSON or YAML.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: FlowOutput,
}

/// Where `policy compile` and `policy trace` read the model from.
#[derive(Debug, Default, Args)]
pub struct PolicyModelArgs {
    /// A file, a directory or `-`; without it, the datastore's resources.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub filename: Option<PathBuf>,
    /// Namespace for namespaced resources in `-f` whose metadata names none.
    #[arg(
        short = 'n',
        long = "namespace",
        value_name = "NS",
        requires = "filename"
    )]
    pub namespace: Option<String>,
    /// Only this node's endpoints get chains, as its felix compiles and
    /// enforces them (default: every endpoint's).
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
}

/// `policy compile`.
#[derive(Debug, Args)]
pub struct PolicyCompileArgs {
    #[command(flatten)]
    pub model: PolicyModelArgs,
    /// Print the one nft transaction that turns the kernel's current
    /// `inet calico` table into this ruleset, instead of the whole ruleset.
    /// Needs root. Chains read from the kernel count as changed, so they are
    /// shown replaced; sets and maps are compared element by element.
    #[arg(long)]
    pub diff: bool,
    /// Compile as if the staged policies were enforced (a staged Set
    /// replacing or adding the policy of its name, a Delete removing it):
    /// the ruleset promoting them all would give.
    #[arg(long)]
    pub staged: bool,
}

/// `datastore`.
#[derive(Debug, Args)]
pub struct DatastoreCommandArgs {
    #[command(subcommand)]
    pub command: DatastoreCommand,
}

/// The `datastore` subcommands.
#[derive(Debug, Subcommand)]
pub enum DatastoreCommand {
    /// Move the datastore's contents, in Calico's export format.
    #[command(subcommand)]
    Migrate(MigrateCommand),
}

/// The `datastore migrate` steps, in the order a move takes them.
#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Lock the datastore: felix stops writing to it and the CNI plugin
    /// refuses to add or delete workloads until `unlock`
    /// (ClusterInformation "default" gets datastoreReady: false).
    Lock,
    /// Print every resource and all IPAM state of the locked datastore:
    /// v3 resources as YAML, then the ClusterInformation and the IPAM
    /// blocks, affinities, handles and configuration as JSON, each section
    /// ended by a line "===".
    Export,
    /// Write an export into this (empty) datastore, every key or none; the
    /// datastore is left locked, to be unlocked once felix uses it.
    Import(MigrateImportArgs),
    /// Unlock the datastore: felix and the CNI plugin write again.
    Unlock,
}

/// `datastore migrate import`.
#[derive(Debug, Args)]
pub struct MigrateImportArgs {
    /// The export file, or `-` for stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub filename: PathBuf,
}

/// `ipam`.
#[derive(Debug, Args)]
pub struct IpamArgs {
    #[command(subcommand)]
    pub command: IpamCommand,
}

/// The `ipam` subcommands.
#[derive(Debug, Subcommand)]
pub enum IpamCommand {
    /// Show usage per pool (and per block), or who owns an address.
    Show(IpamShowArgs),
    /// Check IPAM data: leaked addresses (no handle, no Node, no workload
    /// endpoint for the pod), workload endpoint addresses with no allocation,
    /// handles that disagree with their blocks, affinities to missing hosts.
    /// Exits 1 when anything is wrong.
    Check(IpamCheckArgs),
    /// Release an address, or the leaked addresses listed in a check report.
    Release(IpamReleaseArgs),
    /// Split an IP pool into a power of two equal, smaller pools.
    Split(IpamSplitArgs),
    /// Change the IPAM configuration.
    Configure(IpamConfigureArgs),
}

/// Output formats of `ipam show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IpamOutput {
    /// A table.
    Table,
    /// JSON.
    Json,
}

/// `ipam show`.
#[derive(Debug, Args)]
pub struct IpamShowArgs {
    /// Also show every block, with the host it is affine to and its usage.
    #[arg(long)]
    pub show_blocks: bool,
    /// Show who owns this address (handle and attributes) instead.
    #[arg(long, value_name = "ADDR", conflicts_with = "show_blocks")]
    pub ip: Option<std::net::IpAddr>,
    /// Show the IPAM configuration (strict affinity, automatic blocks, the
    /// most blocks per host) instead, as Calico 3.33 does.
    #[arg(long, conflicts_with_all = ["show_blocks", "ip"])]
    pub show_configuration: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = IpamOutput::Table)]
    pub output: IpamOutput,
}

/// `ipam check`.
#[derive(Debug, Args)]
pub struct IpamCheckArgs {
    /// Also write the report as JSON to this file (input of `ipam release --from-report`).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `ipam release`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["ip", "from_report"])))]
pub struct IpamReleaseArgs {
    /// The address to release.
    #[arg(long, value_name = "ADDR")]
    pub ip: Option<std::net::IpAddr>,
    /// Release the leaked addresses (and delete the empty handles) of a
    /// report written by `ipam check -o`, those still as the report saw them.
    #[arg(long, value_name = "FILE")]
    pub from_report: Option<PathBuf>,
}

/// `ipam split`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("pool").required(true).args(["cidr", "name"])))]
pub struct IpamSplitArgs {
    /// Number of pools to split into (a power of two).
    #[arg(value_name = "NUMBER")]
    pub number: u32,
    /// CIDR of the pool to split.
    #[arg(long, value_name = "CIDR")]
    pub cidr: Option<String>,
    /// Name of the pool to split.
    #[arg(long, value_name = "POOL_NAME")]
    pub name: Option<String>,
}

/// `ipam configure`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("setting").required(true).multiple(true)
    .args(["strict_affinity", "max_blocks_per_host"])))]
pub struct IpamConfigureArgs {
    /// Hosts may only take addresses from blocks affine to them (no borrowing).
    #[arg(long = "strictaffinity", value_name = "BOOL")]
    pub strict_affinity: Option<bool>,
    /// How many blocks one host may claim.
    #[arg(long, value_name = "N")]
    pub max_blocks_per_host: Option<u32>,
}

/// `node`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(subcommand)]
    pub command: NodeCommand,
}

/// `node` subcommands.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Show this host's BGP peers (address, type, state, since, info), read
    /// from felix's BGP status socket; with --all every node's, from the
    /// datastore.
    Status(NodeStatusArgs),
}

/// `node status`.
#[derive(Debug, Args)]
pub struct NodeStatusArgs {
    /// The BGP status socket of felix (or of the bgpd daemon).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_BGP_SOCKET, conflicts_with = "all")]
    pub socket: PathBuf,
    /// Every node's sessions, from the CalicoNodeStatus each felix writes
    /// into the datastore (no login to each host needed).
    #[arg(long)]
    pub all: bool,
    /// With --all: one node only.
    #[arg(long, value_name = "NODE", requires = "all")]
    pub node: Option<String>,
}

/// `flows`.
#[derive(Debug, Args)]
pub struct FlowsArgs {
    /// The flow API (Goldmane's Flows service): this host's felix, or the
    /// cluster's goldmane (`HOST:PORT` or `unix:PATH`).
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_FLOWS_SERVER)]
    pub server: String,
    /// Print flows as they are aggregated (every 15 s) until interrupted.
    #[arg(long)]
    pub follow: bool,
    /// How many of the latest flows to list.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub last: usize,
    /// From how many seconds ago.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub since: u32,
    /// Flows with an end in this namespace.
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Flows with an end of this name (`name` or `ns/name`).
    #[arg(long, value_name = "NAME")]
    pub endpoint: Option<String>,
    /// Flows with an end whose labels match this selector.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Flows with this action (repeatable).
    #[arg(long, value_enum)]
    pub action: Vec<FlowAction>,
    /// Flows a policy of this name took part in (repeatable).
    #[arg(long, value_name = "NAME")]
    pub policy: Vec<String>,
    /// Flows to this destination port (repeatable).
    #[arg(long, value_name = "PORT")]
    pub port: Vec<u16>,
    /// Flows of this protocol: tcp, udp, icmp, ... (repeatable).
    #[arg(long, value_name = "PROTO")]
    pub protocol: Vec<String>,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: FlowOutput,
}

/// A flow's action, for `flows --action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlowAction {
    Allow,
    Deny,
    Pass,
}

/// How `flows` and `policy trace` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlowOutput {
    Table,
    Json,
    Yaml,
}

/// Where felix serves its flow API.
pub const DEFAULT_FLOWS_SERVER: &str = "127.0.0.1:7443";

/// `console`.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Where to serve the console (no authentication: loopback only,
    /// unless --insecure-listen).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8081")]
    pub listen: std::net::SocketAddr,
    /// The flow API: the cluster's goldmane (or one felix's), `HOST:PORT`
    /// or `unix:PATH`.
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_FLOWS_SERVER)]
    pub flows_server: String,
    /// Allow a --listen address other than loopback, behind a reverse proxy
    /// that authenticates and terminates TLS.
    #[arg(long)]
    pub insecure_listen: bool,
}

/// Where felix serves its BGP status.
pub const DEFAULT_BGP_SOCKET: &str = "/run/calico/bgp.sock";

/// Shells for `completion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// GNU Bash.
    Bash,
    /// Z shell.
    Zsh,
    /// fish.
    Fish,
}

/// `completion`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to generate for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write calicoctl.1 and one page per subcommand into;
    /// without it the main page goes to stdout.
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn label_remove_and_overwrite_are_exclusive() {
        let err = Cli::try_parse_from([
            "calicoctl",
            "label",
            "node",
            "n1",
            "k",
            "--remove",
            "--overwrite",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn delete_needs_a_kind_or_a_file() {
        assert!(Cli::try_parse_from(["calicoctl", "delete"]).is_err());
        assert!(Cli::try_parse_from(["calicoctl", "delete", "-f", "x.yaml"]).is_ok());
        assert!(Cli::try_parse_from(["calicoctl", "delete", "ippool", "p1", "p2"]).is_ok());
        assert!(Cli::try_parse_from(["calicoctl", "delete", "ippool", "-f", "x.yaml"]).is_err());
    }

    #[test]
    fn get_rejects_namespace_with_all_namespaces() {
        assert!(Cli::try_parse_from(["calicoctl", "get", "wep", "-n", "a", "-A"]).is_err());
    }

    #[test]
    fn ipam_release_needs_an_address_or_a_report() {
        assert!(Cli::try_parse_from(["calicoctl", "ipam", "release"]).is_err());
        assert!(Cli::try_parse_from(["calicoctl", "ipam", "release", "--ip", "10.0.0.1"]).is_ok());
        assert!(
            Cli::try_parse_from(["calicoctl", "ipam", "release", "--ip", "x"]).is_err(),
            "not an address"
        );
    }

    #[test]
    fn ipam_configure_takes_calicos_strictaffinity_flag() {
        let cli = Cli::try_parse_from(["calicoctl", "ipam", "configure", "--strictaffinity=true"])
            .unwrap();
        let Command::Ipam(IpamArgs {
            command: IpamCommand::Configure(args),
        }) = cli.command
        else {
            panic!("parsed as {:?}", cli.command)
        };
        assert_eq!(args.strict_affinity, Some(true));
        assert!(Cli::try_parse_from(["calicoctl", "ipam", "configure"]).is_err());
    }

    #[test]
    fn policy_promote_takes_a_kind_a_name_and_a_namespace() {
        let cli = Cli::try_parse_from([
            "calicoctl",
            "policy",
            "promote",
            "snp",
            "deny",
            "-n",
            "shop",
        ])
        .unwrap();
        let Command::Policy(PolicyArgs {
            command: PolicyCommand::Promote(args),
        }) = cli.command
        else {
            panic!("parsed as {:?}", cli.command)
        };
        assert_eq!(
            (
                args.kind.as_str(),
                args.name.as_str(),
                args.namespace.as_deref()
            ),
            ("snp", "deny", Some("shop"))
        );
        assert!(Cli::try_parse_from(["calicoctl", "policy", "promote", "snp"]).is_err());
    }

    #[test]
    fn config_flag_is_accepted_after_the_subcommand() {
        let cli = Cli::try_parse_from(["calicoctl", "get", "ippools", "-c", "/x.cfg"]).unwrap();
        assert_eq!(
            cli.datastore.config.as_deref(),
            Some(std::path::Path::new("/x.cfg"))
        );
    }
}
