//! The e-graph layer: egret's IR as an `egg` language.
//!
//! * [`op`]: interned operator keys (`OpId`) and their pattern syntax.
//! * [`lang`]: the language ([`ENode`]).
//! * [`facts`] and [`analysis`]: per-class types, values and side tables.
//! * [`fold`]: constant folding and symbolic shape values.
//! * [`import`] / [`export`]: IR ⇄ e-graph.

pub mod analysis;
pub mod export;
pub mod facts;
pub mod fold;
pub mod import;
pub mod lang;
pub mod op;

pub use analysis::{is_splat, known_ints, node_types, Analysis, EGraph, Rewrite};
pub use facts::{Facts, SymInt};
pub use import::{import, Imported};
pub use lang::ENode;
pub use op::{OpId, OpKey};
