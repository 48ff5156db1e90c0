//! Building graphs by hand: add an op and get its outputs with inferred types.
//!
//! Frontends that synthesise graphs (the safetensors and GGUF architecture
//! builders) and passes that insert nodes use [`Graph::call`], so every node they
//! add carries the same inferred types an imported ONNX node would.

use crate::error::IrError;
use crate::graph::{Graph, Op, OpCall, OutletId, ValueInfo};
use crate::infer::{infer_call, InputFact};

impl Graph {
    /// Add a call of `call` on `inputs` (`None` = absent optional input) with
    /// `num_outputs` outputs, infer their types, and return their outlets.
    /// Output values are named `<name>:<slot>` (or `<name>` for a single output).
    pub fn call(
        &mut self,
        name: &str,
        call: OpCall,
        inputs: &[Option<OutletId>],
        num_outputs: usize,
    ) -> Result<Vec<OutletId>, IrError> {
        for o in inputs.iter().flatten() {
            self.check_outlet(*o)?;
        }
        let facts: Vec<Option<InputFact<'_>>> = inputs
            .iter()
            .map(|i| {
                i.map(|o| InputFact {
                    ty: self.value_type(o),
                    value: self.const_value(o),
                })
            })
            .collect();
        let types = infer_call(name, &call, &facts, num_outputs)?;
        let outputs = types
            .into_iter()
            .take(num_outputs)
            .enumerate()
            .map(|(slot, ty)| ValueInfo {
                name: if num_outputs == 1 {
                    name.to_string()
                } else {
                    format!("{name}:{slot}")
                },
                ty,
            })
            .collect();
        let id = self.add_node(name, Op::Call(call), inputs.to_vec(), outputs)?;
        Ok((0..num_outputs).map(|s| OutletId::new(id, s)).collect())
    }

    /// [`Graph::call`] for the common single-output case.
    pub fn call1(
        &mut self,
        name: &str,
        call: OpCall,
        inputs: &[OutletId],
    ) -> Result<OutletId, IrError> {
        let ins: Vec<Option<OutletId>> = inputs.iter().copied().map(Some).collect();
        Ok(self.call(name, call, &ins, 1)?[0])
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Dim, Graph, OpCall, Shape, TensorType, ValueType};

    #[test]
    fn call_infers_output_types() {
        let mut g = Graph::new("g");
        let ty = |d: Vec<Dim>| {
            ValueType::Tensor(TensorType {
                dtype: DType::F32,
                shape: Some(Shape(d)),
            })
        };
        let x = g.add_input("x", ty(vec![Dim::Sym("seq".into()), Dim::Known(4)]));
        let y = g.add_input("y", ty(vec![Dim::Known(4), Dim::Known(3)]));
        let z = g.call1("mm", OpCall::new("MatMul"), &[x, y]).unwrap();
        assert_eq!(
            g.value_type(z),
            &ty(vec![Dim::Sym("seq".into()), Dim::Known(3)])
        );
        let err = g.call1("bad", OpCall::new("MatMul"), &[y, y]).unwrap_err();
        assert!(err.to_string().contains("bad"), "{err}");
    }
}
