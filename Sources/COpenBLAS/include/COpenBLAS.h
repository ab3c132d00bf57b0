/* OpenBLAS, opened on first use (dlopen) instead of linked (blas.c says why). The four
   entry points the model needs; the CBLAS enums as their values (row-major only). */
#ifndef PP_COPENBLAS_H
#define PP_COPENBLAS_H

/* Each call opens the library first if need be (once, thread-safe); when it cannot be opened
   it prints why, naming the file, and exits 69. */

/* Row-major C = alpha * op(A) * op(B) + beta * C (cblas_sgemm); trans: 0 or 1. */
void pp_blas_sgemm(int transA, int transB, int m, int n, int k, float alpha,
                   const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);

/* Row-major y = alpha * A * x + beta * y, A m x n, not transposed (cblas_sgemv). */
void pp_blas_sgemv(int m, int n, float alpha, const float *a, int lda,
                   const float *x, int incx, float beta, float *y, int incy);

/* openblas_get_corename (the kernel in use, e.g. "Haswell"); "unknown" if absent. */
const char *pp_blas_corename(void);

/* openblas_set_num_threads; a no-op if absent. */
void pp_blas_set_num_threads(int n);

#endif
