//! [`Bird`]: BIRD 2 as a BGP peer in a test namespace, started in the
//! foreground with its own control socket, and read back through `birdc`
//! (its protocols' state and its routes), as interop tests assert on
//! BIRD's own view rather than on logs.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Background, Error, Netns};

/// A running BIRD, killed on drop.
#[derive(Debug)]
pub struct Bird {
    pub process: Background,
    /// Its control socket (`birdc -s`).
    pub ctl: PathBuf,
    /// Its log (everything, including NOTIFICATIONs received).
    pub log: PathBuf,
}

/// One line of `birdc show protocols`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    /// `up`, `start`, `down`, …
    pub state: String,
    /// When it entered that state, as BIRD prints it.
    pub since: String,
    /// For BGP: `Established`, `Active`, `Connect`, …
    pub info: String,
}

/// A BGP speaker's configuration for BIRD: router ID and AS, static
/// blackhole routes it originates, and its peers `(name, address, AS)`,
/// importing and exporting everything, retrying connections after a second.
pub fn bgp_conf(
    router_id: &str,
    asn: u32,
    statics: &[&str],
    peers: &[(&str, &str, u32)],
) -> String {
    let mut conf =
        format!("router id {router_id};\nprotocol device {{ }}\nprotocol static static1 {{ ipv4;");
    for prefix in statics {
        conf.push_str(&format!(" route {prefix} blackhole;"));
    }
    conf.push_str(" }\n");
    for (name, addr, peer_as) in peers {
        conf.push_str(&format!(
            "protocol bgp {name} {{\n  local as {asn};\n  neighbor {addr} as {peer_as};\n  \
             connect delay time 1;\n  connect retry time 1;\n  error wait time 1, 2;\n  \
             ipv4 {{ import all; export all; }};\n}}\n"
        ));
    }
    conf
}

impl Protocol {
    /// Whether `since` names the same moment as this protocol's `Since`.
    /// BIRD keeps the time on a monotonic clock and converts it to the
    /// time of day as it prints, so one moment may read a millisecond or
    /// two apart from one `show protocols` to the next.
    pub fn same_since(&self, since: &str) -> bool {
        match (millis_of_day(&self.since), millis_of_day(since)) {
            (Some(a), Some(b)) => a.abs_diff(b) <= 5,
            _ => self.since == since,
        }
    }
}

/// Milliseconds into the day of a BIRD time (`HH:MM:SS.mmm`, perhaps
/// after a date).
fn millis_of_day(since: &str) -> Option<u64> {
    let time = since.split_whitespace().last()?;
    let mut parts = time.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let ms: u64 = format!("{frac:0<3}").get(..3)?.parse().ok()?;
    Some(
        ((h.parse::<u64>().ok()? * 60 + m.parse::<u64>().ok()?) * 60 + secs.parse::<u64>().ok()?)
            * 1000
            + ms,
    )
}

impl Bird {
    /// Writes `conf` to `dir/NAME.conf` and runs BIRD on it in `ns`, with
    /// its control socket at `dir/NAME.ctl` and its log at `dir/NAME.log`.
    pub fn start(ns: &Netns, dir: &Path, name: &str, conf: &str) -> Result<Bird, Error> {
        let path = dir.join(format!("{name}.conf"));
        let log = dir.join(format!("{name}.log"));
        let conf = format!("log \"{}\" all;\n{conf}", log.display());
        std::fs::write(&path, conf)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        let ctl = dir.join(format!("{name}.ctl"));
        let process = Background::spawn(ns.cmd("bird").args([
            "-f".as_ref(),
            "-c".as_ref(),
            path.as_os_str(),
            "-s".as_ref(),
            ctl.as_os_str(),
        ]))?;
        Ok(Bird { process, ctl, log })
    }

    /// `birdc ARGS` output (empty if birdc cannot run).
    pub fn birdc(&self, args: &[&str]) -> String {
        Command::new("birdc")
            .arg("-s")
            .arg(&self.ctl)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The protocol `name` as `show protocols` lists it.
    pub fn protocol(&self, name: &str) -> Option<Protocol> {
        let out = self.birdc(&["show", "protocols", name]);
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))?;
        let f: Vec<&str> = line.split_whitespace().collect();
        // Name Proto Table State Since(one or two words) Info
        let (since, info) = match f.get(5) {
            // `Since` may be a date and a time.
            Some(w) if w.contains(':') && !f[4].contains(':') => {
                (format!("{} {w}", f[4]), f.get(6))
            }
            _ => (f.get(4)?.to_string(), f.get(5)),
        };
        Some(Protocol {
            state: f.get(3)?.to_string(),
            since,
            info: info.map_or(String::new(), |s| s.to_string()),
        })
    }

    /// Whether BIRD logged a NOTIFICATION received with this text (e.g.
    /// `Peer de-configured`), which `show protocols all` shows only until
    /// the next error or session.
    pub fn received(&self, notification: &str) -> bool {
        std::fs::read_to_string(&self.log)
            .is_ok_and(|log| log.contains(&format!("Received: {notification}")))
    }

    /// Whether the BGP protocol `name` is Established.
    pub fn established(&self, name: &str) -> bool {
        self.protocol(name).is_some_and(|p| p.info == "Established")
    }

    /// Whether BIRD's table has `prefix`.
    pub fn has_route(&self, prefix: &str) -> bool {
        self.birdc(&["show", "route", "for", prefix])
            .lines()
            .any(|l| l.starts_with(prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_values_a_millisecond_apart_are_the_same_moment() {
        let p = Protocol {
            state: "up".into(),
            since: "11:53:07.706".into(),
            info: "Established".into(),
        };
        assert!(p.same_since("11:53:07.705"));
        assert!(!p.same_since("11:53:07.806"));
        assert!(!p.same_since("11:53:08.706"));
        assert_eq!(millis_of_day("2026-11-29 00:00:01.5"), Some(1500));
    }
}
