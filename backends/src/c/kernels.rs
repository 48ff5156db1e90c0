//! The hand-written C kernels (`kernels/*.c`), embedded in egret and copied
//! into `model.c` only when a step uses them.

/// One C kernel file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kernel {
    /// `egret_gemm_f32`: blocked f32 GEMM with AVX2/NEON micro-kernels.
    Gemm,
    /// `egret_gemm_general_f32`: ONNX Gemm with strided operands.
    GemmGeneral,
    /// `egret_conv2d_f32`: NCHW convolution.
    Conv,
    /// `egret_conv_transpose2d_f32`: NCHW transposed convolution.
    ConvTranspose,
    /// `egret_maxpool2d_f32`.
    MaxPool,
    /// `egret_avgpool2d_f32`.
    AvgPool,
    /// `egret_softmax_f32`: Softmax, LogSoftmax and Hardmax.
    Softmax,
    /// `egret_layernorm_f32`: LayerNormalization and RMSNormalization.
    LayerNorm,
    /// `egret_matmul_int8_f32`: products with int8 per-channel weights.
    MatMulInt8,
    /// `egret_matmul_w8a8_f32`: int8 weights times per-token int8 activations.
    MatMulW8A8,
    /// `egret_dequant_row`: rows of egret's block-quantized storage (Q8_0,
    /// Q4_0/Q4_1, int4 groups, Q5_0/Q5_1) as f32.
    Blocks,
    /// `egret_matmul_blocks_f32`: products with block-quantized weights
    /// (after [`Kernel::Blocks`], which it needs).
    MatMulBlocks,
    /// `egret_attention_f32`: ONNX Attention (masks, heads, KV cache).
    Attention,
    /// `egret_lstm_f32`: ONNX LSTM (directions, layouts, peepholes).
    Lstm,
}

impl Kernel {
    /// The C source.
    pub fn source(self) -> &'static str {
        match self {
            Kernel::Gemm => include_str!("kernels/gemm.c"),
            Kernel::GemmGeneral => include_str!("kernels/gemm_general.c"),
            Kernel::Conv => include_str!("kernels/conv.c"),
            Kernel::ConvTranspose => include_str!("kernels/conv_transpose.c"),
            Kernel::MaxPool => include_str!("kernels/maxpool.c"),
            Kernel::AvgPool => include_str!("kernels/avgpool.c"),
            Kernel::Softmax => include_str!("kernels/softmax.c"),
            Kernel::LayerNorm => include_str!("kernels/layernorm.c"),
            Kernel::MatMulInt8 => include_str!("kernels/matmul_int8.c"),
            Kernel::MatMulW8A8 => include_str!("kernels/matmul_w8a8.c"),
            Kernel::Blocks => include_str!("kernels/blocks.c"),
            Kernel::MatMulBlocks => include_str!("kernels/matmul_blocks.c"),
            Kernel::Attention => include_str!("kernels/attention.c"),
            Kernel::Lstm => include_str!("kernels/lstm.c"),
        }
    }
}
