// What the built trainer was compiled for (issue 20): on a CPU with AVX2 and FMA, the release
// build under test must use them (a build without a target CPU lowers every fused multiply-add
// to a call to libm's fmaf and trains ~3.5x slower). Checks the binary's own report
// (`pp-train --version`, from the C importer's __FMA__/__AVX2__) and its dynamic symbols,
// then the start log line and the slow-build warning. Times nothing.

import Foundation
import Shared
import TextModel
import TestSupport
import XCTest

final class BuildTargetTests: XCTestCase {
    func testTrainerIsBuiltForThisCPU() throws {
        let r = try TestSupport.run("pp-train", ["--version"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.hasPrefix("pp-train \(BuildTarget.version), "), r.stdout)
        let cpu = BuildTarget.cpuFlags()
        guard cpu.contains("avx2") && cpu.contains("fma") else {
            throw XCTSkip("this CPU has no AVX2+FMA: a generic build is the right one here")
        }
        XCTAssertTrue(r.stdout.contains("(AVX2, FMA"),
                      "pp-train was built without AVX2/FMA on a CPU that has them (~3.5x slower): \(r.stdout)")
        // The code-generation fact behind it: a generic build imports fmaf from libm (its name
        // sits NUL-delimited in the dynamic string table); a haswell build has no such call.
        let exe = try FileIO.readAll(TestSupport.binary("pp-train"))
        let needle = Array("\0fmaf\0".utf8)
        let imports = exe.withUnsafeBufferPointer { b -> Bool in
            guard b.count >= needle.count else { return false }
            outer: for i in 0...(b.count - needle.count) where b[i] == 0 {
                for j in 1..<needle.count where b[i + j] != needle[j] { continue outer }
                return true
            }
            return false
        }
        XCTAssertFalse(imports, "pp-train calls libm's fmaf: its fused multiply-adds are library calls")
    }

    func testStartLogSaysWhatTheBuildIsFor() throws {
        let root = try Fix.newRoot("build-target")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = try TestSupport.run("pp-train", ["--root", root, "--once"] + Fix.tiny)
        XCTAssertEqual(r.status, 2, r.stderr)   // no shards: nothing to do
        XCTAssertTrue(r.stderr.contains("pp-train: compiled for \(BuildTarget.summary)"), r.stderr)
        let cpu = BuildTarget.cpuFlags()
        if cpu.contains("avx2") && cpu.contains("fma") {
            XCTAssertFalse(r.stderr.contains("this build is not for this CPU"), r.stderr)
        }
    }

    func testSlowBuildWarningNamesTheFix() {
        let fast: Set<String> = ["sse2", "avx", "avx2", "fma"]
        let w = BuildTarget.slowBuildWarning(cpuFlags: fast, buildFMA: false, buildAVX2: false)
        #if arch(x86_64)
        XCTAssertNotNil(w)
        XCTAssertTrue(w?.contains("make build") == true, w ?? "")
        XCTAssertTrue(w?.contains("PP_TARGET_CPU=haswell swift build -c release") == true, w ?? "")
        XCTAssertNotNil(BuildTarget.slowBuildWarning(cpuFlags: fast, buildFMA: true, buildAVX2: false))
        #else
        XCTAssertNil(w)
        #endif
        XCTAssertNil(BuildTarget.slowBuildWarning(cpuFlags: fast, buildFMA: true, buildAVX2: true))
        XCTAssertNil(BuildTarget.slowBuildWarning(cpuFlags: ["sse2", "avx"], buildFMA: false, buildAVX2: false))
        XCTAssertEqual(BuildTarget.cpuFlags(cpuinfo: "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n"), ["fpu", "sse2", "avx2", "fma"])
    }
}
