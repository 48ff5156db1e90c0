/* egret kernel: y[m x n] = x[m x k] . (q[n x k] . scale[n])^T (+ bias[n]),
 * int8 weights with one f32 scale per output channel (egret's int8
 * per-channel scheme, `egret::MatMulInt8`), dequantized on the fly: each dot
 * product runs over int8 values widened to f32, and the scale is applied
 * once per output. */
static void egret_matmul_int8_f32(long m, long n, long k, const float *x,
                                  const int8_t *q, const float *scale,
                                  const float *bias, float *y)
{
    long i, j, p;
    for (i = 0; i < m; i++) {
        const float *row = x + i * k;
        for (j = 0; j < n; j++) {
            const int8_t *w = q + j * k;
            float acc = 0.0f;
            for (p = 0; p < k; p++)
                acc += row[p] * (float)w[p];
            y[i * n + j] = acc * scale[j] + (bias ? bias[j] : 0.0f);
        }
    }
}
