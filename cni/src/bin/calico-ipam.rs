//! The `calico-ipam` CNI IPAM plugin: addresses from the datastore's IPAM.

fn main() -> std::process::ExitCode {
    cni::run::main(cni::Plugin::CalicoIpam)
}
