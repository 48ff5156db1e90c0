/* egret kernel: 2-D max pooling over nc planes of h x w, with strides,
 * dilations and leading pads; padding never wins (it is -inf). A NaN input
 * propagates. */
static void egret_maxpool2d_f32(long nc, long h, long w, long oh, long ow,
                                long kh, long kw, long sh, long sw, long dh,
                                long dw, long ph, long pw, const float *x,
                                float *y)
{
    long p, oy, ox, ky, kx;
    for (p = 0; p < nc; p++) {
        const float *in = x + p * h * w;
        for (oy = 0; oy < oh; oy++) {
            for (ox = 0; ox < ow; ox++) {
                float best = -INFINITY;
                for (ky = 0; ky < kh; ky++) {
                    const long iy = oy * sh - ph + ky * dh;
                    if (iy < 0 || iy >= h)
                        continue;
                    for (kx = 0; kx < kw; kx++) {
                        const long ix = ox * sw - pw + kx * dw;
                        if (ix >= 0 && ix < w) {
                            const float v = in[iy * w + ix];
                            if (v > best || v != v)
                                best = v;
                        }
                    }
                }
                y[(p * oh + oy) * ow + ox] = best;
            }
        }
    }
}
