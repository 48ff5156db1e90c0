/* egret kernel: ONNX Gemm in full generality,
 * Y[m x n] = alpha . A . B + beta . C, where A, B and C are read through
 * (row, column) element strides, so transposed operands and a broadcast C
 * (scalar, row or column) need no copies. C may be NULL. */
static void egret_gemm_general_f32(long m, long n, long k, float alpha,
                                   const float *a, long a_rs, long a_cs,
                                   const float *b, long b_rs, long b_cs,
                                   float beta, const float *c, long c_rs,
                                   long c_cs, float *y)
{
    long i, j, p;
    for (i = 0; i < m; i++) {
        for (j = 0; j < n; j++) {
            float acc = 0.0f;
            for (p = 0; p < k; p++)
                acc += a[i * a_rs + p * a_cs] * b[p * b_rs + j * b_cs];
            y[i * n + j] = alpha * acc + (c ? beta * c[i * c_rs + j * c_cs] : 0.0f);
        }
    }
}
