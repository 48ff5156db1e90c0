/* egret kernel: W8A8 (egret::MatMulInt8 with act_quant = 1): y[m x n] =
 * x[m x k] . (q[n x k] . scale[n])^T (+ bias[n]) with each row of x quantized
 * per token to int8 as the interpreter does (sx = max|x| / 127, qx =
 * round-half-away(x / sx) clamped to +-127; a zero row quantizes to 0), exact
 * integer dot products (int32: k at most 131072), and y = acc * sx * scale[j]
 * (+ bias[j]). qx is scratch for k int8 values. */
static void egret_matmul_w8a8_f32(long m, long n, long k, const float *x, const int8_t *q,
                                  const float *scale, const float *bias, float *y,
                                  int8_t *qx)
{
    long i, j, p;
    for (i = 0; i < m; i++) {
        const float *row = x + i * k;
        float amax = 0.0f, sx;
        for (p = 0; p < k; p++) {
            const float a = fabsf(row[p]);
            if (a > amax)
                amax = a;
        }
        sx = amax / 127.0f;
        for (p = 0; p < k; p++) {
            float r = sx == 0.0f ? 0.0f : roundf(row[p] / sx);
            qx[p] = (int8_t)(r < -127.0f ? -127.0f : (r > 127.0f ? 127.0f : r));
        }
        for (j = 0; j < n; j++) {
            const int8_t *w = q + j * k;
            int32_t acc = 0;
            for (p = 0; p < k; p++)
                acc += (int32_t)qx[p] * (int32_t)w[p];
            y[i * n + j] = (float)acc * sx * scale[j] + (bias ? bias[j] : 0.0f);
        }
    }
}
