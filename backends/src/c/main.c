/* egret harness: runs model.c on .npy inputs and writes .npy outputs.
 *
 *   ./model IN_0.npy ... IN_n.npy OUT_0.npy ... OUT_m.npy
 *
 * Inputs and outputs are in the order of model.h's egret_inputs and
 * egret_outputs; every input must have exactly the dtype and shape the model
 * was built for. Outputs are written as .npy version 1.0, C order, the way
 * `egret run` writes them. Only stdio is used: the data lives in one static
 * buffer sized by EGRET_IO_BYTES, and there is no heap allocation. */
#include "model.h"

#include <stdio.h>
#include <string.h>

static union {
    double align;
    unsigned char bytes[EGRET_IO_BYTES + 1];
} io;

#if !EGRET_WEIGHTS_INLINE
static union {
    double align;
    unsigned char bytes[EGRET_WEIGHTS_BYTES + 1];
} weights;
#endif

/* The .npy header of a tensor (at most this long). */
static char header[1 << 16];

static int fail(const char *path, const char *why)
{
    fprintf(stderr, "%s: %s\n", path, why);
    return 1;
}

/* Whether numpy dtype codes a and b name the same little-endian type. */
static int same_descr(const char *a, size_t alen, const char *b)
{
    if (alen != strlen(b) || alen < 2)
        return 0;
    if (strchr("<|=", a[0]) == NULL)
        return 0;
    return memcmp(a + 1, b + 1, alen - 1) == 0;
}

/* The value after `'key':` in the header, or NULL. */
static const char *field(const char *key)
{
    const char *p = strstr(header, key);
    if (p == NULL)
        return NULL;
    p += strlen(key);
    while (*p == ' ' || *p == ':')
        p++;
    return p;
}

static unsigned long le(const unsigned char *p, int n)
{
    unsigned long v = 0;
    while (n-- > 0)
        v = (v << 8) | p[n];
    return v;
}

/* Read `t` from the .npy file at `path` into `dst`. */
static int read_npy(const char *path, const egret_tensor_info *t, unsigned char *dst)
{
    unsigned char pre[12];
    unsigned long len;
    const char *p;
    int lenbytes, r;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return fail(path, "cannot open");
    if (fread(pre, 1, 8, f) != 8 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        fclose(f);
        return fail(path, "not a .npy file");
    }
    lenbytes = pre[6] == 1 ? 2 : 4;
    if (fread(pre + 8, 1, (size_t)lenbytes, f) != (size_t)lenbytes) {
        fclose(f);
        return fail(path, "truncated header");
    }
    len = le(pre + 8, lenbytes);
    if (len >= sizeof header || fread(header, 1, len, f) != len) {
        fclose(f);
        return fail(path, "header too long or truncated");
    }
    header[len] = 0;
    p = field("'descr'");
    if (p == NULL || *p != '\'' || strchr(p + 1, '\'') == NULL ||
        !same_descr(p + 1, (size_t)(strchr(p + 1, '\'') - p - 1), t->descr)) {
        fclose(f);
        fprintf(stderr, "%s: expected dtype %s for `%s`\n", path, t->descr, t->name);
        return 1;
    }
    p = field("'fortran_order'");
    if (p == NULL || strncmp(p, "False", 5) != 0) {
        fclose(f);
        return fail(path, "Fortran order is not supported");
    }
    p = field("'shape'");
    if (p == NULL || *p != '(') {
        fclose(f);
        return fail(path, "no shape");
    }
    p++;
    for (r = 0;; r++) {
        long d = 0;
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == ')')
            break;
        if (*p < '0' || *p > '9' || r >= t->rank) {
            fclose(f);
            fprintf(stderr, "%s: shape does not match `%s`\n", path, t->name);
            return 1;
        }
        while (*p >= '0' && *p <= '9')
            d = d * 10 + (*p++ - '0');
        if (d != t->shape[r]) {
            fclose(f);
            fprintf(stderr, "%s: shape does not match `%s`\n", path, t->name);
            return 1;
        }
    }
    if (r != t->rank) {
        fclose(f);
        fprintf(stderr, "%s: rank does not match `%s`\n", path, t->name);
        return 1;
    }
    r = fread(dst, 1, t->bytes, f) == t->bytes;
    fclose(f);
    return r ? 0 : fail(path, "truncated data");
}

/* Write `t` from `src` to `path` as .npy version 1.0. */
static int write_npy(const char *path, const egret_tensor_info *t, const unsigned char *src)
{
    size_t n, total;
    int r;
    FILE *f;
    n = (size_t)sprintf(header, "{'descr': '%s', 'fortran_order': False, 'shape': (", t->descr);
    for (r = 0; r < t->rank; r++)
        n += (size_t)sprintf(header + n, r + 1 < t->rank ? "%ld, " : "%ld", t->shape[r]);
    n += (size_t)sprintf(header + n, t->rank == 1 ? ",), }" : "), }");
    total = (10 + n + 1 + 63) / 64 * 64;
    while (10 + n + 1 < total)
        header[n++] = ' ';
    header[n++] = '\n';
    f = fopen(path, "wb");
    if (f == NULL)
        return fail(path, "cannot create");
    r = fwrite("\x93NUMPY\x01\x00", 1, 8, f) == 8 && fputc((int)(n & 0xff), f) != EOF &&
        fputc((int)(n >> 8), f) != EOF && fwrite(header, 1, n, f) == n &&
        fwrite(src, 1, t->bytes, f) == t->bytes;
    r = fclose(f) == 0 && r;
    return r ? 0 : fail(path, "write failed");
}

#if !EGRET_WEIGHTS_INLINE
/* Read weights.bin from next to the program (or $EGRET_WEIGHTS). */
static int read_weights(const char *argv0)
{
    static char path[4096];
    const char *slash = strrchr(argv0, '/');
    size_t dir = slash ? (size_t)(slash - argv0 + 1) : 0;
    FILE *f;
    int ok;
    if (dir + sizeof "weights.bin" > sizeof path)
        return fail(argv0, "path too long");
    memcpy(path, argv0, dir);
    memcpy(path + dir, "weights.bin", sizeof "weights.bin");
    f = fopen(path, "rb");
    if (f == NULL)
        return fail(path, "cannot open");
    ok = fread(weights.bytes, 1, EGRET_WEIGHTS_BYTES, f) == EGRET_WEIGHTS_BYTES;
    fclose(f);
    return ok ? 0 : fail(path, "truncated");
}
#endif

int main(int argc, char **argv)
{
    const void *inputs[EGRET_NUM_INPUTS + 1] = {NULL};
    void *outputs[EGRET_NUM_OUTPUTS + 1] = {NULL};
    const void *w = NULL;
    int i;
    if (argc != 1 + EGRET_NUM_INPUTS + EGRET_NUM_OUTPUTS) {
        fprintf(stderr, "usage: %s", argv[0]);
        for (i = 0; i < EGRET_NUM_INPUTS; i++)
            fprintf(stderr, " %s.npy", egret_inputs[i].name);
        for (i = 0; i < EGRET_NUM_OUTPUTS; i++)
            fprintf(stderr, " OUT_%s.npy", egret_outputs[i].name);
        fprintf(stderr, "\n");
        return 2;
    }
#if !EGRET_WEIGHTS_INLINE
    if (read_weights(argv[0]))
        return 1;
    w = weights.bytes;
#endif
    for (i = 0; i < EGRET_NUM_INPUTS; i++) {
        unsigned char *dst = io.bytes + egret_inputs[i].io_offset;
        if (read_npy(argv[1 + i], &egret_inputs[i], dst))
            return 1;
        inputs[i] = dst;
    }
    for (i = 0; i < EGRET_NUM_OUTPUTS; i++)
        outputs[i] = io.bytes + egret_outputs[i].io_offset;
    if (egret_model(w, inputs, outputs) != 0) {
        fprintf(stderr, "egret_model failed\n");
        return 1;
    }
    for (i = 0; i < EGRET_NUM_OUTPUTS; i++) {
        if (write_npy(argv[1 + EGRET_NUM_INPUTS + i], &egret_outputs[i],
                      io.bytes + egret_outputs[i].io_offset))
            return 1;
    }
    return 0;
}
