//! tract backend: the pure-Rust engine that is always compiled in.
//!
//! Load stages follow tract's own: parse ONNX -> pin input names and order -> (per shape) fix
//! input shapes -> optimise -> runnable plan. A part with symbolic axes keeps its parsed model
//! and builds one optimised plan per bound `Shape` on first use (or at `prepare`), cached for the
//! life of the backend; a fixed-shape part has exactly one. Output shapes are checked against the
//! spec whenever a plan is built.

use tract_onnx::prelude::Tensor as TractTensor;
use tract_onnx::prelude::{
    Datum, Framework, InferenceFact, InferenceModel, InferenceModelExt, IntoTValue, TDim, TVec, TypedModel,
    TypedSimpleState,
};
use tract_onnx::tract_core::model::IntoRunnable;

use super::{
    check_call, f32_inputs, Backend, BackendError, BackendOptions, ElementType, Input, PartSpec, Shape, TensorSpec,
};
use crate::tensor::Tensor;

pub struct TractBackend {
    spec: PartSpec,
    /// The parsed model with inputs and outputs pinned, shapes still as in the file.
    parsed: InferenceModel,
    /// One execution state per shape (tract resets its turn after each run), so a run does not
    /// rebuild the per-node state tables; the parts are stateless ops.
    plans: Vec<(Shape, TypedSimpleState)>,
}

/// An engine error of `spec`'s part, as tract words it.
pub(crate) fn engine_err(spec: &PartSpec, e: impl std::fmt::Display) -> BackendError {
    BackendError::Engine {
        part: spec.name.clone(),
        engine: "tract",
        detail: format!("{e:#}"),
    }
}

/// Parses `spec`'s ONNX file and pins its inputs (in the spec's order) and outputs by name;
/// shapes stay as in the file. The first load stage of every tract part (also the frontend's
/// one-plan encoder, `frontend::tract_plan`).
pub(crate) fn parse_pinned(spec: &PartSpec) -> Result<InferenceModel, BackendError> {
    let mut file = std::fs::File::open(&spec.path).map_err(|source| BackendError::Io {
        part: spec.name.clone(),
        path: spec.path.clone(),
        source,
    })?;
    let mut parsed = tract_onnx::onnx()
        .model_for_read(&mut file)
        .map_err(|e| engine_err(spec, e))?;
    let in_names: Vec<&str> = spec.inputs.iter().map(|s| s.name.as_str()).collect();
    parsed
        .set_input_names(&in_names)
        .map_err(|e| mismatch(spec, format!("inputs {in_names:?}: {e}")))?;
    let out_names: Vec<&str> = spec.outputs.iter().map(|s| s.name.as_str()).collect();
    parsed
        .select_outputs_by_name(&out_names)
        .map_err(|e| mismatch(spec, format!("outputs {out_names:?}: {e}")))?;
    Ok(parsed)
}

/// What executes a tract part.
pub(crate) const PROVIDER: &str = "tract (cpu)";

/// A mismatch of `spec`'s part against its file.
fn mismatch(spec: &PartSpec, detail: String) -> BackendError {
    BackendError::Mismatch {
        part: spec.name.clone(),
        detail,
    }
}

/// The later load stages of a tract part: fixes `model`'s input facts to `shape` of each input
/// spec (concrete sizes or tract symbols), optimises, checks every output's shape against
/// `shape` of its spec, and spawns the runnable plan's state. `at` names the shape in errors.
pub(crate) fn optimised_state(
    spec: &PartSpec,
    mut model: InferenceModel,
    shape: impl Fn(&TensorSpec) -> TVec<TDim>,
    at: &str,
) -> Result<TypedSimpleState, BackendError> {
    for (i, s) in spec.inputs.iter().enumerate() {
        let dt = match s.dtype {
            ElementType::F32 => f32::datum_type(),
            ElementType::I64 => i64::datum_type(),
        };
        let fact = InferenceFact::dt_shape(dt, shape(s));
        model.set_input_fact(i, fact).map_err(|e| engine_err(spec, e))?;
    }
    let typed: TypedModel = model.into_optimized().map_err(|e| engine_err(spec, e))?;
    for (i, s) in spec.outputs.iter().enumerate() {
        let fact = typed.output_fact(i).map_err(|e| engine_err(spec, e))?;
        let want = shape(s);
        if fact.shape.iter().cloned().collect::<TVec<TDim>>() != want {
            let want: Vec<String> = want.iter().map(|d| d.to_string()).collect();
            let detail = format!(
                "output `{}` has shape {:?}, manifest says [{}]{at}",
                s.name,
                fact.shape,
                want.join(", ")
            );
            return Err(mismatch(spec, detail));
        }
    }
    let plan = typed.into_runnable().map_err(|e| engine_err(spec, e))?;
    plan.spawn().map_err(|e| engine_err(spec, e))
}

/// Runs `state` (a plan of `spec`'s part) on `inputs` and copies its outputs into `outputs`,
/// whose sizes the caller checked against the spec.
pub(crate) fn run_state(
    spec: &PartSpec,
    state: &mut TypedSimpleState,
    inputs: &[Input<'_>],
    outputs: &mut [Tensor],
) -> Result<(), BackendError> {
    let mut tv: TVec<_> = TVec::new();
    for t in inputs {
        let tt = match t {
            Input::F32(t) => TractTensor::from_shape(t.shape(), t.data()),
            Input::I64(t) => TractTensor::from_shape(t.shape(), t.data()),
        };
        tv.push(tt.map_err(|e| engine_err(spec, e))?.into_tvalue());
    }
    let result = state.run(tv).map_err(|e| engine_err(spec, e))?;
    for (out, value) in outputs.iter_mut().zip(result.iter()) {
        let view = value.try_as_plain_ram().map_err(|e| engine_err(spec, e))?;
        let slice = view.as_slice::<f32>().map_err(|e| engine_err(spec, e))?;
        if slice.len() != out.len() {
            let detail = format!("output holds {} values, expected {}", slice.len(), out.len());
            return Err(engine_err(spec, detail));
        }
        out.data_mut().copy_from_slice(slice);
    }
    Ok(())
}

impl TractBackend {
    /// Parses the part and builds its plan at the reference shape (batch 1, window W), which
    /// checks the file against the spec once.
    pub fn load(spec: &PartSpec, _opts: &BackendOptions) -> Result<Self, BackendError> {
        let parsed = parse_pinned(spec)?;
        let mut backend = TractBackend {
            spec: spec.clone(),
            parsed,
            plans: Vec::new(),
        };
        backend.prepare(spec.reference_shape())?;
        Ok(backend)
    }

    /// Index of the plan for `at`, built if there is none yet.
    fn plan(&mut self, at: Shape) -> Result<usize, BackendError> {
        if let Some(i) = self.plans.iter().position(|(s, _)| *s == at) {
            return Ok(i);
        }
        let spec = &self.spec;
        let concrete = |s: &TensorSpec| s.shape_at(at).into_iter().map(TDim::from).collect();
        let state = optimised_state(spec, self.parsed.clone(), concrete, &format!(" at {at:?}"))?;
        log::debug!(
            "{}: tract plan for batch {} window {} seq {}",
            spec.name,
            at.batch,
            at.window,
            at.seq
        );
        self.plans.push((at, state));
        Ok(self.plans.len() - 1)
    }
}

impl Backend for TractBackend {
    fn spec(&self) -> &PartSpec {
        &self.spec
    }

    fn provider(&self) -> String {
        PROVIDER.to_string()
    }

    fn prepare(&mut self, at: Shape) -> Result<(), BackendError> {
        self.plan(at).map(|_| ())
    }

    fn run(&mut self, inputs: &[&Tensor], outputs: &mut [Tensor]) -> Result<(), BackendError> {
        let inputs = f32_inputs(&self.spec, inputs)?;
        self.run_typed(&inputs, outputs)
    }

    fn run_typed(&mut self, inputs: &[Input<'_>], outputs: &mut [Tensor]) -> Result<(), BackendError> {
        let at = check_call(&self.spec, inputs, outputs)?;
        let index = self.plan(at)?;
        run_state(&self.spec, &mut self.plans[index].1, inputs, outputs)
    }
}
