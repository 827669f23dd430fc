//! The web console (`calicoctl console`) in a real browser, headless
//! Chromium driven over WebDriver, against the quickstart lab with the
//! node-to-node mesh turned on (root, BIRD 2, Chromium):
//!
//! - the page loads, with flows;
//! - a denied TCP connect made now (web-1 to db-3 on a port db does not
//!   admit) appears in the flows view within the aggregation interval,
//!   marked denied, with what denied it; clicking it shows its policy
//!   trace, rule by rule, enforced and with the staged policies;
//! - filtering to one namespace keeps its flows, to another none;
//! - the policies view lists tiers and their policies with hits, the IPAM
//!   view the pool and each host's block;
//! - stopping h3's felix marks its sessions down on h1 and h2, with the
//!   reason, in the BGP view;
//! - goldmane gone shows a banner, and the page recovers by itself once it
//!   is back;
//! - the console's API answers a malformed query with 400 and a message.
//!
//! Screenshots of each view go to `$CARGO_TARGET_TMPDIR/console/` (and to
//! `$CONSOLE_SCREENSHOTS` if set), as the test's artifacts.

mod topology;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use testkit::webdriver::{Browser, http, spawn_announcing};
use topology::Example;

/// An aggregation interval (15 s) twice, and the push.
const FLOWS: Duration = Duration::from_secs(60);
/// A period (10 s) of the status writes, twice, and the session's fall.
const BGP: Duration = Duration::from_secs(60);
const QUICK: Duration = Duration::from_secs(20);

/// `calicoctl console` on a free loopback port, killed on drop.
struct Console {
    child: Child,
    addr: SocketAddr,
}

impl Console {
    fn start(qs: &Example) -> Console {
        let (child, addr) = spawn_announcing(
            Command::new(qs.bin().join("calicoctl"))
                .args(["console", "--listen", "127.0.0.1:0", "--flows-server"])
                .arg(format!("unix:{}", qs.goldmane_socket("flows").display()))
                .env("DATASTORE_TYPE", "sqlite")
                .env("DATASTORE_PATH", qs.state().join("datastore.db"))
                .stderr(Stdio::inherit()),
        );
        Console { child, addr }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshots() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console")];
    dirs.extend(std::env::var_os("CONSOLE_SCREENSHOTS").map(PathBuf::from));
    dirs
}

fn shoot(browser: &Browser, name: &str) {
    for dir in screenshots() {
        browser.screenshot(&dir.join(format!("{name}.png")));
    }
}

/// The flow rows as [source, destination, protocol, port, action, policy,
/// reported by].
const FLOW_ROWS: &str = "return [...document.querySelectorAll('#flows tbody tr')].map(r => \
    [...r.cells].map(c => c.textContent)).map(c => [c[1], c[2], c[3], c[4], c[6], c[7], c[5]]);";

fn kill(pid: u32) {
    let _ = Command::new("kill").arg(pid.to_string()).status();
}

#[test]
fn the_console_shows_flows_traces_policies_bgp_and_ipam_in_a_real_browser() {
    if !topology::can_run() || !Browser::available() {
        return;
    }
    let qs = Example::quickstart_as("w");
    let report = qs.up();
    // The mesh on: every host peers with the other two as well.
    qs.calicoctl_ok(&[
        "patch",
        "bgpconfiguration",
        "default",
        "-p",
        r#"{"spec":{"nodeToNodeMeshEnabled":true}}"#,
    ]);
    let console = Console::start(&qs);

    // The API refuses a malformed query with 400 and says why.
    let bad = http(console.addr, "GET", "/api/flows?port=http", None).expect("the console answers");
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(
        bad.body.contains("port") && bad.body.contains("not a port"),
        "{}",
        bad.body
    );
    let none = http(console.addr, "GET", "/api/nothing", None).expect("the console answers");
    assert_eq!(none.status, 404, "{}", none.body);

    let browser = Browser::start(1600, 1000);
    browser.goto(&console.url());
    browser.wait_for("the flows view to list flows", FLOWS, FLOW_ROWS, |v| {
        v.as_array().is_some_and(|rows| !rows.is_empty())
    });

    // A denied connect now: db admits webs on 8080 only.
    let db3 = report.addresses("db-3")[0].clone();
    let connect = format!("exec 3<>/dev/tcp/{db3}/9999");
    let out = qs.in_workload("web-1", &["timeout", "1", "bash", "-c", &connect]);
    assert!(!out.status.success(), "web-1 reached db-3:9999");
    let denied = |v: &Value| {
        v.as_array().is_some_and(|rows| {
            rows.iter().any(|r| {
                r[0] == "default/web-1"
                    && r[1] == "default/db-3"
                    && r[3] == "9999"
                    && r[4] == "deny"
                    && r[5] == "default: end of tier"
                    && r[6] == "destination"
            })
        })
    };
    browser.wait_for(
        "the denied web-1 → db-3:9999 in the flows view",
        FLOWS,
        FLOW_ROWS,
        denied,
    );
    let marked = browser.script(
        "return [...document.querySelectorAll('#flows tbody tr.deny')].some(r => r.cells[4].textContent === '9999');",
        &[],
    );
    assert_eq!(marked, true, "the denied row is marked");
    shoot(&browser, "flows");

    // Its trace: the row clicked, rule by rule.
    let row = browser.script(
        "const rows = [...document.querySelectorAll('#flows tbody tr')]; \
         const i = rows.findIndex(r => r.cells[4].textContent === '9999' && r.cells[1].textContent === 'default/web-1'); \
         return i + 1;",
        &[],
    );
    let n = row.as_u64().filter(|&i| i > 0).expect("the row");
    browser.click(&format!("#flows tbody tr:nth-child({n})"));
    let trace = browser.wait_for(
        "the trace of the denied flow",
        QUICK,
        "const t = document.getElementById('trace'); return t.hidden ? '' : t.innerText;",
        |v| v.as_str().is_some_and(|t| t.contains("Verdict: DENY")),
    );
    let trace = trace.as_str().unwrap_or_default().to_string();
    assert!(
        trace.contains("NetworkPolicy default/db: no rule matched"),
        "{trace}"
    );
    assert!(trace.contains("rule 0 (allow): no match"), "{trace}");
    assert!(trace.contains("With staged policies (pending)"), "{trace}");
    shoot(&browser, "trace");

    // Filters: one namespace keeps its flows; another has none.
    browser.type_into("#flow-filters input[name=namespace]", "default");
    browser.wait_for("flows of namespace default", QUICK, FLOW_ROWS, |v| {
        v.as_array().is_some_and(|rows| {
            !rows.is_empty()
                && rows.iter().all(|r| {
                    r[0].as_str().is_some_and(|s| s.starts_with("default/"))
                        || r[1].as_str().is_some_and(|s| s.starts_with("default/"))
                })
        })
    });
    browser.type_into("#flow-filters input[name=namespace]", "kube-system");
    browser.wait_for("no flows in namespace kube-system", QUICK, FLOW_ROWS, |v| {
        v.as_array().is_some_and(Vec::is_empty)
    });
    shoot(&browser, "flows-filtered");
    browser.type_into("#flow-filters input[name=namespace]", "");

    // Policies: the default tier's, with the endpoints each selects and hits.
    browser.click("#tabs button[data-view=policies]");
    let policies = browser.wait_for(
        "the policies view",
        QUICK,
        "return document.getElementById('tiers').innerText;",
        |v| {
            v.as_str()
                .is_some_and(|t| t.contains("NetworkPolicy default/db"))
        },
    );
    let policies = policies.as_str().unwrap_or_default().to_string();
    assert!(policies.contains("Tier default"), "{policies}");
    assert!(policies.contains("app == \"db\""), "{policies}");
    assert!(
        policies.contains("default/db-2, default/db-3"),
        "{policies}"
    );
    shoot(&browser, "policies");

    // IPAM: the pool and a block per host.
    browser.click("#tabs button[data-view=ipam]");
    let ipam = browser.wait_for(
        "the IPAM view",
        QUICK,
        "return document.getElementById('view-ipam').innerText;",
        |v| {
            v.as_str()
                .is_some_and(|t| t.contains("10.244.0.0/16") && t.contains("ipam check is clean"))
        },
    );
    let ipam = ipam.as_str().unwrap_or_default().to_string();
    for host in ["h1", "h2", "h3"] {
        assert!(ipam.contains(host), "{host}: {ipam}");
    }
    shoot(&browser, "ipam");

    // BGP: every session up (the ToR and the mesh), then h3's felix stops.
    browser.click("#tabs button[data-view=bgp]");
    let sessions = "return [...document.querySelectorAll('#nodes .node')].map(n => [n.dataset.node, \
        [...n.querySelectorAll('tbody tr[data-peer]')].map(r => [r.dataset.peer, r.classList.contains('down'), r.querySelector('.reason').textContent])]);";
    browser.wait_for(
        "three nodes with three sessions up each",
        BGP,
        sessions,
        |v| {
            v.as_array().is_some_and(|nodes| {
                nodes.len() == 3
                    && nodes.iter().all(|n| {
                        n[1].as_array()
                            .is_some_and(|s| s.len() == 3 && s.iter().all(|p| p[1] == false))
                    })
            })
        },
    );
    shoot(&browser, "bgp");
    kill(qs.daemon_pid("h3"));
    let down = browser.wait_for(
        "h1's and h2's sessions to h3 down, with why",
        BGP,
        sessions,
        |v| {
            v.as_array().is_some_and(|nodes| {
                ["h1", "h2"].iter().all(|host| {
                    nodes.iter().any(|n| {
                        n[0] == *host
                            && n[1].as_array().is_some_and(|s| {
                                s.iter().any(|p| {
                                    p[0] == "10.0.0.13"
                                        && p[1] == true
                                        && p[2].as_str().is_some_and(|r| !r.is_empty())
                                })
                            })
                    })
                })
            })
        },
    );
    let text = down.to_string();
    assert!(
        text.contains("TCP 179") || text.contains("dropped"),
        "{text}"
    );
    let summary = browser.script(
        "return document.getElementById('bgp-summary').innerText;",
        &[],
    );
    assert!(
        summary.as_str().is_some_and(|s| !s.contains(" 0 down")),
        "{summary}"
    );
    shoot(&browser, "bgp-down");

    // The flow API gone: a banner; back: the page recovers by itself.
    browser.click("#tabs button[data-view=flows]");
    kill(qs.daemon_pid("flows"));
    let banner =
        "const b = document.getElementById('banner'); return b.hidden ? '' : b.textContent;";
    browser.wait_for("the banner", QUICK, banner, |v| {
        v.as_str()
            .is_some_and(|t| t.contains("The flow API is unavailable"))
    });
    shoot(&browser, "banner");
    let socket = qs.goldmane_socket("flows");
    let mut goldmane = Command::new("ip")
        .args(["netns", "exec", &format!("clab-{}-flows", qs.name)])
        .arg(qs.bin().join("goldmane"))
        .args(["--listen", "none", "--socket"])
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("goldmane restarts");
    browser.wait_for("the banner to go", QUICK, banner, |v| {
        v.as_str() == Some("")
    });
    let _ = goldmane.kill();
    let _ = goldmane.wait();
    drop(browser);
    drop(console);
    qs.down();
}
