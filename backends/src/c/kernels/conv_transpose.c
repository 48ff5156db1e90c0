/* egret kernel: 2-D transposed convolution, NCHW, with groups, strides,
 * dilations and leading pads: each input element scatters its products
 * with the kernel into the output. x[n][c][h][w],
 * weights[c][m/group][kh][kw], optional bias[m], y[n][m][oh][ow]. */
static void egret_conv_transpose2d_f32(long n, long c, long h, long w, long m,
                                       long oh, long ow, long kh, long kw,
                                       long group, long sh, long sw, long dh,
                                       long dw, long ph, long pw,
                                       const float *x, const float *wt,
                                       const float *bias, float *y)
{
    const long cg = c / group, mg = m / group;
    long b, oc, ic, o, iy, ix, ky, kx;
    for (b = 0; b < n; b++)
        for (oc = 0; oc < m; oc++)
            for (o = 0; o < oh * ow; o++)
                y[(b * m + oc) * oh * ow + o] = bias ? bias[oc] : 0.0f;
    for (b = 0; b < n; b++) {
        for (ic = 0; ic < c; ic++) {
            const long g = ic / cg;
            const float *in = x + (b * c + ic) * h * w;
            for (o = 0; o < mg; o++) {
                float *out = y + (b * m + g * mg + o) * oh * ow;
                const float *k = wt + (ic * mg + o) * kh * kw;
                for (iy = 0; iy < h; iy++) {
                    for (ix = 0; ix < w; ix++) {
                        const float v = in[iy * w + ix];
                        for (ky = 0; ky < kh; ky++) {
                            const long oy = iy * sh - ph + ky * dh;
                            if (oy < 0 || oy >= oh)
                                continue;
                            for (kx = 0; kx < kw; kx++) {
                                const long ox = ix * sw - pw + kx * dw;
                                if (ox >= 0 && ox < ow)
                                    out[oy * ow + ox] += v * k[ky * kw + kx];
                            }
                        }
                    }
                }
            }
        }
    }
}
