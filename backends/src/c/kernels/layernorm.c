/* egret kernel: LayerNormalization (rms = 0) or RMSNormalization (rms = 1)
 * of `outer` rows of n elements: y = (x - mean) / sqrt(var + eps) * scale
 * (+ bias), the statistics in double. `mean` and `inv_std` (one per row) may
 * be NULL, and so may `bias`. */
static void egret_layernorm_f32(long outer, long n, float eps, int rms,
                                const float *x, const float *scale,
                                const float *bias, float *y, float *mean,
                                float *inv_std)
{
    long o, j;
    for (o = 0; o < outer; o++) {
        const float *in = x + o * n;
        float *out = y + o * n;
        double mu = 0.0, var = 0.0;
        float inv;
        if (!rms) {
            for (j = 0; j < n; j++)
                mu += in[j];
            mu /= (double)n;
        }
        for (j = 0; j < n; j++)
            var += ((double)in[j] - mu) * ((double)in[j] - mu);
        var /= (double)n;
        inv = (float)(1.0 / sqrt(var + (double)eps));
        for (j = 0; j < n; j++) {
            const float v = ((float)((double)in[j] - mu)) * inv * scale[j];
            out[j] = bias ? v + bias[j] : v;
        }
        if (mean)
            mean[o] = (float)mu;
        if (inv_std)
            inv_std[o] = inv;
    }
}
