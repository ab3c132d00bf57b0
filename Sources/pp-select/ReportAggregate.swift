// Keeping `pp-select report` small for long histories (issue 17): a year of hourly
// checkpoints is 8760 points a series, and the page must stay a few MB. Series are cut to an
// envelope (the lowest and the highest point of each of N equal x bins, first and last kept),
// which keeps every dip and spike visible at the chart's resolution; events per time are
// counted in buckets whose width follows the span (minute, hour, day, week).
// It is not a statistics module: no smoothing, no interpolation.

import Foundation

enum Downsample {
    /// At most about 2 x `bins` points of `points` (sorted by x on return): per equal-width x
    /// bin its lowest and highest point, in x order; the first and last points always stay.
    /// Non-finite points are dropped.
    static func envelope(_ points: [(x: Double, y: Double)], bins: Int) -> [(x: Double, y: Double)] {
        let p = points.filter { $0.x.isFinite && $0.y.isFinite }.sorted { $0.x < $1.x }
        guard bins > 0, p.count > 2 * bins + 2 else { return p }
        let lo = p.first!.x, hi = p.last!.x
        guard hi > lo else { return [p.first!, p.last!] }
        var out: [(x: Double, y: Double)] = [p.first!]
        var i = 1
        let end = p.count - 1
        for b in 0..<bins {
            let edge = b == bins - 1 ? Double.infinity : lo + (hi - lo) * Double(b + 1) / Double(bins)
            var minI = -1, maxI = -1
            while i < end && p[i].x < edge {
                if minI < 0 || p[i].y < p[minI].y { minI = i }
                if maxI < 0 || p[i].y > p[maxI].y { maxI = i }
                i += 1
            }
            if minI < 0 { continue }
            if minI == maxI { out.append(p[minI]) } else {
                out.append(p[min(minI, maxI)]); out.append(p[max(minI, maxI)])
            }
        }
        out.append(p.last!)
        return out
    }
}

/// Buckets of time for counting events: the smallest of minute, 10 minutes, hour, 6 hours,
/// day, week and 4 weeks that gives at most `maxBuckets` (60) buckets over [lo, hi]: days for
/// up to two months, weeks for a year.
struct TimeBuckets: Equatable {
    var size: Double
    var name: String
    var start: Double
    var count: Int

    static let sizes: [(Double, String)] = [(60, "minute"), (600, "10 minutes"), (3600, "hour"), (6 * 3600, "6 hours"),
                                            (86_400, "day"), (7 * 86_400, "week"), (28 * 86_400, "4 weeks")]

    init(lo: Double, hi: Double, maxBuckets: Int = 60) {
        let l = lo.isFinite ? min(lo, hi.isFinite ? hi : lo) : 0
        let h = hi.isFinite ? max(hi, l) : l
        var pick = TimeBuckets.sizes.last!
        for s in TimeBuckets.sizes where ((h - (l / s.0).rounded(.down) * s.0) / s.0).rounded(.down) + 1 <= Double(maxBuckets) {
            pick = s
            break
        }
        size = pick.0
        name = pick.1
        start = (l / size).rounded(.down) * size
        count = Int(((h - start) / size).rounded(.down)) + 1
    }

    func index(_ t: Double) -> Int? {
        guard t.isFinite, t >= start else { return nil }
        let i = Int(((t - start) / size).rounded(.down))
        return i < count ? i : nil
    }

    var starts: [Double] { (0..<count).map { start + Double($0) * size } }
}
