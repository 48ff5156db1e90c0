/* egret kernel: y[m x n] = x[m x k] . (q[n x k] . scale[n])^T (+ bias[n]),
 * int8 weights with one f32 scale per output channel (egret's int8
 * per-channel scheme, `egret::MatMulInt8`), dequantized on the fly: each dot
 * product runs over int8 values widened to f32, in eight partial sums (which
 * the compiler vectorises), and the scale is applied once per output. */
static void egret_matmul_int8_f32(long m, long n, long k, const float *x,
                                  const int8_t *q, const float *scale,
                                  const float *bias, float *y)
{
    const long k8 = k - k % 8;
    long i, j, p, l;
    for (i = 0; i < m; i++) {
        const float *row = x + i * k;
        for (j = 0; j < n; j++) {
            const int8_t *w = q + j * k;
            float s[8] = {0, 0, 0, 0, 0, 0, 0, 0}, acc;
            for (p = 0; p < k8; p += 8)
                for (l = 0; l < 8; l++)
                    s[l] += row[p + l] * (float)w[p + l];
            acc = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
            for (p = k8; p < k; p++)
                acc += row[p] * (float)w[p];
            y[i * n + j] = acc * scale[j] + (bias ? bias[j] : 0.0f);
        }
    }
}
