// stdout is data (docs/contract.md): JSON Lines, or the paths a tool made. Every tool writes its
// lines through `Stdout.line`: one write(2) per line, unbuffered, so a pipeline reading the
// output sees each record as soon as it exists and never half of one, and a tool killed
// mid-run has printed exactly the records of the work it finished. Bulk copies of data
// (`pp-ingest cat`) write their own blocks.

public enum Stdout {
    /// Writes `line` and a newline (FileIO.writeAll: whole, EINTR retried). Throws PPError
    /// (I/O) when stdout is closed or full (EPIPE, ENOSPC on a redirect).
    public static func line(_ line: String) throws {
        let bytes = Array((line + "\n").utf8)
        try bytes.withUnsafeBytes { try FileIO.writeAll(1, $0, path: "stdout") }
    }
}
