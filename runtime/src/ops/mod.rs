//! Op kernels, one file per op family. Each file exposes `register`.
pub mod activation;
pub mod attention;
pub mod blocks;
pub mod cast;
pub mod control;
pub mod conv;
pub mod elementwise;
pub mod flex_attention;
pub mod gather;
pub mod linalg;
pub mod loss;
pub mod norm;
pub mod pool;
pub mod quant;
pub mod random;
pub mod reduce;
pub mod resize;
pub mod rnn;
pub mod sequence;
pub mod shape;
pub mod signal;
pub mod statespace;
pub mod strings;
pub mod tfidf;
pub mod training;
pub mod tree;
pub mod vision;

/// Register every family's kernels.
pub fn register_all(r: &mut crate::registry::Registry) {
    elementwise::register(r);
    activation::register(r);
    cast::register(r);
    shape::register(r);
    gather::register(r);
    reduce::register(r);
    sequence::register(r);
    linalg::register(r);
    conv::register(r);
    pool::register(r);
    norm::register(r);
    resize::register(r);
    quant::register(r);
    blocks::register(r);
    rnn::register(r);
    control::register(r);
    attention::register(r);
    flex_attention::register(r);
    signal::register(r);
    statespace::register(r);
    loss::register(r);
    vision::register(r);
    strings::register(r);
    tfidf::register(r);
    training::register(r);
    random::register(r);
    tree::register(r);
}
