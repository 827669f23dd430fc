//! Generates the message types, the servers and the clients of
//! `proto/goldmane.proto` with protoc (Debian's protobuf-compiler).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/goldmane.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // FlowCollector's `Connect` rpc would collide with the generated
        // `connect` constructor: clients are made with `new(channel)`.
        .build_transport(false)
        // Undecodable requests are InvalidArgument (src/codec.rs).
        .codec_path("crate::codec::Codec")
        .compile_protos(&["proto/goldmane.proto"], &["proto"])?;
    Ok(())
}
