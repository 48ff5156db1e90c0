/* egret kernel: C[m x n] = A[m x k] . B[k x n] (+ bias[n]), f32, row-major,
 * contiguous. Rows are computed in blocks of four: each row of B is read once
 * per block, and the innermost loop runs along a row of B and C, which the
 * compiler vectorises. With AVX2+FMA (x86-64) or NEON (Arm), full 4-row tiles
 * run an explicit SIMD micro-kernel with the accumulators in registers. */

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define EGRET_GEMM_TILE_N 16
/* C[i..i+4, j..j+16] of the product, with the bias added. */
static void egret_gemm_f32_tile(long n, long k, const float *a, const float *b,
                                const float *bias, float *c, long i, long j)
{
    __m256 acc[4][2];
    long r, p;
    for (r = 0; r < 4; r++) {
        acc[r][0] = bias ? _mm256_loadu_ps(bias + j) : _mm256_setzero_ps();
        acc[r][1] = bias ? _mm256_loadu_ps(bias + j + 8) : _mm256_setzero_ps();
    }
    for (p = 0; p < k; p++) {
        const __m256 b0 = _mm256_loadu_ps(b + p * n + j);
        const __m256 b1 = _mm256_loadu_ps(b + p * n + j + 8);
        for (r = 0; r < 4; r++) {
            const __m256 av = _mm256_broadcast_ss(a + (i + r) * k + p);
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    for (r = 0; r < 4; r++) {
        _mm256_storeu_ps(c + (i + r) * n + j, acc[r][0]);
        _mm256_storeu_ps(c + (i + r) * n + j + 8, acc[r][1]);
    }
}
#elif defined(__ARM_NEON)
#include <arm_neon.h>
#define EGRET_GEMM_TILE_N 8
#if defined(__ARM_FEATURE_FMA)
#define EGRET_VFMA(acc, x, y) vfmaq_f32((acc), (x), (y))
#else
#define EGRET_VFMA(acc, x, y) vmlaq_f32((acc), (x), (y))
#endif
/* C[i..i+4, j..j+8] of the product, with the bias added. */
static void egret_gemm_f32_tile(long n, long k, const float *a, const float *b,
                                const float *bias, float *c, long i, long j)
{
    float32x4_t acc[4][2];
    long r, p;
    for (r = 0; r < 4; r++) {
        acc[r][0] = bias ? vld1q_f32(bias + j) : vdupq_n_f32(0.0f);
        acc[r][1] = bias ? vld1q_f32(bias + j + 4) : vdupq_n_f32(0.0f);
    }
    for (p = 0; p < k; p++) {
        const float32x4_t b0 = vld1q_f32(b + p * n + j);
        const float32x4_t b1 = vld1q_f32(b + p * n + j + 4);
        for (r = 0; r < 4; r++) {
            const float32x4_t av = vdupq_n_f32(a[(i + r) * k + p]);
            acc[r][0] = EGRET_VFMA(acc[r][0], av, b0);
            acc[r][1] = EGRET_VFMA(acc[r][1], av, b1);
        }
    }
    for (r = 0; r < 4; r++) {
        vst1q_f32(c + (i + r) * n + j, acc[r][0]);
        vst1q_f32(c + (i + r) * n + j + 4, acc[r][1]);
    }
}
#endif

/* Rows i0..i1, columns j0..j1 of the product, portable C. */
static void egret_gemm_f32_block(long n, long k, const float *a, const float *b,
                                 const float *bias, float *c, long i0, long i1,
                                 long j0, long j1)
{
    long i, p, j;
    for (i = i0; i < i1; i++) {
        float *restrict row = c + i * n;
        for (j = j0; j < j1; j++)
            row[j] = bias ? bias[j] : 0.0f;
        for (p = 0; p < k; p++) {
            const float av = a[i * k + p];
            const float *restrict brow = b + p * n;
            for (j = j0; j < j1; j++)
                row[j] += av * brow[j];
        }
    }
}

static void egret_gemm_f32(long m, long n, long k, const float *a, const float *b,
                           const float *bias, float *c)
{
#if defined(EGRET_GEMM_TILE_N)
    const long m4 = m - m % 4, nt = n - n % EGRET_GEMM_TILE_N;
    long i, j;
    for (i = 0; i < m4; i += 4)
        for (j = 0; j < nt; j += EGRET_GEMM_TILE_N)
            egret_gemm_f32_tile(n, k, a, b, bias, c, i, j);
    if (nt < n)
        egret_gemm_f32_block(n, k, a, b, bias, c, 0, m4, nt, n);
    if (m4 < m)
        egret_gemm_f32_block(n, k, a, b, bias, c, m4, m, 0, n);
#else
    long i;
    for (i = 0; i < m; i += 4)
        egret_gemm_f32_block(n, k, a, b, bias, c, i, i + 4 < m ? i + 4 : m, 0, n);
#endif
}
