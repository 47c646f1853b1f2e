use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: a build script compiled in another checkout sharing the build cache
    // would otherwise look for the protos under that checkout's path.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files: Vec<PathBuf> = ["common.proto", "retrieval.proto", "answer.proto", "navigation.proto"]
        .iter()
        .map(|f| root.join("codeintel/v1").join(f))
        .collect();
    let flight = root.join("arrow/flight/Flight.proto");
    // Relative to this package, so that every checkout sharing a build cache is watched.
    for f in ["common.proto", "retrieval.proto", "answer.proto", "navigation.proto"] {
        println!("cargo:rerun-if-changed=../../proto/codeintel/v1/{f}");
    }
    println!("cargo:rerun-if-changed=../../proto/arrow/flight/Flight.proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("codeintel_descriptor.bin"))
        .compile_protos(&files, std::slice::from_ref(&root))?;
    // Flight: descriptor only (the types come from arrow-flight), for reflection on hydrate-svc.
    let flight_out = out.join("flight");
    std::fs::create_dir_all(&flight_out)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .out_dir(&flight_out)
        .file_descriptor_set_path(out.join("flight_descriptor.bin"))
        .compile_protos(&[flight], &[root])?;
    Ok(())
}
