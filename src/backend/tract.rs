//! tract backend: the pure-Rust engine that is always compiled in.
//!
//! Load stages follow tract's own: parse ONNX -> pin input names, order and fixed shapes ->
//! optimise -> runnable plan. Output names and shapes are checked against the spec at load.

use tract_onnx::prelude::{
    Framework, InferenceFact, InferenceModelExt, IntoTValue, TVec, TypedModel, TypedSimpleState,
};
use tract_onnx::prelude::Tensor as TractTensor;
use tract_onnx::tract_core::model::IntoRunnable;

use super::{check_call, Backend, BackendError, BackendOptions, PartSpec};
use crate::tensor::Tensor;

pub struct TractBackend {
    spec: PartSpec,
    /// One execution state kept across runs (tract resets its turn after each run), so a run
    /// does not rebuild the per-node state tables; the parts are stateless ops.
    state: TypedSimpleState,
}

fn engine_err(spec: &PartSpec, e: impl std::fmt::Display) -> BackendError {
    BackendError::Engine { part: spec.name.clone(), engine: "tract", detail: format!("{e:#}") }
}

impl TractBackend {
    pub fn load(spec: &PartSpec, _opts: &BackendOptions) -> Result<Self, BackendError> {
        let mut file = std::fs::File::open(&spec.path).map_err(|source| BackendError::Io {
            part: spec.name.clone(),
            path: spec.path.clone(),
            source,
        })?;
        let mut model = tract_onnx::onnx()
            .model_for_read(&mut file)
            .map_err(|e| engine_err(spec, e))?;
        let mismatch = |detail: String| BackendError::Mismatch { part: spec.name.clone(), detail };
        let in_names: Vec<&str> = spec.inputs.iter().map(|s| s.name.as_str()).collect();
        model
            .set_input_names(&in_names)
            .map_err(|e| mismatch(format!("inputs {in_names:?}: {e}")))?;
        let out_names: Vec<&str> = spec.outputs.iter().map(|s| s.name.as_str()).collect();
        model
            .select_outputs_by_name(&out_names)
            .map_err(|e| mismatch(format!("outputs {out_names:?}: {e}")))?;
        for (i, s) in spec.inputs.iter().enumerate() {
            let fact = InferenceFact::dt_shape(f32::datum_type(), s.shape.clone());
            model.set_input_fact(i, fact).map_err(|e| engine_err(spec, e))?;
        }
        let typed: TypedModel = model.into_optimized().map_err(|e| engine_err(spec, e))?;
        for (i, s) in spec.outputs.iter().enumerate() {
            let fact = typed.output_fact(i).map_err(|e| engine_err(spec, e))?;
            let shape = fact.shape.as_concrete().map(|c| c.to_vec());
            if shape.as_deref() != Some(&s.shape[..]) {
                return Err(mismatch(format!(
                    "output `{}` has shape {:?}, manifest says {:?}",
                    s.name, fact.shape, s.shape
                )));
            }
        }
        let plan = typed.into_runnable().map_err(|e| engine_err(spec, e))?;
        let state = plan.spawn().map_err(|e| engine_err(spec, e))?;
        Ok(TractBackend { spec: spec.clone(), state })
    }
}

use tract_onnx::prelude::Datum;

impl Backend for TractBackend {
    fn spec(&self) -> &PartSpec {
        &self.spec
    }

    fn provider(&self) -> String {
        "tract (cpu)".to_string()
    }

    fn run(&mut self, inputs: &[&Tensor], outputs: &mut [Tensor]) -> Result<(), BackendError> {
        check_call(&self.spec, inputs, outputs)?;
        let mut tv: TVec<_> = TVec::new();
        for t in inputs {
            let tt = TractTensor::from_shape(t.shape(), t.data()).map_err(|e| engine_err(&self.spec, e))?;
            tv.push(tt.into_tvalue());
        }
        let result = self.state.run(tv).map_err(|e| engine_err(&self.spec, e))?;
        for (out, value) in outputs.iter_mut().zip(result.iter()) {
            let view = value.try_as_plain_ram().map_err(|e| engine_err(&self.spec, e))?;
            let slice = view.as_slice::<f32>().map_err(|e| engine_err(&self.spec, e))?;
            if slice.len() != out.len() {
                return Err(engine_err(&self.spec, format!("output holds {} values, expected {}", slice.len(), out.len())));
            }
            out.data_mut().copy_from_slice(slice);
        }
        Ok(())
    }
}
