/* egret kernel: 2-D average pooling over nc planes of h x w, with strides,
 * dilations and pads. The divisor counts the window taps inside the image, or
 * with count_pad also those inside the padded image (never those beyond it,
 * which ceil_mode windows can reach). */
static void egret_avgpool2d_f32(long nc, long h, long w, long oh, long ow,
                                long kh, long kw, long sh, long sw, long dh,
                                long dw, long pt, long pl, long pb, long pr,
                                int count_pad, const float *x, float *y)
{
    long p, oy, ox, ky, kx;
    for (p = 0; p < nc; p++) {
        const float *in = x + p * h * w;
        for (oy = 0; oy < oh; oy++) {
            for (ox = 0; ox < ow; ox++) {
                float sum = 0.0f;
                long count = 0;
                for (ky = 0; ky < kh; ky++) {
                    const long iy = oy * sh - pt + ky * dh;
                    if (iy < -pt || iy >= h + pb)
                        continue;
                    for (kx = 0; kx < kw; kx++) {
                        const long ix = ox * sw - pl + kx * dw;
                        const int inside = iy >= 0 && iy < h && ix >= 0 && ix < w;
                        if (ix < -pl || ix >= w + pr)
                            continue;
                        if (inside)
                            sum += in[iy * w + ix];
                        if (inside || count_pad)
                            count++;
                    }
                }
                y[(p * oh + oy) * ow + ox] = count ? sum / (float)count : 0.0f;
            }
        }
    }
}
