//! Our `proto/goldmane.proto` is Goldmane's contract: protoc compiles both
//! files (ours and the vendored `tests/goldmane/api.proto`) to descriptors,
//! and every service, method, message, field (name, number, type, label) and
//! enum value must be the same. Only the comments differ.

use std::path::Path;
use std::process::Command;

use prost::Message;
use prost_types::{FileDescriptorProto, FileDescriptorSet};

fn descriptor(dir: &str, file: &str) -> FileDescriptorProto {
    let out = tempfile::NamedTempFile::new().expect("a temporary file");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let status = Command::new("protoc")
        .arg(format!("--proto_path={}", root.display()))
        .arg(format!("--descriptor_set_out={}", out.path().display()))
        .arg(file)
        .status()
        .expect("protoc runs (Debian's protobuf-compiler, scripts/packages.sh)");
    assert!(status.success(), "protoc {dir}/{file}: {status}");
    let bytes = std::fs::read(out.path()).expect("protoc wrote the descriptor set");
    let mut set = FileDescriptorSet::decode(bytes.as_slice()).expect("a descriptor set");
    assert_eq!(set.file.len(), 1, "{file} imports nothing");
    let mut file = set.file.remove(0);
    file.name = None;
    file
}

/// The descriptor with its services, messages and enums in name order (the
/// order of declarations in a file is no part of the wire contract).
fn normalised(mut file: FileDescriptorProto) -> FileDescriptorProto {
    file.service.sort_by(|a, b| a.name.cmp(&b.name));
    file.message_type.sort_by(|a, b| a.name.cmp(&b.name));
    file.enum_type.sort_by(|a, b| a.name.cmp(&b.name));
    file
}

fn names<T>(items: &[T], name: impl Fn(&T) -> Option<&str>) -> Vec<&str> {
    items
        .iter()
        .map(|item| name(item).unwrap_or_default())
        .collect()
}

#[test]
fn our_proto_has_goldmanes_services_messages_fields_and_enums() {
    let ours = normalised(descriptor("proto", "goldmane.proto"));
    let theirs = normalised(descriptor("tests/goldmane", "api.proto"));

    assert_eq!(
        names(&ours.service, |s| s.name.as_deref()),
        names(&theirs.service, |s| s.name.as_deref())
    );
    assert_eq!(
        names(&ours.message_type, |m| m.name.as_deref()),
        names(&theirs.message_type, |m| m.name.as_deref())
    );
    assert_eq!(
        names(&ours.enum_type, |e| e.name.as_deref()),
        names(&theirs.enum_type, |e| e.name.as_deref())
    );
    // Item by item, so a difference names where it is.
    for (a, b) in ours.service.iter().zip(&theirs.service) {
        assert_eq!(a, b, "service {:?}", a.name);
    }
    for (a, b) in ours.message_type.iter().zip(&theirs.message_type) {
        assert_eq!(a, b, "message {:?}", a.name);
    }
    for (a, b) in ours.enum_type.iter().zip(&theirs.enum_type) {
        assert_eq!(a, b, "enum {:?}", a.name);
    }
    // Then the whole file: package, syntax, options.
    assert_eq!(ours, theirs);
}
