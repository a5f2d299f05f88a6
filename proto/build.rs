//! Compiles the `.proto` files with `protox` (pure Rust), so no `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/workload.proto",
        "proto/taskstatus.proto",
        "proto/delegation.proto",
        "proto/types.proto",
        "proto/agent.proto",
        "proto/admin.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        // The agent sends the same certificates, keys and bundles to every stream: as
        // `bytes::Bytes` a stream's message shares them instead of copying a megabyte.
        .bytes(".X509SVID")
        .bytes(".X509SVIDResponse")
        .bytes(".X509BundlesResponse")
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
