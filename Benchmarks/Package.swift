// swift-tools-version:6.0
// layermount benchmarks: one executable, `layerbench`, run by scripts/bench.sh in release mode.
//
// It depends on the main package by path (for LayerCore's command-line parser) and drives the
// engines as a user would: mounts with kernel overlayfs, fuse-overlayfs and layermount, runs
// find / ls / tar and in-process reads through each, and runs layerdiff, diff, rsync and umoci
// on the same trees. See README.md, section "Benchmarks".
import PackageDescription

let package = Package(
    name: "layermount-benchmarks",
    dependencies: [.package(name: "layermount", path: "..")],
    targets: [
        .executableTarget(
            name: "layerbench",
            dependencies: [.product(name: "LayerCore", package: "layermount")]
        )
    ],
    swiftLanguageModes: [.v6]
)
