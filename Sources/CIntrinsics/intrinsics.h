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

#endif
