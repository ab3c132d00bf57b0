// What this build's code was generated for, and whether this CPU could run a faster build
// (issue 20). A release build without a target CPU lowers every fused multiply-add of the
// sparse training loop to a call to libm's fmaf and uses SSE only: the same training takes
// ~3.5x longer, with nothing else to show for it. The tools report it (`--version`, and
// pp-train's first log lines) so that a slow build announces itself. Not the choice of the
// flag itself: that is Package.swift (PP_TARGET_CPU) and the Makefile (TARGET_CPU).

import CIntrinsics

public enum BuildTarget {
    /// Perpetuum's version (no releases yet).
    public static let version = "0.1.0-dev"

    /// The code of this module (Shared: the model, the trainer's hot loops) was generated with
    /// fused multiply-add instructions. Read from the C importer's predefined macros, which
    /// follow the same -target-cpu as the Swift code (CIntrinsics/intrinsics.h).
    public static let fma = pp_built_with_fma() != 0
    /// ... with AVX2 (256-bit integer and float SIMD).
    public static let avx2 = pp_built_with_avx2() != 0
    /// ... with AVX-512F.
    public static let avx512f = pp_built_with_avx512f() != 0
    /// The CPU name Package.swift passed to -target-cpu ("" when none was passed that way).
    public static let cpuName = String(cString: pp_built_target_cpu())

    #if DEBUG
    public static let configuration = "debug"
    #else
    public static let configuration = "release"
    #endif

    /// "haswell (AVX2, FMA)", "generic x86-64 (no AVX2, no FMA)"; a build that got its
    /// features from flags Package.swift did not set (e.g. -Xswiftc -target-cpu) says so.
    public static var summary: String {
        #if arch(x86_64)
        var features = [avx2 ? "AVX2" : "no AVX2", fma ? "FMA" : "no FMA"]
        if avx512f { features.append("AVX-512F") }
        let name = !cpuName.isEmpty ? cpuName : (fma || avx2 ? "x86-64 with extensions" : "generic x86-64")
        return "\(name) (\(features.joined(separator: ", ")))"
        #elseif arch(arm64)
        return "arm64 (\(fma ? "FMA" : "no FMA"))"
        #else
        return "\(cpuName.isEmpty ? "generic" : cpuName) (\(fma ? "FMA" : "no FMA"))"
        #endif
    }

    /// The `--version` text of `tool`: "pp-train 0.1.0-dev, release build for haswell (AVX2, FMA)".
    public static func versionLine(_ tool: String) -> String {
        "\(tool) \(version), \(configuration) build for \(summary)"
    }

    /// The CPU flags of /proc/cpuinfo's first "flags" line (empty when unreadable).
    public static func cpuFlags(cpuinfo: String? = nil) -> Set<String> {
        let text: String
        if let c = cpuinfo { text = c } else {
            guard let bytes = try? FileIO.readAll("/proc/cpuinfo") else { return [] }
            text = String(decoding: bytes, as: UTF8.self)
        }
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }),
              let colon = line.firstIndex(of: ":") else { return [] }
        return Set(line[line.index(after: colon)...].split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init))
    }

    /// A warning when this CPU has AVX2 and FMA but the build uses neither fully (nil when the
    /// build is as fast as this CPU allows, or off x86-64), with the command for a fast build.
    public static func slowBuildWarning(cpuFlags: Set<String>, buildFMA: Bool = fma, buildAVX2: Bool = avx2) -> String? {
        #if arch(x86_64)
        guard cpuFlags.contains("avx2") && cpuFlags.contains("fma"), !(buildFMA && buildAVX2) else { return nil }
        return "this build is not for this CPU: it has AVX2 and FMA, the build uses \(buildFMA ? "FMA" : "no FMA") and \(buildAVX2 ? "AVX2" : "no AVX2"), so training runs ~3.5x slower than it could; build for it with `make build` or `PP_TARGET_CPU=haswell swift build -c release`"
        #else
        return nil
        #endif
    }
}
