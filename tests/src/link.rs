//! Links and addresses inside test namespaces: veth pairs, addresses, link
//! state, and any other `ip -n NS ...` command. Every command names a test
//! namespace, so nothing here touches the host's links or addresses.

use std::ffi::OsStr;
use std::process::Command;

use crate::command::run_checked;
use crate::{Error, Netns};

impl Netns {
    /// Runs `ip -n NAME args...` and returns its standard output.
    pub fn ip<I, S>(&self, args: I) -> Result<String, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = run_checked(Command::new("ip").args(["-n", self.name()]).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `ip -n NAME args...`, a `route show table N ...`, and returns the
    /// routes it lists: none while table `N` does not exist yet (the kernel
    /// creates a table with its first route, and `ip` fails on one it lacks).
    pub fn table_routes<I, S>(&self, args: I) -> Result<String, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        match self.ip(args) {
            Err(Error::Command { stderr, .. }) if stderr.contains("FIB table does not exist") => {
                Ok(String::new())
            }
            other => other.map(|text| without_nhid(&text)),
        }
    }

    /// Sets link `ifname` up.
    pub fn link_up(&self, ifname: &str) -> Result<(), Error> {
        self.ip(["link", "set", ifname, "up"]).map(drop)
    }

    /// Adds address `cidr` (e.g. `10.200.0.1/30`) to link `ifname`.
    pub fn add_addr(&self, ifname: &str, cidr: &str) -> Result<(), Error> {
        self.ip(["addr", "add", cidr, "dev", ifname]).map(drop)
    }
}

/// Creates a veth pair with end `a_if` in `a` and end `b_if` in `b` (never in
/// the host namespace, so plain names like `eth0` are fine) and sets both
/// ends up. `a` and `b` may be the same namespace. If an end cannot be set
/// up, the pair is deleted again.
pub fn veth_pair(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<(), Error> {
    a.ip([
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    a.link_up(a_if)
        .and_then(|()| b.link_up(b_if))
        .inspect_err(|_| {
            // Deleting one end deletes both; the first error is the one to report.
            let _ = a.ip(["link", "del", a_if]);
        })
}

/// `ip route` output with the `nhid N` of each route over a nexthop object
/// taken out: such a route reads as a plain one, `P via GW dev D …` (`ip`
/// lists the object's gateways after the number).
pub fn without_nhid(text: &str) -> String {
    let mut out = Vec::new();
    let mut words = text.split(' ');
    while let Some(w) = words.next() {
        if w == "nhid" {
            words.next();
            continue;
        }
        out.push(w);
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_route_over_a_nexthop_object_reads_as_a_plain_one() {
        assert_eq!(
            super::without_nhid("10.2.0.0/24 nhid 3355443201 via 10.98.0.2 dev eth0 proto 200 \n"),
            "10.2.0.0/24 via 10.98.0.2 dev eth0 proto 200 \n"
        );
        assert_eq!(
            super::without_nhid("10.2.0.0/24 via 10.98.0.2"),
            "10.2.0.0/24 via 10.98.0.2"
        );
    }
}
