// SplitMix64: a tiny, well-mixed random generator whose whole state is one UInt64, giving the
// same sequence on every platform. pp-train's data cursor (shuffles, replay picks) and
// pp-select's bootstrap use it, so their decisions are reproducible from their inputs. Not
// the training RNG (xoshiro256**, Trainer.swift).

public struct SplitMix64 {
    public var state: UInt64
    public init(state: UInt64) { self.state = state }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in 0..<n (n > 0), by rejection so there is no modulo bias.
    public mutating func below(_ n: UInt64) -> UInt64 {
        let limit = UInt64.max - UInt64.max % n
        while true {
            let x = next()
            if x < limit { return x % n }
        }
    }

    /// Nearly uniform in 0..<n (n > 0, n < 2^32) by multiply-shift of the high 32 bits: one
    /// draw, bias below 2^-32 for the sizes pp-select resamples. Not the same sequence as
    /// `below`.
    public mutating func belowMultiplyShift(_ n: Int) -> Int { Int(((next() >> 32) * UInt64(n)) >> 32) }
}
