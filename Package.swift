// swift-tools-version:6.0
// Perpetuum: perpetual model training as four small Unix tools that talk only through a
// state folder (see docs/contract.md). Shared holds what two or more tools use: formats,
// atomic I/O, the tokenizer, the model and its checkpoint format.
import PackageDescription

// libFuzzer targets (Fuzz/Targets, issue 15), only with PP_FUZZ=1: tools/fuzz.sh builds them
// with -sanitize=fuzzer,address -parse-as-library, and without those flags they cannot link
// (libFuzzer supplies main), so ordinary builds never see them. Each target is one main.swift
// plus, for the tools' own parsers, symbolic links to their source files in Sources/.
let fuzzTargets: [Target] = Context.environment["PP_FUZZ"] == "1"
    ? ["checkpoint", "shard", "input", "control", "policy", "selections"].map {
        .executableTarget(name: "fuzz-\($0)", dependencies: ["Shared"], path: "Fuzz/Targets/fuzz-\($0)")
    }
    : []

let package = Package(
    name: "Perpetuum",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "pp-ingest", targets: ["pp-ingest"]),
        .executable(name: "pp-train", targets: ["pp-train"]),
        .executable(name: "pp-eval", targets: ["pp-eval"]),
        .executable(name: "pp-select", targets: ["pp-select"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        // SHA-256 of inputs and shards: BoringSSL's assembly runs at GB/s, a hand-written
        // Swift SHA-256 would be the slowest stage of pp-ingest.
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
    ],
    targets: [
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        // Header only: prefetch and errno-free square roots for the trainer (intrinsics.h).
        .systemLibrary(name: "CIntrinsics"),
        .target(
            name: "Shared",
            dependencies: [
                "CZstd", "COpenBLAS", "CIntrinsics",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(name: "pp-ingest", dependencies: ["Shared", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(name: "pp-train", dependencies: ["Shared", .product(name: "ArgumentParser", package: "swift-argument-parser"), .product(name: "Crypto", package: "swift-crypto"), .product(name: "Logging", package: "swift-log")]),
        .executableTarget(name: "pp-eval", dependencies: ["Shared", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(name: "pp-select", dependencies: ["Shared", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .target(name: "TestSupport", dependencies: ["Shared"], path: "Tests/TestSupport"),
        .testTarget(name: "SharedTests", dependencies: ["Shared", "TestSupport"]),
        .testTarget(name: "IngestTests", dependencies: ["Shared", "TestSupport", "pp-ingest"]),
        .testTarget(name: "TrainTests", dependencies: ["Shared", "TestSupport", "pp-train"]),
        .testTarget(name: "EvalTests", dependencies: ["Shared", "TestSupport", "pp-eval", "pp-select"]),
    ] + fuzzTargets,
    // Swift 5 language mode: the trainer's Hogwild tables are shared across threads on
    // purpose (see Sources/pp-train); strict Sendable checking would force wrappers around
    // every raw pointer without making the intentional races any safer.
    swiftLanguageModes: [.v5]
)
