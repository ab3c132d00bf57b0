// OpenBLAS for pp-train: one BLAS thread and the kernel in use for the log. The library is
// opened at its first use and its environment (threads, kernel) set by main before that:
// TextModel's BLASLibrary (BLAS.swift) and Sources/COpenBLAS/blas.c.

import COpenBLAS
import Logging
#if canImport(Glibc)
import Glibc
#endif

public enum BLASSetup {
    /// The kernel OpenBLAS uses (e.g. "Haswell").
    public static var coreName: String { String(cString: pp_blas_corename()) }

    /// One BLAS thread, whatever OPENBLAS_NUM_THREADS says: the trainer spends the second
    /// core on a second worker instead.
    public static func singleThreaded() {
        pp_blas_set_num_threads(1)
    }

    /// Logs the kernel in use at debug level.
    public static func logCore(_ log: Logger) {
        log.debug("openblas", metadata: ["core": "\(coreName)",
                                         "coretype_env": "\(getenv("OPENBLAS_CORETYPE").map { String(cString: $0) } ?? "unset")"])
    }
}
