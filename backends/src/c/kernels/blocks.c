/* egret kernel: rows of egret's block-quantized storage as f32 (for
 * egret::GatherBlocks and egret::MatMulBlocks). A row of k values is k / g
 * blocks of g values, each a little-endian f16 scale d (and an f16 minimum
 * m, or 32 high bits) followed by its quants, as in egret_ir::blocks:
 *   Q8_0            2 + g bytes      x = q * d           (q int8)
 *   INT4_SYM        2 + g/2 bytes    x = d * (q - 8)     (Q4_0, i4s_g64/128)
 *   INT4_ASYM       4 + g/2 bytes    x = d * q + m       (Q4_1, i4a_g64/128)
 *   Q5_0            6 + g/2 bytes    x = d * (q - 16)    (q 5 bits)
 *   Q5_1            8 + g/2 bytes    x = d * q + m
 * Nibble byte j holds value j (low) and value j + g/2 (high); Q5 adds bit 4
 * of value j from bit j of a u32. Dequantization gives exactly the
 * interpreter's values. */

enum {
    EGRET_Q8_0 = 0,
    EGRET_INT4_SYM = 1,
    EGRET_INT4_ASYM = 2,
    EGRET_Q5_0 = 3,
    EGRET_Q5_1 = 4
};

/* The little-endian IEEE half at p as f32 (exact). */
static float egret_f16(const uint8_t *p)
{
    uint32_t h = (uint32_t)p[0] | ((uint32_t)p[1] << 8);
    uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    float f;
    if (exp == 0) {
        f = (float)man * 5.9604644775390625e-8f; /* man * 2^-24 */
        return sign ? -f : f;
    }
    bits = exp == 0x1fu ? (sign | 0x7f800000u | (man << 13))
                        : (sign | ((exp + 112u) << 23) | (man << 13));
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Bytes of one block of g values of format kind. */
static long egret_block_bytes(int kind, long g)
{
    switch (kind) {
    case EGRET_Q8_0: return 2 + g;
    case EGRET_INT4_SYM: return 2 + g / 2;
    case EGRET_INT4_ASYM: return 4 + g / 2;
    case EGRET_Q5_0: return 6 + g / 2;
    default: return 8 + g / 2;
    }
}

/* The k values of one row of blocks (k a multiple of g) into out. */
static void egret_dequant_row(int kind, long g, const uint8_t *row, long k, float *out)
{
    const long bb = egret_block_bytes(kind, g), half = g / 2;
    long b, j;
    for (b = 0; b < k / g; b++, row += bb, out += g) {
        const float d = egret_f16(row);
        float m = 0.0f;
        const uint8_t *qs;
        uint32_t qh = 0;
        switch (kind) {
        case EGRET_Q8_0:
            for (j = 0; j < g; j++)
                out[j] = (float)((int)row[2 + j] - ((row[2 + j] & 0x80) << 1)) * d;
            break;
        case EGRET_INT4_SYM:
            for (j = 0; j < half; j++) {
                out[j] = d * (float)((row[2 + j] & 15) - 8);
                out[j + half] = d * (float)((row[2 + j] >> 4) - 8);
            }
            break;
        case EGRET_INT4_ASYM:
            m = egret_f16(row + 2);
            for (j = 0; j < half; j++) {
                out[j] = d * (float)(row[4 + j] & 15) + m;
                out[j + half] = d * (float)(row[4 + j] >> 4) + m;
            }
            break;
        default: /* Q5_0, Q5_1 */
            if (kind == EGRET_Q5_1)
                m = egret_f16(row + 2);
            qs = row + (kind == EGRET_Q5_1 ? 8 : 6);
            qh = (uint32_t)qs[-4] | ((uint32_t)qs[-3] << 8) | ((uint32_t)qs[-2] << 16) |
                 ((uint32_t)qs[-1] << 24);
            for (j = 0; j < g; j++) {
                int q = (j < half ? (qs[j] & 15) : (qs[j - half] >> 4)) |
                        (int)(((qh >> j) & 1u) << 4);
                out[j] = kind == EGRET_Q5_1 ? d * (float)q + m : d * (float)(q - 16);
            }
            break;
        }
    }
}
