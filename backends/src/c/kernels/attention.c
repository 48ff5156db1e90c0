/* egret kernel: ONNX Attention (opset 23) on f32, as the interpreter computes
 * it (runtime/src/kernels/attention.rs): per query row i of head h of batch b,
 *
 *   s_j = softcap(scale * q_i . k_j)            (softcap > 0: c * tanh(s / c))
 *   s_j = mask(s_j)    bool mask: false -> -inf; float mask: s_j + m_j; keys
 *                      beyond the mask's width -> -inf; causal: keys after
 *                      past + i -> -inf; keys at or after nonpad[b] -> -inf
 *   y_i = sum_j softmax(s)_j v_j
 *
 * with keys and values `past ++ new` along the sequence axis, and query head
 * h reading key/value head h / (q_heads / kv_heads). The softmax runs online
 * over chunks of EGRET_ATTENTION_CHUNK keys (a running maximum and sum, the
 * accumulator rescaled when a chunk raises the maximum), so the only buffer
 * is one chunk of scores on the stack; a row whose keys are all masked is
 * NaN, as in the interpreter.
 *
 * Q, the new K and V, and Y are (batch, heads, seq, size) views through
 * strides `[b, h, s]` (the size axis contiguous), so both the 4-D
 * (b, h, s, d) and the 3-D (b, s, h * d) layouts are read in place. The past
 * and present caches are contiguous (b, kv_heads, seq, d); `past_k`,
 * `present_k`, `qk`, `mask` and `nonpad` may be NULL. `qk` (b, q_heads, q_seq,
 * total) captures the scores at stage `qk_mode`: 0 and 1 after the softcap,
 * 2 after the masks, 3 the probabilities. Returns 1 when a nonpad length is
 * negative, else 0. */

/* The geometry of one call (sizes and strides). */
typedef struct {
    long batch, q_heads, kv_heads, q_seq, kv_seq, past, dk, dv;
    long q_st[3], k_st[3], v_st[3], y_st[3];
    /* Mask strides (0 where broadcast) for batch, head and query row; the
     * mask covers keys 0..mask_width-1. */
    long mask_st[3], mask_width;
} egret_attention_dims;

/* Keys scored together: the online softmax rescales at most once per chunk. */
#define EGRET_ATTENTION_CHUNK 32

/* q . k over n elements, eight partial sums (gcc vectorises them). */
static float egret_attention_dot(long n, const float *q, const float *k)
{
    float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    float tail = 0.0f;
    long p, t;
    for (p = 0; p + 8 <= n; p += 8)
        for (t = 0; t < 8; t++)
            acc[t] += q[p + t] * k[p + t];
    for (; p < n; p++)
        tail += q[p] * k[p];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) +
           tail;
}

/* y += w * v over n elements, in groups of eight (gcc vectorises them). */
static void egret_attention_axpy(long n, float w, const float *restrict v, float *restrict y)
{
    long c, t;
    for (c = 0; c + 8 <= n; c += 8)
        for (t = 0; t < 8; t++)
            y[c + t] += w * v[c + t];
    for (; c < n; c++)
        y[c] += w * v[c];
}

/* Row j of key/value head (b, h): from the past cache or the new rows. */
static const float *egret_attention_row(const egret_attention_dims *d, const float *past,
                                        const float *cur, const long *st, long size,
                                        long b, long h, long j)
{
    if (j < d->past)
        return past + ((b * d->kv_heads + h) * d->past + j) * size;
    return cur + b * st[0] + h * st[1] + (j - d->past) * st[2];
}

/* present = past ++ new, contiguous (b, kv_heads, past + kv_seq, size). */
static void egret_attention_present(const egret_attention_dims *d, const float *past,
                                    const float *cur, const long *st, long size,
                                    float *present)
{
    const long total = d->past + d->kv_seq;
    long b, h, j;
    for (b = 0; b < d->batch; b++)
        for (h = 0; h < d->kv_heads; h++)
            for (j = 0; j < total; j++)
                memcpy(present + ((b * d->kv_heads + h) * total + j) * size,
                       egret_attention_row(d, past, cur, st, size, b, h, j),
                       (size_t)size * sizeof(float));
}

/* One query row: y (dv) from q against keys 0..total-1 of key/value head
 * (b, kvh); `qkr` (NULL or total wide) captures the scores. */
static void egret_attention_query(const egret_attention_dims *d, long b, long h, long i,
                                  long kvh, long limit, float scale, float softcap,
                                  int causal, int qk_mode, const float *qi, const float *k,
                                  const float *v, const unsigned char *mask_bool,
                                  const float *mask_add, const float *past_k,
                                  const float *past_v, float *yi, float *qkr)
{
    const long total = d->past + d->kv_seq;
    const long mbase = b * d->mask_st[0] + h * d->mask_st[1] + i * d->mask_st[2];
    const long visible = causal && d->past + i + 1 < total ? d->past + i + 1 : total;
    /* Causally hidden keys are never computed unless their scores are wanted. */
    const long end = qkr ? total : visible;
    float s[EGRET_ATTENTION_CHUNK];
    float mx = -INFINITY, sum = 0.0f;
    long j0, jj, c;
    for (c = 0; c < d->dv; c++)
        yi[c] = 0.0f;
    for (j0 = 0; j0 < end; j0 += EGRET_ATTENTION_CHUNK) {
        const long n = end - j0 < EGRET_ATTENTION_CHUNK ? end - j0 : EGRET_ATTENTION_CHUNK;
        float cmax = -INFINITY;
        for (jj = 0; jj < n; jj++) {
            const long j = j0 + jj;
            const float *kj = egret_attention_row(d, past_k, k, d->k_st, d->dk, b, kvh, j);
            float x = scale * egret_attention_dot(d->dk, qi, kj);
            if (softcap > 0.0f)
                x = softcap * tanhf(x / softcap);
            if (qkr && qk_mode <= 1)
                qkr[j] = x;
            if (mask_bool || mask_add) {
                if (j >= d->mask_width)
                    x = -INFINITY;
                else if (mask_bool)
                    x = mask_bool[mbase + j] ? x : -INFINITY;
                else
                    x += mask_add[mbase + j];
            }
            if (j >= visible || j >= limit)
                x = -INFINITY;
            if (qkr && qk_mode >= 2)
                qkr[j] = x;
            s[jj] = x;
            cmax = x > cmax ? x : cmax;
        }
        if (cmax == -INFINITY)
            continue; /* every key of the chunk has weight 0 */
        if (cmax > mx) {
            const float r = expf(mx - cmax);
            sum *= r;
            for (c = 0; c < d->dv; c++)
                yi[c] *= r;
            mx = cmax;
        }
        for (jj = 0; jj < n; jj++) {
            float w;
            if (s[jj] == -INFINITY)
                continue;
            w = expf(s[jj] - mx);
            sum += w;
            egret_attention_axpy(d->dv, w,
                                 egret_attention_row(d, past_v, v, d->v_st, d->dv, b, kvh, j0 + jj),
                                 yi);
        }
    }
    /* All keys masked: 0 / 0, NaN like the interpreter's softmax. */
    for (c = 0; c < d->dv; c++)
        yi[c] = sum > 0.0f ? yi[c] / sum : NAN;
    if (qkr && qk_mode == 3)
        for (jj = 0; jj < total; jj++)
            qkr[jj] = sum > 0.0f ? expf(qkr[jj] - mx) / sum : NAN;
}

static int egret_attention_f32(const egret_attention_dims *d, float scale, float softcap,
                               int causal, int qk_mode, const float *q, const float *k,
                               const float *v, const unsigned char *mask_bool,
                               const float *mask_add, const float *past_k,
                               const float *past_v, const int64_t *nonpad, float *y,
                               float *present_k, float *present_v, float *qk)
{
    const long total = d->past + d->kv_seq, group = d->q_heads / d->kv_heads;
    long b, h, i;
    for (b = 0; b < d->batch; b++) {
        long limit = total;
        if (nonpad) {
            if (nonpad[b] < 0)
                return 1;
            if (nonpad[b] < limit)
                limit = (long)nonpad[b];
        }
        for (h = 0; h < d->q_heads; h++)
            for (i = 0; i < d->q_seq; i++)
                egret_attention_query(
                    d, b, h, i, h / group, limit, scale, softcap, causal, qk_mode,
                    q + b * d->q_st[0] + h * d->q_st[1] + i * d->q_st[2], k, v, mask_bool,
                    mask_add, past_k, past_v,
                    y + b * d->y_st[0] + h * d->y_st[1] + i * d->y_st[2],
                    qk ? qk + ((b * d->q_heads + h) * d->q_seq + i) * total : NULL);
    }
    if (present_k)
        egret_attention_present(d, past_k, k, d->k_st, d->dk, present_k);
    if (present_v)
        egret_attention_present(d, past_v, v, d->v_st, d->dv, present_v);
    return 0;
}
