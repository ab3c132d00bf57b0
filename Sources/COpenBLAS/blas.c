/* OpenBLAS, opened with dlopen(3) at its first use instead of linked.
 *
 * Why: a linked OpenBLAS (Debian's pthread build) runs its constructor before main, reads
 * OPENBLAS_NUM_THREADS and OPENBLAS_CORETYPE then, and starts one server thread per extra
 * core, which spins (sched_yield) for ~0.1 s whenever it has no work. Every tool links the
 * model, so every pp-select, pp-eval and pp-ingest run paid that spin on the other core,
 * though none of them runs a BLAS call big enough to share (pp-eval scoring a checkpoint:
 * 0.20 s of CPU, 0.11 s with OPENBLAS_NUM_THREADS=1; pp-select 0.17 -> 0.13 s), and
 * pp-train re-executed itself once to set the variables before the library loaded. Opened
 * here, the library loads after main has set its environment (TextModel's BLASLibrary.prepare:
 * one thread, the kernel for this CPU, unless the user chose) and only in a process that
 * multiplies matrices.
 *
 * $PP_OPENBLAS names the library file to open (default libopenblas.so.0, then
 * libopenblas.so); when it cannot be opened a BLAS call prints why and exits 69
 * (EX_UNAVAILABLE): there is no way to go on without it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include "COpenBLAS.h"

enum { RowMajor = 101, NoTrans = 111, Trans = 112 };

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int,
                         float, float *, int);
typedef void (*sgemv_fn)(int, int, int, int, float, const float *, int, const float *, int, float, float *, int);
typedef char *(*corename_fn)(void);
typedef void (*threads_fn)(int);

static sgemm_fn p_sgemm;
static sgemv_fn p_sgemv;
static corename_fn p_corename;
static threads_fn p_threads;
static int ready;
static char failure[768];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
    const char *chosen = getenv("PP_OPENBLAS");
    const char *names[2] = {"libopenblas.so.0", "libopenblas.so"};
    int count = 2;
    if (chosen && *chosen) { names[0] = chosen; count = 1; }
    void *h = NULL;
    char why[512] = "unknown error";   /* the first name's error: dlerror's text is overwritten by the next dlopen */
    for (int i = 0; i < count && !h; i++) {
        h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        const char *e = h ? NULL : dlerror();
        if (i == 0 && e) snprintf(why, sizeof why, "%s", e);
    }
    if (!h) {
        snprintf(failure, sizeof failure,
                 "cannot load OpenBLAS (%s): %s (install it: apt-get install libopenblas-dev; or name the file in $PP_OPENBLAS)",
                 names[0], why);
        return;
    }
    p_sgemm = (sgemm_fn)dlsym(h, "cblas_sgemm");
    p_sgemv = (sgemv_fn)dlsym(h, "cblas_sgemv");
    p_corename = (corename_fn)dlsym(h, "openblas_get_corename");
    p_threads = (threads_fn)dlsym(h, "openblas_set_num_threads");
    if (!p_sgemm || !p_sgemv) {
        snprintf(failure, sizeof failure, "cannot use OpenBLAS (%s): it has no cblas_sgemm or cblas_sgemv", names[0]);
        return;
    }
    __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
}

/* Opens the library once (thread-safe); without it, says why and exits 69. */
static void need(void) {
    if (__builtin_expect(__atomic_load_n(&ready, __ATOMIC_ACQUIRE), 1)) return;
    pthread_once(&once, load);
    if (__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) return;
    fprintf(stderr, "%s\n", failure);
    exit(69);
}

void pp_blas_sgemm(int transA, int transB, int m, int n, int k, float alpha,
                   const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    need();
    p_sgemm(RowMajor, transA ? Trans : NoTrans, transB ? Trans : NoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void pp_blas_sgemv(int m, int n, float alpha, const float *a, int lda,
                   const float *x, int incx, float beta, float *y, int incy) {
    need();
    p_sgemv(RowMajor, NoTrans, m, n, alpha, a, lda, x, incx, beta, y, incy);
}

const char *pp_blas_corename(void) {
    need();
    const char *c = p_corename ? p_corename() : NULL;
    return c ? c : "unknown";
}

void pp_blas_set_num_threads(int n) {
    need();
    if (p_threads) p_threads(n);
}
