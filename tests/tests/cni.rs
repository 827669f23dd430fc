//! The test CNI runtime drives a reference plugin (root).

use serde_json::json;
use testkit::cni::{Container, REFERENCE_PLUGINS, Runtime};
use testkit::{Netns, require_programs, require_root};

#[test]
fn the_runtime_runs_a_conflist_with_the_reference_loopback_plugin() {
    let loopback = format!("{REFERENCE_PLUGINS}/loopback");
    if !require_root() || !require_programs(&[&loopback]) {
        return;
    }
    let host = Netns::new("cnirt").unwrap();
    let c = Container::new("0123456789abcdef", None);
    let list = json!({"cniVersion": "1.0.0", "name": "t", "plugins": [{"type": "loopback"}]});
    let rt = Runtime::new(&host, REFERENCE_PLUGINS);
    let result = rt.add_chain(&list, &c, &json!({})).unwrap();
    assert_eq!(result["cniVersion"], "1.0.0", "{result}");
    let lo = c.ns().ip(["-o", "link", "show", "lo"]).unwrap();
    assert!(lo.contains("UP"), "{lo}");
    rt.chain("DEL", &list, &c, &result, &json!({})).unwrap();

    let bad = rt.invoke(
        "loopback",
        "ADD",
        &c,
        &json!({"cniVersion": "9.9.9", "name": "t", "type": "loopback"}),
    );
    assert!(bad.code() > 0, "{bad:?}");
}
