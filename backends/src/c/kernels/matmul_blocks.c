/* egret kernel: egret::MatMulBlocks, y[m x n] = x[m x k] . W^T (+ bias[n])
 * for W in a block format of blocks.c (which it needs). Each call
 * dequantizes a tile of EGRET_BLOCKS_TILE weight rows into scratch, then
 * takes f32 dot products of every row of x with them (AVX2+FMA or NEON when
 * available), so every weight is dequantized once per call; with AVX2 or
 * NEON (aarch64), a product of fewer than 4 rows of x reads Q8_0 and int4
 * blocks directly. */

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

/* Weight rows dequantized per tile of a product (the scratch holds
 * EGRET_BLOCKS_TILE * k floats). */
#define EGRET_BLOCKS_TILE 8

/* a . b over k floats, k a multiple of 8. */
static float egret_dot8_f32(const float *a, const float *b, long k)
{
    long p;
#if defined(__AVX2__) && defined(__FMA__)
    __m256 s = _mm256_setzero_ps();
    __m128 h;
    for (p = 0; p < k; p += 8)
        s = _mm256_fmadd_ps(_mm256_loadu_ps(a + p), _mm256_loadu_ps(b + p), s);
    h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    return _mm_cvtss_f32(h);
#elif defined(__aarch64__)
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = vdupq_n_f32(0.0f);
    for (p = 0; p < k; p += 8) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + p), vld1q_f32(b + p));
        s1 = vfmaq_f32(s1, vld1q_f32(a + p + 4), vld1q_f32(b + p + 4));
    }
    return vaddvq_f32(vaddq_f32(s0, s1));
#else
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    long l;
    for (p = 0; p < k; p += 8)
        for (l = 0; l < 8; l++)
            s[l] += a[p + l] * b[p + l];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
#endif
}

#if (defined(__AVX2__) && defined(__FMA__)) || defined(__aarch64__)
#define EGRET_ROW_DOT 1
/* x . (one row of k values in Q8_0 or int4 blocks), read straight from the
 * blocks (a product with few rows of x, as in decode): per block d * sum(q x),
 * plus (m, or -8 d) * sum(x) for int4, as the interpreter's row dots. */
static float egret_row_dot_blocks(int kind, long g, const uint8_t *row, const float *x, long k)
{
    const long bb = egret_block_bytes(kind, g), half = g / 2;
    const uint8_t *qs;
    long b, j;
#if defined(__AVX2__) && defined(__FMA__)
    const __m128i low = _mm_set1_epi8(15);
    __m256 acc = _mm256_setzero_ps();
    __m128 h;
    for (b = 0; b < k / g; b++, row += bb, x += g) {
        const float d = egret_f16(row);
        __m256 s = _mm256_setzero_ps(), t = _mm256_setzero_ps();
        if (kind == EGRET_Q8_0) {
            for (j = 0; j < g; j += 8) {
                const __m128i q = _mm_loadl_epi64((const __m128i *)(row + 2 + j));
                s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)),
                                    _mm256_loadu_ps(x + j), s);
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), s, acc);
            continue;
        }
        qs = row + (kind == EGRET_INT4_ASYM ? 4 : 2);
        for (j = 0; j < half; j += 8) {
            const __m128i q = _mm_loadl_epi64((const __m128i *)(qs + j));
            const __m256 lo = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_and_si128(q, low)));
            const __m256 hi = _mm256_cvtepi32_ps(
                _mm256_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(q, 4), low)));
            const __m256 xl = _mm256_loadu_ps(x + j), xh = _mm256_loadu_ps(x + j + half);
            s = _mm256_fmadd_ps(hi, xh, _mm256_fmadd_ps(lo, xl, s));
            t = _mm256_add_ps(t, _mm256_add_ps(xl, xh));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), s, acc);
        acc = _mm256_fmadd_ps(
            _mm256_set1_ps(kind == EGRET_INT4_ASYM ? egret_f16(row + 2) : -8.0f * d), t, acc);
    }
    h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    return _mm_cvtss_f32(h);
#else
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (b = 0; b < k / g; b++, row += bb, x += g) {
        const float d = egret_f16(row);
        float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, t0 = s0, t1 = s0;
        if (kind == EGRET_Q8_0) {
            for (j = 0; j < g; j += 8) {
                const int16x8_t q = vmovl_s8(vld1_s8((const int8_t *)(row + 2 + j)));
                s0 = vfmaq_f32(s0, vcvtq_f32_s32(vmovl_s16(vget_low_s16(q))), vld1q_f32(x + j));
                s1 = vfmaq_f32(s1, vcvtq_f32_s32(vmovl_s16(vget_high_s16(q))),
                               vld1q_f32(x + j + 4));
            }
            acc = vfmaq_n_f32(acc, vaddq_f32(s0, s1), d);
            continue;
        }
        qs = row + (kind == EGRET_INT4_ASYM ? 4 : 2);
        for (j = 0; j < half; j += 8) {
            const uint8x8_t q = vld1_u8(qs + j);
            const uint16x8_t lo = vmovl_u8(vand_u8(q, vdup_n_u8(15))), hi = vmovl_u8(vshr_n_u8(q, 4));
            const float32x4_t xl0 = vld1q_f32(x + j), xl1 = vld1q_f32(x + j + 4);
            const float32x4_t xh0 = vld1q_f32(x + j + half), xh1 = vld1q_f32(x + j + half + 4);
            s0 = vfmaq_f32(s0, vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo))), xl0);
            s1 = vfmaq_f32(s1, vcvtq_f32_u32(vmovl_u16(vget_high_u16(lo))), xl1);
            s0 = vfmaq_f32(s0, vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi))), xh0);
            s1 = vfmaq_f32(s1, vcvtq_f32_u32(vmovl_u16(vget_high_u16(hi))), xh1);
            t0 = vaddq_f32(t0, vaddq_f32(xl0, xh0));
            t1 = vaddq_f32(t1, vaddq_f32(xl1, xh1));
        }
        acc = vfmaq_n_f32(acc, vaddq_f32(s0, s1), d);
        acc = vfmaq_n_f32(acc, vaddq_f32(t0, t1),
                          kind == EGRET_INT4_ASYM ? egret_f16(row + 2) : -8.0f * d);
    }
    return vaddvq_f32(acc);
#endif
}
#endif

/* The product for W n rows of k values in blocks of format kind (groups of
 * g); scratch holds EGRET_BLOCKS_TILE * k floats. With AVX2 or on aarch64,
 * fewer than 4 rows of x in Q8_0 or int4 take row dots on the blocks
 * instead. */
static void egret_matmul_blocks_f32(long m, long n, long k, const float *x, const uint8_t *w,
                                    int kind, long g, const float *bias, float *y,
                                    float *scratch)
{
    const long rb = k / g * egret_block_bytes(kind, g);
    long j0, j, i;
#ifdef EGRET_ROW_DOT
    if (m < 4 && kind <= EGRET_INT4_ASYM) {
        for (i = 0; i < m; i++)
            for (j = 0; j < n; j++)
                y[i * n + j] = egret_row_dot_blocks(kind, g, w + j * rb, x + i * k, k) +
                               (bias ? bias[j] : 0.0f);
        return;
    }
#endif
    for (j0 = 0; j0 < n; j0 += EGRET_BLOCKS_TILE) {
        const long nt = n - j0 < EGRET_BLOCKS_TILE ? n - j0 : EGRET_BLOCKS_TILE;
        for (j = 0; j < nt; j++)
            egret_dequant_row(kind, g, w + (j0 + j) * rb, k, scratch + j * k);
        for (i = 0; i < m; i++)
            for (j = 0; j < nt; j++)
                y[i * n + j0 + j] = egret_dot8_f32(x + i * k, scratch + j * k, k) +
                                    (bias ? bias[j0 + j] : 0.0f);
    }
}
