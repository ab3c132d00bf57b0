// Machine operations Swift does not expose well, for the trainer's hot loops. Header only:
// static inline functions that the Swift compiler imports and inlines (nothing to link).
#ifndef PERPETUUM_INTRINSICS_H
#define PERPETUUM_INTRINSICS_H

/// Asks for the cache line holding p (read, keep in all cache levels); never faults. Swift
/// has no prefetch. The sparse loops are bound by memory latency: asking for the rows a few
/// steps ahead lets their cache misses overlap.
static inline __attribute__((always_inline)) void pp_prefetch(const void *p) {
    __builtin_prefetch(p, 0, 3);
}

/// Atomically adds v to *p and returns the old value (relaxed: a work counter, no data is
/// published through it). Swift's Atomic needs macOS 15 / a newer deployment target.
static inline __attribute__((always_inline)) long pp_fetch_add(long *p, long v) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

/// Square roots without errno. Swift's Float.squareRoot() goes through C's sqrtf on Linux,
/// which must set errno for negative inputs, so the compiler keeps a scalar call and a branch
/// per lane, also for SIMD8<Float>.squareRoot() (measured: the optimiser's step spent most
/// of its time there). These map to one sqrtss/sqrtps; results are identical (IEEE square
/// roots are correctly rounded either way). ext_vector_type(8) float imports as SIMD8<Float>.
typedef float pp_float8 __attribute__((ext_vector_type(8)));

static inline __attribute__((always_inline)) float pp_sqrt(float x) {
    return __builtin_elementwise_sqrt(x);
}

static inline __attribute__((always_inline)) pp_float8 pp_sqrt8(pp_float8 x) {
    return __builtin_elementwise_sqrt(x);
}

/// What the code of the Swift module that calls these was generated for (issue 20). The Swift
/// compiler's C importer sees the same -target-cpu as the Swift code, so these macros are the
/// real code-generation facts of the calling module, not an echo of a setting: with no target
/// CPU, __FMA__ is undefined and every fused multiply-add in the trainer is a call to fmaf.
/// PP_TARGET_CPU is the CPU name Package.swift passed (-Xcc -DPP_TARGET_CPU=NAME), "" if none.
static inline __attribute__((always_inline)) int pp_built_with_fma(void) {
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
    return 1;
#else
    return 0;
#endif
}

static inline __attribute__((always_inline)) int pp_built_with_avx2(void) {
#if defined(__AVX2__)
    return 1;
#else
    return 0;
#endif
}

static inline __attribute__((always_inline)) int pp_built_with_avx512f(void) {
#if defined(__AVX512F__)
    return 1;
#else
    return 0;
#endif
}

#define PP_STRINGIFY_(x) #x
#define PP_STRINGIFY(x) PP_STRINGIFY_(x)
static inline __attribute__((always_inline)) const char *pp_built_target_cpu(void) {
#if defined(PP_TARGET_CPU)
    return PP_STRINGIFY(PP_TARGET_CPU);
#else
    return "";
#endif
}

#endif
