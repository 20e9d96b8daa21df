//! The sentence encoder on tract with one plan for every shape. `backend::tract` builds one
//! optimised plan per bound (batch, seq): for this encoder 65-130 ms and 45 MiB resident each
//! (measured, docs/BENCHMARKS.md), so a daemon that meets all 5 row counts x 8 seq buckets holds
//! 1.9 GB, and a shape first met by a transcript pays the build inside its latency. Here the
//! inputs keep tract's symbols for batch and seq, the model is optimised once at load, and the
//! one plan runs every shape with the per-shape plans' exact bits (tested below) and no
//! first-use cost per shape; it is slower at large batches (tract picks its matmul kernels for
//! any size: 37 % per utterance at 16 rows x 24 tokens, within 6 % up to 8 rows).

use tract_onnx::prelude::{TDim, TVec, TypedSimpleState};

use crate::backend::tract::{optimised_state, parse_pinned, run_state, PROVIDER};
use crate::backend::{check_call, Axis, Backend, BackendError, Input, PartSpec, TensorSpec};
use crate::tensor::Tensor;

/// The encoder's part on tract, one plan for all (batch, seq).
pub struct SymbolicTract {
    spec: PartSpec,
    state: TypedSimpleState,
}

/// `s`'s shape with its symbolic axes as tract symbols (`batch`, `window`, `seq`).
fn symbolic_shape(s: &TensorSpec, sym: &impl Fn(&str) -> TDim) -> TVec<TDim> {
    s.shape
        .iter()
        .zip(&s.axes)
        .map(|(&d, a)| match a {
            Axis::Fixed => TDim::from(d),
            Axis::Batch => sym("batch"),
            Axis::Window => sym("window"),
            Axis::Seq => sym("seq"),
        })
        .collect()
}

impl SymbolicTract {
    /// Parses the part, pins its input and output names, and optimises it once with symbolic
    /// batch and seq; the outputs' shapes are checked against the spec (symbols included).
    pub fn load(spec: &PartSpec) -> Result<SymbolicTract, BackendError> {
        let parsed = parse_pinned(spec)?;
        let symbols = parsed.symbols.clone();
        let sym = |name: &str| TDim::from(symbols.sym(name));
        let state = optimised_state(spec, parsed, |s| symbolic_shape(s, &sym), "")?;
        log::debug!("{}: one tract plan for every batch and seq", spec.name);
        Ok(SymbolicTract {
            spec: spec.clone(),
            state,
        })
    }
}

impl Backend for SymbolicTract {
    fn spec(&self) -> &PartSpec {
        &self.spec
    }

    fn provider(&self) -> String {
        PROVIDER.to_string()
    }

    /// The one plan already runs `at`: nothing to build.
    fn prepare(&mut self, _at: crate::backend::Shape) -> Result<(), BackendError> {
        Ok(())
    }

    fn run(&mut self, inputs: &[&Tensor], outputs: &mut [Tensor]) -> Result<(), BackendError> {
        let inputs = crate::backend::f32_inputs(&self.spec, inputs)?;
        self.run_typed(&inputs, outputs)
    }

    fn run_typed(&mut self, inputs: &[Input<'_>], outputs: &mut [Tensor]) -> Result<(), BackendError> {
        check_call(&self.spec, inputs, outputs)?;
        run_state(&self.spec, &mut self.state, inputs, outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{self, BackendKind, BackendOptions};
    use crate::frontend::encoder::part_spec;
    use crate::frontend::tokenize::{TextTokenizer, TokenBatch};
    use crate::frontend::{test_config, Buckets};

    /// The one plan gives the very bits of `backend::tract`'s plan for that shape, on real
    /// token rows at row counts and seq buckets of every size class (filler rows and padded
    /// positions included), so switching plans changes no embedding.
    #[test]
    fn one_plan_equals_the_per_shape_plans_bit_for_bit() {
        let Some(config) = test_config() else {
            return;
        };
        let spec = part_spec(&config);
        let mut one = SymbolicTract::load(&spec).expect("symbolic plan");
        let mut per_shape = backend::load(BackendKind::Tract, &spec, &BackendOptions::default()).expect("tract");
        let tok = TextTokenizer::load(&config.tokenizer, config.max_tokens).expect("tokenizer");
        let texts = [
            "Hello.",
            "I can't believe you did that, it's wonderful!",
            "Well, I don't know what to say. Maybe we should just go home and talk about it tomorrow?",
            "Ça va? 🙂",
        ];
        let rows: Vec<Vec<u32>> = texts.iter().map(|t| tok.ids(t).expect("ids")).collect();
        let buckets = Buckets::new(config.max_tokens);
        for (n, seq) in [(1, 8), (1, 24), (3, 32), (4, 48), (8, 24), (16, 16), (2, 128)] {
            let batch: Vec<Vec<u32>> = rows
                .iter()
                .cycle()
                .take(n)
                .map(|r| r[..r.len().min(seq)].to_vec())
                .collect();
            let (call, seq) = buckets.call_shape(n, seq);
            let tokens = TokenBatch::pad(&batch, seq, call, tok.pad_id());
            let inputs = [
                Input::I64(&tokens.ids),
                Input::I64(&tokens.mask),
                Input::I64(&tokens.types),
            ];
            let mut a = [Tensor::zeros(&[call, seq, config.hidden])];
            let mut b = [Tensor::zeros(&[call, seq, config.hidden])];
            one.run_typed(&inputs, &mut a).expect("one plan");
            per_shape.run_typed(&inputs, &mut b).expect("per-shape plan");
            let differ = a[0]
                .data()
                .iter()
                .zip(b[0].data())
                .filter(|(x, y)| x.to_bits() != y.to_bits());
            assert_eq!(differ.count(), 0, "{call} rows x {seq} tokens");
        }
    }

    #[test]
    fn a_call_that_does_not_fit_the_spec_is_refused() {
        let Some(config) = test_config() else {
            return;
        };
        let mut one = SymbolicTract::load(&part_spec(&config)).expect("symbolic plan");
        let t = TokenBatch::pad(&[vec![101, 102]], 8, 1, 0);
        let inputs = [Input::I64(&t.ids), Input::I64(&t.mask), Input::I64(&t.types)];
        let mut wrong = [Tensor::zeros(&[1, 16, config.hidden])];
        assert!(matches!(
            one.run_typed(&inputs, &mut wrong),
            Err(BackendError::Binding { .. })
        ));
        assert!(one.run_typed(&inputs[..2], &mut wrong).is_err(), "two inputs of three");
    }
}
