// The small SIMD kernels of the sparse part of the model (row gathers and scatters), the
// GEMM wrapper of the dense layers, and the environment OpenBLAS loads with (BLASLibrary).
// Not the model itself (Model.swift); pp-train's thread count and kernel log are
// Training/BLASSetup.swift.

import Shared
import COpenBLAS
import CIntrinsics
#if canImport(Glibc)
import Glibc
#endif

/// Row-major single-precision GEMM, C = alpha * op(A) * op(B) + beta * C, with op(A) M x K,
/// op(B) K x N, C M x N (cblas_sgemm).
@inlinable @inline(__always)
package func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
           a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
           beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        // C = beta * C (cblas handles it too, but keep it explicit).
        for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
        return
    }
    pp_blas_sgemm(transA ? 1 : 0, transB ? 1 : 0, Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb),
                  beta, c, Int32(ldc))
}

/// OpenBLAS is opened at its first use (Sources/COpenBLAS/blas.c), so the environment it reads
/// when it loads can be set by main first. Every tool calls `prepare()` before it starts a
/// thread (setenv(3) is not safe beside threads reading the environment):
/// - one BLAS thread (OPENBLAS_NUM_THREADS=1, unless the user set it): the model's products
///   are too small to share, and OpenBLAS's idle server threads spin for ~0.1 s at a time;
///   pp-train spends the second core on a second worker instead;
/// - the kernel for this CPU (OPENBLAS_CORETYPE, unless the user set it). The kernel trap
///   (docs/design.md, measured): Debian's OpenBLAS picks slow generic kernels on CPUs it does
///   not recognise. Chosen from /proc/cpuinfo's flags: avx512bw -> SkylakeX, avx2 -> Haswell;
///   otherwise left unset (SkylakeX kernels on a CPU without AVX-512 die with SIGILL).
/// Before session 18 the library was linked, loaded before main, and pp-train re-executed
/// itself once to set OPENBLAS_CORETYPE; the other tools ran with OpenBLAS's defaults.
package enum BLASLibrary {
    package static func prepare() {
        if getenv("OPENBLAS_NUM_THREADS") == nil { setenv("OPENBLAS_NUM_THREADS", "1", 1) }
        if getenv("OPENBLAS_CORETYPE") == nil, let core = coreTypeForThisCPU() { setenv("OPENBLAS_CORETYPE", core, 1) }
    }

    /// The OPENBLAS_CORETYPE to use on this CPU, from /proc/cpuinfo flags (nil: leave unset).
    package static func coreTypeForThisCPU(cpuinfo: String? = nil) -> String? {
        let text: String
        if let c = cpuinfo { text = c } else {
            guard let bytes = cpuinfoStart() else { return nil }
            text = String(decoding: bytes, as: UTF8.self)
        }
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
        let flags = Set(line.split(separator: " ").map(String.init))
        if flags.contains("avx512bw") { return "SkylakeX" }
        if flags.contains("avx2") { return "Haswell" }
        return nil
    }

    /// The first 64 KiB of /proc/cpuinfo: the first processor's block, which holds its flags
    /// (a few KB). Every tool asks at its start, and the kernel builds the file as it is read:
    /// the whole of it is ~2.5 KB per logical CPU, hundreds of KB on a large host.
    static func cpuinfoStart() -> [UInt8]? {
        let fd = open("/proc/cpuinfo", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 64 << 10)
        var got = 0
        while got < buf.count {
            guard let n = try? FileIO.retrying("/proc/cpuinfo", "read", { buf.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, $0.count - got) } }),
                  n > 0 else { break }
            got += n
        }
        return got > 0 ? Array(buf[..<got]) : nil
    }
}

/// SIMD kernels over raw float vectors of length `n` (any n; 16 lanes at a time, then 4, then
/// scalars). Built with a named target CPU these become AVX2/FMA code (see Makefile).
@usableFromInline package enum Vec {
    /// dst += src
    @inlinable @inline(__always)
    package static func add(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int) {
        var i = 0
        let rd = UnsafeMutableRawPointer(dst), rs = UnsafeRawPointer(src)
        while i + 16 <= n {
            let a = rd.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            let b = rs.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            rd.storeBytes(of: a + b, toByteOffset: i * 4, as: SIMD16<Float>.self)
            i += 16
        }
        while i + 4 <= n {
            let a = rd.loadUnaligned(fromByteOffset: i * 4, as: SIMD4<Float>.self)
            let b = rs.loadUnaligned(fromByteOffset: i * 4, as: SIMD4<Float>.self)
            rd.storeBytes(of: a + b, toByteOffset: i * 4, as: SIMD4<Float>.self)
            i += 4
        }
        while i < n { dst[i] += src[i]; i += 1 }
    }

    /// dst += a * src
    @inlinable @inline(__always)
    package static func axpy(_ dst: UnsafeMutablePointer<Float>, _ a: Float, _ src: UnsafePointer<Float>, _ n: Int) {
        var i = 0
        let rd = UnsafeMutableRawPointer(dst), rs = UnsafeRawPointer(src)
        let va16 = SIMD16<Float>(repeating: a)
        while i + 16 <= n {
            let d = rd.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            let s = rs.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            rd.storeBytes(of: d.addingProduct(va16, s), toByteOffset: i * 4, as: SIMD16<Float>.self)
            i += 16
        }
        let va4 = SIMD4<Float>(repeating: a)
        while i + 4 <= n {
            let d = rd.loadUnaligned(fromByteOffset: i * 4, as: SIMD4<Float>.self)
            let s = rs.loadUnaligned(fromByteOffset: i * 4, as: SIMD4<Float>.self)
            rd.storeBytes(of: d.addingProduct(va4, s), toByteOffset: i * 4, as: SIMD4<Float>.self)
            i += 4
        }
        while i < n { dst[i] += a * src[i]; i += 1 }
    }

    /// Leaky AdaGrad on a vector (Trainer.swift, Optimizer): v = beta v + g^2; w -= lr g / (sqrt(v) + eps).
    @inlinable @inline(__always)
    package static func adagradStep(_ w: UnsafeMutablePointer<Float>, _ v: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>,
                            _ n: Int, lr: Float, beta: Float, eps: Float) {
        var i = 0
        let rw = UnsafeMutableRawPointer(w), rv = UnsafeMutableRawPointer(v), rg = UnsafeRawPointer(g)
        let vb = SIMD8<Float>(repeating: beta), vl = SIMD8<Float>(repeating: lr), ve = SIMD8<Float>(repeating: eps)
        while i + 8 <= n {
            let gg = rg.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            let vv = (rv.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) * vb).addingProduct(gg, gg)
            rv.storeBytes(of: vv, toByteOffset: i * 4, as: SIMD8<Float>.self)
            let ww = rw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) - vl * gg / (pp_sqrt8(vv) + ve)
            rw.storeBytes(of: ww, toByteOffset: i * 4, as: SIMD8<Float>.self)
            i += 8
        }
        while i < n {
            let vv = beta * v[i] + g[i] * g[i]
            v[i] = vv
            w[i] -= lr * g[i] / (pp_sqrt(vv) + eps)
            i += 1
        }
    }

    /// Dot product (two SIMD8 accumulators, then 4-wide and scalar tails).
    @inlinable @inline(__always)
    package static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) -> Float {
        let rx = UnsafeRawPointer(x), ry = UnsafeRawPointer(y)
        var a0 = SIMD8<Float>(repeating: 0), a1 = SIMD8<Float>(repeating: 0)
        var i = 0
        while i + 16 <= n {
            a0 = a0.addingProduct(rx.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self),
                                  ry.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self))
            a1 = a1.addingProduct(rx.loadUnaligned(fromByteOffset: i * 4 + 32, as: SIMD8<Float>.self),
                                  ry.loadUnaligned(fromByteOffset: i * 4 + 32, as: SIMD8<Float>.self))
            i += 16
        }
        var a4 = SIMD4<Float>(repeating: 0)
        while i + 4 <= n {
            a4 = a4.addingProduct(rx.loadUnaligned(fromByteOffset: i * 4, as: SIMD4<Float>.self),
                                  ry.loadUnaligned(fromByteOffset: i * 4, as: SIMD4<Float>.self))
            i += 4
        }
        var r = (a0 + a1).sum() + a4.sum()
        while i < n { r += x[i] * y[i]; i += 1 }
        return r
    }

    /// One output row of the linear model, fused (Worker.linearFusedStep): `w` holds n
    /// weights then the bias, `v` their accumulators; `g[b * gStride]` is the row's logit
    /// gradient for example b of `count`, `a + b * n` that example's input. Adds
    /// g_b * w (old weights) to dIn + b * n, then takes the leaky AdaGrad step on the weights
    /// (gradient sum_b g_b a_b) and on the bias (sum_b g_b).
    @inlinable @inline(__always)
    package static func outputRowStep(_ w: UnsafeMutablePointer<Float>, _ v: UnsafeMutablePointer<Float>, _ n: Int,
                              g: UnsafePointer<Float>, gStride: Int, a: UnsafePointer<Float>,
                              dIn: UnsafeMutablePointer<Float>, count: Int, lr: Float, beta: Float, eps: Float) {
        let rw = UnsafeMutableRawPointer(w), rv = UnsafeMutableRawPointer(v)
        let ra = UnsafeRawPointer(a), rd = UnsafeMutableRawPointer(dIn)
        let vb = SIMD8<Float>(repeating: beta), vl = SIMD8<Float>(repeating: lr), ve = SIMD8<Float>(repeating: eps)
        var i = 0
        // One example (the usual case: 1-example mini-batches) without the loop over
        // examples; the same arithmetic as the general branch below, which it mirrors.
        if count == 1 {
            let g0 = g[0], vg = SIMD8<Float>(repeating: g0)
            while i + 8 <= n {
                let o = i * 4
                let wi = rw.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                rd.storeBytes(of: rd.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self).addingProduct(vg, wi),
                              toByteOffset: o, as: SIMD8<Float>.self)
                let gr = vg * ra.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                let vv = (rv.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self) * vb).addingProduct(gr, gr)
                rv.storeBytes(of: vv, toByteOffset: o, as: SIMD8<Float>.self)
                rw.storeBytes(of: wi - vl * gr / (pp_sqrt8(vv) + ve), toByteOffset: o, as: SIMD8<Float>.self)
                i += 8
            }
            while i < n {
                let wi = w[i]
                dIn[i] += g0 * wi
                let gr = g0 * a[i]
                let vv = beta * v[i] + gr * gr
                v[i] = vv
                w[i] = wi - lr * gr / (pp_sqrt(vv) + eps)
                i += 1
            }
        } else {
            while i + 8 <= n {
                let o = i * 4
                let wi = rw.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                var gr = SIMD8<Float>(repeating: 0)
                for b in 0..<count {
                    let vg = SIMD8<Float>(repeating: g[b * gStride]), ob = o + b * n * 4
                    rd.storeBytes(of: rd.loadUnaligned(fromByteOffset: ob, as: SIMD8<Float>.self).addingProduct(vg, wi),
                                  toByteOffset: ob, as: SIMD8<Float>.self)
                    gr = gr.addingProduct(vg, ra.loadUnaligned(fromByteOffset: ob, as: SIMD8<Float>.self))
                }
                let vv = (rv.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self) * vb).addingProduct(gr, gr)
                rv.storeBytes(of: vv, toByteOffset: o, as: SIMD8<Float>.self)
                rw.storeBytes(of: wi - vl * gr / (pp_sqrt8(vv) + ve), toByteOffset: o, as: SIMD8<Float>.self)
                i += 8
            }
            while i < n {
                let wi = w[i]
                var gr: Float = 0
                for b in 0..<count {
                    let gb = g[b * gStride]
                    dIn[b * n + i] += gb * wi
                    gr += gb * a[b * n + i]
                }
                let vv = beta * v[i] + gr * gr
                v[i] = vv
                w[i] = wi - lr * gr / (pp_sqrt(vv) + eps)
                i += 1
            }
        }
        var gb: Float = 0
        for b in 0..<count { gb += g[b * gStride] }
        let vv = beta * v[n] + gb * gb
        v[n] = vv
        w[n] -= lr * gb / (pp_sqrt(vv) + eps)
    }

    /// dst *= a
    @inlinable @inline(__always)
    package static func scale(_ dst: UnsafeMutablePointer<Float>, _ a: Float, _ n: Int) {
        var i = 0
        let rd = UnsafeMutableRawPointer(dst)
        while i + 16 <= n {
            let d = rd.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            rd.storeBytes(of: d * a, toByteOffset: i * 4, as: SIMD16<Float>.self)
            i += 16
        }
        while i < n { dst[i] *= a; i += 1 }
    }

    /// sum of squares
    @inlinable @inline(__always)
    package static func sumSquares(_ src: UnsafePointer<Float>, _ n: Int) -> Float {
        var i = 0
        let rs = UnsafeRawPointer(src)
        var acc = SIMD16<Float>(repeating: 0)
        while i + 16 <= n {
            let s = rs.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            acc = acc.addingProduct(s, s)
            i += 16
        }
        var r = acc.sum()
        while i < n { r += src[i] * src[i]; i += 1 }
        return r
    }

    /// True when all n floats are exactly +0/-0.
    @inlinable @inline(__always)
    package static func isZero(_ src: UnsafePointer<Float>, _ n: Int) -> Bool {
        let rs = UnsafeRawPointer(src)
        var i = 0
        var acc = SIMD8<UInt32>(repeating: 0)
        while i + 8 <= n {
            acc |= rs.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<UInt32>.self) & 0x7FFF_FFFF
            i += 8
        }
        var r = acc.max() == 0
        while i < n { if src[i] != 0 { r = false }; i += 1 }
        return r
    }
}
