// swift-tools-version:6.0
// layermount: layered filesystems for container images.
//
// Dependencies point one way: executables -> OverlayFS / DiffEngine -> LayerCore -> C modules.
// Only OverlayFS/FUSE imports CFuse (scripts/test.sh checks it).
import PackageDescription

let package = Package(
    name: "layermount",
    products: [
        .executable(name: "layermount", targets: ["layermount"]),
        .executable(name: "layerdiff", targets: ["layerdiff"]),
        .library(name: "LayerCore", targets: ["LayerCore"]),
        .library(name: "OverlayFS", targets: ["OverlayFS"]),
        .library(name: "DiffEngine", targets: ["DiffEngine"]),
    ],
    targets: [
        .systemLibrary(name: "CFuse", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),
        .systemLibrary(name: "CXXHash", pkgConfig: "libxxhash", providers: [.apt(["libxxhash-dev"])]),
        .systemLibrary(name: "CArchive", pkgConfig: "libarchive", providers: [.apt(["libarchive-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CDeflate", pkgConfig: "libdeflate", providers: [.apt(["libdeflate-dev"])]),
        .systemLibrary(name: "CCompress", providers: [.apt(["zlib1g-dev", "libzstd-dev"])]),
        .systemLibrary(name: "CLayerSys"),
        .target(name: "LayerCore", dependencies: ["CLayerSys", "CArchive", "CCrypto", "CDeflate", "CCompress"]),
        .target(name: "OverlayFS", dependencies: ["LayerCore", "CFuse", "CXXHash", "CArchive"]),
        .target(name: "DiffEngine", dependencies: ["LayerCore", "CXXHash", "CArchive"]),
        .executableTarget(name: "layermount", dependencies: ["OverlayFS", "LayerCore"]),
        .executableTarget(name: "layerdiff", dependencies: ["DiffEngine", "LayerCore"]),
        .target(name: "TestSupport", dependencies: ["LayerCore", "CLayerSys"], path: "Tests/TestSupport"),
        .testTarget(name: "LayerCoreTests", dependencies: ["LayerCore", "TestSupport"]),
        .testTarget(name: "OverlayFSTests", dependencies: ["OverlayFS", "LayerCore", "TestSupport"]),
        .testTarget(name: "DiffEngineTests", dependencies: ["DiffEngine", "LayerCore", "TestSupport", "CLayerSys"]),
    ],
    swiftLanguageModes: [.v6]
)
