//! `workspace_binary` builds and finds another package's binary.

use std::process::Command;

#[test]
fn workspace_binary_builds_and_finds_another_packages_program() {
    let bgpd = testkit::workspace_binary("bgpd", "bgpd").expect("build bgpd");
    assert!(bgpd.is_file(), "{} is not a file", bgpd.display());
    let out = Command::new(&bgpd)
        .arg("--help")
        .output()
        .expect("run bgpd");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("bgpd"), "unexpected output: {text}");
}

#[test]
fn workspace_binary_names_an_unknown_package() {
    let err = testkit::workspace_binary("no-such-package", "nope").unwrap_err();
    assert!(err.to_string().contains("no-such-package"), "{err}");
}
