/* egret kernel: 2-D convolution, NCHW, with groups, strides, dilations and
 * explicit leading pads (trailing pads are implied by the output size).
 * x[n][c][h][w], weights[m][c/group][kh][kw], optional bias[m],
 * y[n][m][oh][ow]. For each weight tap, the output columns whose input column
 * is inside the image are computed first, so the innermost loop has no
 * bounds checks. */
static void egret_conv2d_f32(long n, long c, long h, long w, long m, long oh,
                             long ow, long kh, long kw, long group, long sh,
                             long sw, long dh, long dw, long ph, long pw,
                             const float *x, const float *wt,
                             const float *bias, float *y)
{
    const long cg = c / group, mg = m / group;
    long b, oc, ic, ky, kx, oy, ox;
    for (b = 0; b < n; b++) {
        for (oc = 0; oc < m; oc++) {
            const long g = oc / mg;
            float *restrict out = y + (b * m + oc) * oh * ow;
            for (oy = 0; oy < oh * ow; oy++)
                out[oy] = bias ? bias[oc] : 0.0f;
            for (ic = 0; ic < cg; ic++) {
                const float *in = x + (b * c + g * cg + ic) * h * w;
                for (ky = 0; ky < kh; ky++) {
                    for (kx = 0; kx < kw; kx++) {
                        const float wv = wt[((oc * cg + ic) * kh + ky) * kw + kx];
                        const long off = kx * dw - pw;
                        long lo = 0, hi = ow;
                        while (lo < ow && lo * sw + off < 0)
                            lo++;
                        while (hi > lo && (hi - 1) * sw + off >= w)
                            hi--;
                        for (oy = 0; oy < oh; oy++) {
                            const long iy = oy * sh - ph + ky * dh;
                            const float *restrict row = in + iy * w + off;
                            float *restrict orow = out + oy * ow;
                            if (iy < 0 || iy >= h)
                                continue;
                            for (ox = lo; ox < hi; ox++)
                                orow[ox] += wv * row[ox * sw];
                        }
                    }
                }
            }
        }
    }
}
