//! Generates the containerd-compatible messages and gRPC services from `proto/` with protox
//! (pure Rust, no protoc).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "containerd/types/descriptor.proto",
        "containerd/types/platform.proto",
        "containerd/types/mount.proto",
        "containerd/services/version/v1/version.proto",
        "containerd/services/introspection/v1/introspection.proto",
        "containerd/services/namespaces/v1/namespace.proto",
        "containerd/services/content/v1/content.proto",
        "containerd/services/leases/v1/leases.proto",
        "containerd/services/events/v1/events.proto",
        "containerd/services/images/v1/images.proto",
        "containerd/services/snapshots/v1/snapshots.proto",
        "containerd/services/diff/v1/diff.proto",
        "containerd/services/containers/v1/containers.proto",
        "containerd/types/task/task.proto",
        "containerd/types/metrics.proto",
        "containerd/runc/options/oci.proto",
        "containerd/cgroups/stats/v1/metrics.proto",
        "containerd/services/tasks/v1/tasks.proto",
        "berth/services/transfer/v1/transfer.proto",
        "containerd/events/events.proto",
        "google/rpc/status.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(files, ["proto"])?;
    let mut config = prost_build::Config::new();
    config.enable_type_names();
    config.bytes([
        ".containerd.services.content.v1.WriteContentRequest.data",
        ".containerd.services.content.v1.ReadContentResponse.data",
    ]);
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        .codec_path("crate::codec::LargeBufferCodec")
        .compile_fds_with_config(fds, config)?;
    Ok(())
}
