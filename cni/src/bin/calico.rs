//! The `calico` CNI plugin: a container's veth, addresses and endpoint.

fn main() -> std::process::ExitCode {
    cni::run::main(cni::Plugin::Calico)
}
