// swift-tools-version:6.0
// Perpetuum: perpetual model training as four small Unix tools that talk only through a
// state folder (see docs/contract.md), over three libraries: Shared (the contract), TextModel
// (the model and its files) and Training (pp-train's). docs/design.md opens with the map.
import Foundation
import PackageDescription

// libFuzzer targets (Fuzz/Targets, issue 15), only with PP_FUZZ=1: tools/fuzz.sh builds them
// with -sanitize=fuzzer,address, and without it they cannot link (libFuzzer's driver), so
// ordinary builds never see them. Each target is one main.swift, whose top-level code hands
// its input function to LLVMFuzzerRunDriver (Fuzz/CFuzzer: SwiftPM links an executable's main
// as MODULE_main, so libFuzzer's own main() cannot be used), plus, for the tools' own parsers,
// symbolic links to their source files in Sources/.
let fuzzTargets: [Target] = Context.environment["PP_FUZZ"] == "1"
    ? [.systemLibrary(name: "CFuzzer", path: "Fuzz/CFuzzer")]
        + ["checkpoint", "shard", "input", "control", "policy", "selections", "scorecache", "holdoutindex", "linkindex"].map {
            .executableTarget(name: "fuzz-\($0)", dependencies: ["Shared", "TextModel", "CFuzzer"], path: "Fuzz/Targets/fuzz-\($0)")
        }
    : []

// The CPU the code is generated for (issue 20). Without a named target CPU, Swift compiles for
// generic x86-64: the sparse training loop's fused multiply-adds become calls to libm's fmaf
// and its SIMD is SSE only, and the trainer runs ~3.5x slower. So a plain
// `swift build -c release` builds for the CPU it runs on, like `make build`:
//   PP_TARGET_CPU unset, "" or "auto": haswell when /proc/cpuinfo lists avx2 and fma (x86_64
//     hosts), else no flag. Such a binary dies with SIGILL on a CPU without AVX2/FMA.
//   PP_TARGET_CPU=x86-64 (or "portable", "generic"): no flag, portable binaries.
//   PP_TARGET_CPU=NAME: -target-cpu NAME (an LLVM CPU name: native, haswell, znver3, ...).
// The flag goes to every target of this package (not to the dependencies), with
// -DPP_TARGET_CPU=NAME for the C importer, so a binary can say what it was built for
// (Shared/BuildTarget.swift; `pp-train --version`). unsafeFlags are fine for a root package;
// this package is not meant to be a dependency of another. SwiftPM re-reads the manifest when
// the environment changes, so switching PP_TARGET_CPU rebuilds with the new flags.
func targetCPU() -> String? {
    let asked = ProcessInfo.processInfo.environment["PP_TARGET_CPU"]?.trimmingCharacters(in: .whitespaces) ?? ""
    switch asked.lowercased() {
    case "x86-64", "x86_64", "portable", "generic", "none": return nil
    case "", "auto":
        #if arch(x86_64)
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
        let flags = Set(line.split(separator: " "))
        return flags.contains("avx2") && flags.contains("fma") ? "haswell" : nil
        #else
        return nil
        #endif
    default: return asked
    }
}
let cpuSettings: [SwiftSetting] = targetCPU().map { cpu in
    [.unsafeFlags(["-target-cpu", cpu, "-Xcc", "-DPP_TARGET_CPU=\(cpu)"])]
} ?? []

// The trainer's hot loop (Training) runs the model's kernels and row tables (TextModel) across
// a module boundary. Those calls inline because they are @inlinable on @usableFromInline types
// (a `package` method alone is not inlined into another module: docs/design.md, "Map");
// -cross-module-optimization also lets the optimiser serialise other small TextModel functions
// for the tools. The binaries were checked with objdump; the flag's own share was not measured.
let crossModule: [SwiftSetting] = [.unsafeFlags(["-cross-module-optimization"], .when(configuration: .release))]

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
        // OpenBLAS, opened at its first use (dlopen), not linked: Sources/COpenBLAS/blas.c says why.
        .target(name: "COpenBLAS", linkerSettings: [.linkedLibrary("dl"), .linkedLibrary("pthread")]),
        // Header only: prefetch and errno-free square roots for the trainer (intrinsics.h).
        .systemLibrary(name: "CIntrinsics"),
        // The contract every tool shares (docs/design.md, "Map"): the state folder and its file
        // names, durable file I/O, the shard and eval-result formats, JSON, logging, metrics,
        // exit statuses. No model code.
        .target(
            name: "Shared",
            dependencies: [
                "CZstd", "CIntrinsics",  // CIntrinsics: the PP_TARGET_CPU macro (BuildTarget)
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: cpuSettings
        ),
        // The model and what reads it: tokenizer, input parser, features, vocabulary, the model
        // and its kernels, checkpoints (full, delta, lineage), the eval set. Every tool links it.
        .target(
            name: "TextModel",
            dependencies: [
                "Shared", "CZstd", "COpenBLAS", "CIntrinsics",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: cpuSettings + crossModule
        ),
        // Training, pp-train's alone: the trainer, the SGD step and its workers, OpenBLAS's
        // set-up, sd_notify.
        .target(
            name: "Training",
            dependencies: ["Shared", "TextModel", "COpenBLAS", "CIntrinsics", .product(name: "Logging", package: "swift-log")],
            swiftSettings: cpuSettings + crossModule
        ),
        .executableTarget(name: "pp-ingest", dependencies: ["Shared", "TextModel", .product(name: "ArgumentParser", package: "swift-argument-parser")], swiftSettings: cpuSettings),
        .executableTarget(name: "pp-train", dependencies: ["Shared", "TextModel", "Training", .product(name: "ArgumentParser", package: "swift-argument-parser"), .product(name: "Crypto", package: "swift-crypto"), .product(name: "Logging", package: "swift-log")], swiftSettings: cpuSettings),
        .executableTarget(name: "pp-eval", dependencies: ["Shared", "TextModel", .product(name: "ArgumentParser", package: "swift-argument-parser"), .product(name: "Logging", package: "swift-log")], swiftSettings: cpuSettings),
        .executableTarget(name: "pp-select", dependencies: ["Shared", "TextModel", .product(name: "ArgumentParser", package: "swift-argument-parser")], swiftSettings: cpuSettings),
        // Tests mirror the modules: one target per library (the model's tests train their
        // fixtures with the trainer), one per tool's command line (EvalTests: pp-eval and pp-select).
        .target(name: "TestSupport", dependencies: ["Shared", "TextModel"], path: "Tests/TestSupport", swiftSettings: cpuSettings),
        .testTarget(name: "SharedTests", dependencies: ["Shared", "TestSupport"], swiftSettings: cpuSettings),
        .testTarget(name: "TextModelTests", dependencies: ["Shared", "TextModel", "Training", "TestSupport"], swiftSettings: cpuSettings),
        .testTarget(name: "TrainingTests", dependencies: ["Shared", "TextModel", "Training", "TestSupport"], swiftSettings: cpuSettings),
        .testTarget(name: "IngestTests", dependencies: ["Shared", "TextModel", "TestSupport", "pp-ingest"], swiftSettings: cpuSettings),
        .testTarget(name: "TrainTests", dependencies: ["Shared", "TextModel", "Training", "TestSupport", "pp-train"], swiftSettings: cpuSettings),
        .testTarget(name: "EvalTests", dependencies: ["Shared", "TextModel", "Training", "TestSupport", "pp-eval", "pp-select"], swiftSettings: cpuSettings),
    ] + fuzzTargets,
    // Swift 5 language mode: the trainer's Hogwild tables are shared across threads on
    // purpose (see Sources/pp-train); strict Sendable checking would force wrappers around
    // every raw pointer without making the intentional races any safer.
    swiftLanguageModes: [.v5]
)
