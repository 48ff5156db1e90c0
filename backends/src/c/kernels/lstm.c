/* egret kernel: ONNX LSTM on f32, as the interpreter computes it
 * (runtime/src/ops/rnn.rs). Per direction d, time step t and batch row b,
 * with gates stacked i, o, f, c in W [dirs, 4H, I], R [dirs, 4H, H] and
 * B [dirs, 8H] (Wb then Rb):
 *
 *   pre_j = (x_t . W_j + (Wb_j + Rb_j)) + h . R_j
 *   i  = f(clip(pre_i + P_i * c))
 *   fg = input_forget ? 1 - i : f(clip(pre_f + P_f * c))
 *   c' = fg * c + i * g(clip(pre_c))
 *   o  = f(clip(pre_o + P_o * c'))
 *   h' = o * h(c')
 *
 * A reverse direction runs row b's first lens[b] steps back to front; steps
 * at or past lens[b] leave the state alone and Y zero. X, Y and the states
 * are read and written in either layout (0: time-major, 1: batch-major).
 *
 * `scratch` holds 2 * batch * H + 4 * H floats: the running h and c of one
 * direction and one row's gate pre-activations. b, lens, h0, c0, p, y, yh
 * and yc may be NULL. Returns 1 when a sequence length is outside
 * 0..seq, else 0. */

/* Activation functions of the cell (the interpreter's expressions). */
enum { EGRET_ACT_SIGMOID, EGRET_ACT_TANH, EGRET_ACT_RELU };

/* The geometry of one call. */
typedef struct {
    long seq, batch, isz, hidden, dirs;
    /* 0: X [seq, batch, I], Y [seq, dirs, batch, H], states [dirs, batch, H];
     * 1: X [batch, seq, I], Y [batch, seq, dirs, H], states [batch, dirs, H]. */
    int layout;
    /* Direction 0 runs back to front (direction "reverse"). */
    int reverse;
    int input_forget;
    int has_clip;
    float clip;
    /* Per direction: the gate (f), cell (g) and hidden (h) activations. */
    int acts[2][3];
} egret_lstm_dims;

static float egret_lstm_act(int a, float x)
{
    switch (a) {
    case EGRET_ACT_SIGMOID:
        return 1.0f / (1.0f + expf(-x));
    case EGRET_ACT_TANH:
        return tanhf(x);
    default:
        return x > 0.0f ? x : 0.0f;
    }
}

static float egret_lstm_clip(const egret_lstm_dims *g, float x)
{
    if (!g->has_clip)
        return x;
    return x < -g->clip ? -g->clip : (x > g->clip ? g->clip : x);
}

/* Index of state element j of row b, direction d. */
static long egret_lstm_state(const egret_lstm_dims *g, long d, long b, long j)
{
    return (g->layout ? b * g->dirs + d : d * g->batch + b) * g->hidden + j;
}

/* One direction over the whole sequence. */
static void egret_lstm_direction(const egret_lstm_dims *g, long d, const float *x, const float *w,
                                 const float *r, const float *bias, const int32_t *lens,
                                 const float *p, float *y, float *hs, float *cs, float *pre)
{
    const long S = g->seq, B = g->batch, I = g->isz, H = g->hidden, G = 4 * g->hidden;
    const int reverse = g->reverse || d == 1;
    const int *act = g->acts[d];
    long s, b, j, k;
    for (s = 0; s < S; s++) {
        for (b = 0; b < B; b++) {
            const long len = lens ? (long)lens[b] : S;
            const long t = reverse ? len - 1 - s : s;
            const float *xt = x + (g->layout ? b * S + t : t * B + b) * I;
            float *h = hs + b * H, *c = cs + b * H;
            if (s >= len)
                continue;
            for (j = 0; j < G; j++) {
                float ax = 0.0f, ah = 0.0f;
                for (k = 0; k < I; k++)
                    ax += xt[k] * w[j * I + k];
                if (bias)
                    ax += bias[j] + bias[G + j];
                for (k = 0; k < H; k++)
                    ah += h[k] * r[j * H + k];
                pre[j] = ax + ah;
            }
            for (j = 0; j < H; j++) {
                const float cp = c[j];
                const float pi = p ? p[j] : 0.0f, po = p ? p[H + j] : 0.0f;
                const float pf = p ? p[2 * H + j] : 0.0f;
                const float i = egret_lstm_act(act[0], egret_lstm_clip(g, pre[j] + pi * cp));
                const float fg =
                    g->input_forget
                        ? 1.0f - i
                        : egret_lstm_act(act[0], egret_lstm_clip(g, pre[2 * H + j] + pf * cp));
                const float ct = egret_lstm_act(act[1], egret_lstm_clip(g, pre[3 * H + j]));
                const float cn = fg * cp + i * ct;
                const float o = egret_lstm_act(act[0], egret_lstm_clip(g, pre[H + j] + po * cn));
                c[j] = cn;
                h[j] = o * egret_lstm_act(act[2], cn);
            }
            if (y) {
                float *yt = y + (g->layout ? (b * S + t) * g->dirs + d : (t * g->dirs + d) * B + b) * H;
                memcpy(yt, h, (size_t)H * sizeof(float));
            }
        }
    }
}

static int egret_lstm_f32(const egret_lstm_dims *g, const float *x, const float *w,
                          const float *r, const float *bias, const int32_t *lens, const float *h0,
                          const float *c0, const float *p, float *y, float *yh, float *yc,
                          float *scratch)
{
    const long B = g->batch, I = g->isz, H = g->hidden, G = 4 * g->hidden;
    float *hs = scratch, *cs = scratch + B * H, *pre = scratch + 2 * B * H;
    long d, b, j;
    for (b = 0; lens && b < B; b++)
        if (lens[b] < 0 || lens[b] > g->seq)
            return 1;
    if (y)
        memset(y, 0, (size_t)(g->seq * g->dirs * B * H) * sizeof(float));
    for (d = 0; d < g->dirs; d++) {
        for (b = 0; b < B; b++)
            for (j = 0; j < H; j++) {
                const long s = egret_lstm_state(g, d, b, j);
                hs[b * H + j] = h0 ? h0[s] : 0.0f;
                cs[b * H + j] = c0 ? c0[s] : 0.0f;
            }
        egret_lstm_direction(g, d, x, w + d * G * I, r + d * G * H, bias ? bias + d * 2 * G : NULL,
                             lens, p ? p + d * 3 * H : NULL, y, hs, cs, pre);
        for (b = 0; b < B; b++)
            for (j = 0; j < H; j++) {
                const long s = egret_lstm_state(g, d, b, j);
                if (yh)
                    yh[s] = hs[b * H + j];
                if (yc)
                    yc[s] = cs[b * H + j];
            }
    }
    return 0;
}
