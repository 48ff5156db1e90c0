/* egret kernel: Softmax (mode 0), LogSoftmax (mode 1) or Hardmax (mode 2)
 * along an axis of n elements, `inner` apart, for `outer` blocks. */
static void egret_softmax_f32(long outer, long n, long inner, int mode,
                              const float *x, float *y)
{
    long o, i, j;
    for (o = 0; o < outer; o++) {
        for (i = 0; i < inner; i++) {
            const float *in = x + o * n * inner + i;
            float *out = y + o * n * inner + i;
            float mx = -INFINITY, sum = 0.0f;
            long arg = 0;
            for (j = 0; j < n; j++) {
                if (in[j * inner] > mx) {
                    mx = in[j * inner];
                    arg = j;
                }
            }
            if (mode == 2) {
                for (j = 0; j < n; j++)
                    out[j * inner] = j == arg ? 1.0f : 0.0f;
                continue;
            }
            for (j = 0; j < n; j++)
                sum += expf(in[j * inner] - mx);
            for (j = 0; j < n; j++)
                out[j * inner] = mode == 1 ? in[j * inner] - mx - logf(sum)
                                           : expf(in[j * inner] - mx) / sum;
        }
    }
}
