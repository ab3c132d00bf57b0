// OpenBLAS set-up for pp-train: the kernel choice and one BLAS thread (the kernels the model
// runs are in TextModel/BLAS.swift).
//
// The kernel trap (docs/design.md, measured): Debian's OpenBLAS picks slow generic kernels on
// CPUs it does not recognise, unless OPENBLAS_CORETYPE is set before the library loads, i.e.
// before main runs. So pp-train calls `BLASSetup.reexecIfNeeded()` first thing: when the
// variable is unset, it is chosen from /proc/cpuinfo's flags (avx512bw -> SkylakeX,
// avx2 -> Haswell; otherwise left unset: SkylakeX kernels on a CPU without AVX-512 die with
// SIGILL) and the process re-executes itself once (/proc/self/exe, same argv), marked by
// PP_BLAS_REEXEC=1 so it never loops. A value the user set is never overridden.

import TextModel
import COpenBLAS
import Logging
import Shared
#if canImport(Glibc)
import Glibc
#endif

public enum BLASSetup {
    static let marker = "PP_BLAS_REEXEC"

    /// The OPENBLAS_CORETYPE to use on this CPU, from /proc/cpuinfo flags (nil: leave unset).
    public static func coreTypeForThisCPU(cpuinfo: String? = nil) -> String? {
        let text: String
        if let c = cpuinfo { text = c } else {
            guard let bytes = try? FileIO.readAll("/proc/cpuinfo") else { return nil }
            text = String(decoding: bytes, as: UTF8.self)
        }
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
        let flags = Set(line.split(separator: " ").map(String.init))
        if flags.contains("avx512bw") { return "SkylakeX" }
        if flags.contains("avx2") { return "Haswell" }
        return nil
    }

    /// Call first thing in main. Re-executes the process once with OPENBLAS_CORETYPE set
    /// when it is unset and this CPU has a better kernel than OpenBLAS's fallback. Returns
    /// (without exec) when the variable is set, the marker is present, or exec fails.
    public static func reexecIfNeeded() {
        if getenv("OPENBLAS_CORETYPE") != nil || getenv(marker) != nil { return }
        guard let core = coreTypeForThisCPU() else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        setenv(marker, "1", 1)
        // execv(2) the running binary with the same arguments.
        var argv: [UnsafeMutablePointer<CChar>?] = CommandLine.arguments.map { strdup($0) }
        argv.append(nil)
        execv("/proc/self/exe", &argv)
        // exec failed: carry on with whatever kernel was picked.
        for p in argv { free(p) }
    }

    /// The kernel OpenBLAS uses (e.g. "Haswell").
    public static var coreName: String {
        guard let p = openblas_get_corename() else { return "unknown" }
        return String(cString: p)
    }

    /// One BLAS thread: the trainer spends the second core on a second worker instead.
    public static func singleThreaded() {
        openblas_set_num_threads(1)
    }

    /// Logs the kernel in use at debug level.
    public static func logCore(_ log: Logger) {
        log.debug("openblas", metadata: ["core": "\(coreName)",
                                         "coretype_env": "\(getenv("OPENBLAS_CORETYPE").map { String(cString: $0) } ?? "unset")"])
    }
}
