// Timestamps as the state folder writes them: ISO-8601 UTC with seconds, and compact
// sortable stamps for file names.

#if canImport(Glibc)
import Glibc
#endif
import Synchronization

public enum Clock {
    /// Seconds since the Unix epoch, with sub-second precision: the wall clock, or the
    /// simulated one when $PP_CLOCK_FILE is set (below).
    public static func now() -> Double {
        if let path = simulatedPath, let t = simulated(path) { return t }
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Replays only (`make drift`, compressed-clock tests; docs/operations.md, "Simulated
    /// clock"): $PP_CLOCK_FILE names a file holding Unix seconds as a decimal number, and
    /// every "now" of every tool (checkpoint names and times, selection windows, settle
    /// times, timestamps in records, and the checkpoint cadence: `cadence()`) is read from
    /// it at each call, so a harness can move time for a long-running trainer too. Other
    /// durations (rates, timeouts, rescans) stay on the monotonic clock. A file that cannot be read or parsed falls
    /// back to the wall clock, with one warning on stderr per process.
    static let simulatedPath: String? = getenv("PP_CLOCK_FILE").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }

    static let warnedSimulated = Atomic<Bool>(false)

    static func simulated(_ path: String) -> Double? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        var buf = [UInt8](repeating: 0, count: 64)
        var n = -1
        if fd >= 0 {
            var st = stat()
            if fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG {
                n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, 63) }
            }
            close(fd)
        }
        if n > 0, let t = Double(String(decoding: buf[0..<n], as: UTF8.self).filter { !$0.isWhitespace }), t.isFinite, t >= 0 {
            return t
        }
        if !warnedSimulated.exchange(true, ordering: .relaxed) {
            let msg = "warning: PP_CLOCK_FILE=\(path) cannot be read as Unix seconds; using the wall clock\n"
            _ = msg.withCString { write(2, $0, strlen($0)) }
        }
        return nil
    }

    /// Seconds for the checkpoint cadence: the simulated clock when $PP_CLOCK_FILE is set
    /// (so a compressed-clock replay sees hourly checkpoints in its own hours), otherwise
    /// the monotonic clock. Only differences of two readings mean anything.
    public static func cadence() -> Double {
        if let path = simulatedPath, let t = simulated(path) { return t }
        return monotonic()
    }

    /// Monotonic seconds, for measuring durations.
    public static func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    static func parts(_ t: Int64) -> tm {
        var tt = time_t(t)
        var out = tm()
        gmtime_r(&tt, &out)
        return out
    }

    /// "2026-11-26T19:45:00Z"
    public static func iso(_ t: Double) -> String {
        let p = parts(Int64(t.rounded(.down)))
        return String(format2: p.tm_year + 1900, 4) + "-" + String(format2: p.tm_mon + 1, 2) + "-" + String(format2: p.tm_mday, 2)
            + "T" + String(format2: p.tm_hour, 2) + ":" + String(format2: p.tm_min, 2) + ":" + String(format2: p.tm_sec, 2) + "Z"
    }

    /// "20261126T194500Z": sorts by time, safe in file names.
    public static func stamp(_ t: Double) -> String {
        let p = parts(Int64(t.rounded(.down)))
        return String(format2: p.tm_year + 1900, 4) + String(format2: p.tm_mon + 1, 2) + String(format2: p.tm_mday, 2)
            + "T" + String(format2: p.tm_hour, 2) + String(format2: p.tm_min, 2) + String(format2: p.tm_sec, 2) + "Z"
    }

    /// "24h", "90m", "7d", "2w", "3600s" or plain seconds (pp-select --since, pp-eval --since).
    public static func duration(_ s: String) -> Double? {
        guard let last = s.last else { return nil }
        let unit: Double
        var num = s
        switch last {
        case "s": unit = 1; num.removeLast()
        case "m": unit = 60; num.removeLast()
        case "h": unit = 3600; num.removeLast()
        case "d": unit = 86_400; num.removeLast()
        case "w": unit = 604_800; num.removeLast()
        default: unit = 1
        }
        guard let v = Double(num), v >= 0, v.isFinite else { return nil }
        return v * unit
    }

    /// The Unix seconds of a `stamp(_:)` ("20261126T194500Z", the stamp of checkpoint and shard
    /// names); nil when it is not one.
    public static func parseStamp<S: StringProtocol>(_ s: S) -> Double? {
        let b = Array(s.utf8)
        guard b.count == 16, b[8] == UInt8(ascii: "T"), b[15] == UInt8(ascii: "Z") else { return nil }
        func part(_ r: Range<Int>) -> String { String(decoding: b[r], as: UTF8.self) }
        let iso = part(0..<4) + "-" + part(4..<6) + "-" + part(6..<8) + "T" + part(9..<11) + ":" + part(11..<13) + ":" + part(13..<15) + "Z"
        return parseISO(iso).map(Double.init)
    }

    /// Parses ISO-8601 with a UTC offset or Z ("2016-02-15T16:03:36+07:00", fractions
    /// ignored) into Unix seconds; nil when it is not of that form.
    public static func parseISO(_ s: String) -> Int64? {
        let b = Array(s.utf8)
        func num(_ from: Int, _ len: Int) -> Int? {
            guard from + len <= b.count else { return nil }
            var v = 0
            for k in from..<(from + len) {
                let c = b[k]
                guard c >= 48 && c <= 57 else { return nil }
                v = v * 10 + Int(c - 48)
            }
            return v
        }
        guard b.count >= 19, let y = num(0, 4), b[4] == 45, let mo = num(5, 2), b[7] == 45, let d = num(8, 2),
              b[10] == 84 || b[10] == 32, let h = num(11, 2), b[13] == 58, let mi = num(14, 2), b[16] == 58, let se = num(17, 2),
              (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, se < 61 else { return nil }
        var i = 19
        if i < b.count && b[i] == 46 { i += 1; while i < b.count && b[i] >= 48 && b[i] <= 57 { i += 1 } }
        var offset = 0
        if i == b.count { offset = 0 }  // no zone: taken as UTC
        else if b[i] == 90 && i + 1 == b.count { offset = 0 }
        else if (b[i] == 43 || b[i] == 45), let oh = num(i + 1, 2) {
            var om = 0
            if i + 3 < b.count && b[i + 3] == 58 { guard let m = num(i + 4, 2), i + 6 == b.count else { return nil }; om = m }
            else if i + 3 == b.count { om = 0 }
            else { guard let m = num(i + 3, 2), i + 5 == b.count else { return nil }; om = m }
            offset = (oh * 3600 + om * 60) * (b[i] == 43 ? 1 : -1)
        } else { return nil }
        // Days from civil (Howard Hinnant's algorithm).
        let yy = mo <= 2 ? y - 1 : y
        let era = (yy >= 0 ? yy : yy - 399) / 400
        let yoe = yy - era * 400
        let mp = (mo + 9) % 12
        let doy = (153 * mp + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146097 + doe - 719468
        return Int64(days * 86400 + h * 3600 + mi * 60 + se - offset)
    }
}

extension String {
    /// Zero-padded decimal of `v` with at least `width` digits.
    init(format2 v: Int32, _ width: Int) {
        var s = String(v)
        while s.count < width { s = "0" + s }
        self = s
    }
}
