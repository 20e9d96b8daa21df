//! The sentence encoder as an ONNX part on the model's `Backend` (int64 ids, mask and token
//! types [batch, seq] -> float32 last hidden state [batch, seq, hidden]), then mean pooling over
//! the positions the attention mask keeps and L2 normalisation (sentence-transformers' recipe).
//! On tract the part is `tract_plan::SymbolicTract` (one plan for every shape) instead of
//! `backend::tract`'s plan per shape; other engines load it with `backend::load`.

use super::config::FrontendConfig;
use super::tokenize::TokenBatch;
use super::tract_plan::SymbolicTract;
use super::FrontendError;
use crate::backend::{
    self, Axis, Backend, BackendKind, BackendOptions, ElementType, Input, PartSpec, Shape, TensorSpec,
};
use crate::tensor::Tensor;

/// Part name of the encoder in errors and logs.
pub const PART_NAME: &str = "text_encoder";

/// The encoder's part spec: three int64 [batch, seq] inputs (seq at most `max_tokens`) and the
/// float32 [batch, seq, hidden] output.
pub fn part_spec(config: &FrontendConfig) -> PartSpec {
    let input = |name: &str| {
        TensorSpec::new(name, &[1, config.max_tokens], &[Axis::Batch, Axis::Seq]).with_dtype(ElementType::I64)
    };
    let output = TensorSpec::new(
        &config.output,
        &[1, config.max_tokens, config.hidden],
        &[Axis::Batch, Axis::Seq, Axis::Fixed],
    );
    PartSpec {
        name: PART_NAME.to_string(),
        path: config.encoder.clone(),
        inputs: config.inputs.iter().map(|n| input(n)).collect(),
        outputs: vec![output],
    }
}

/// The loaded encoder with its reusable output buffer.
pub struct TextEncoder {
    part: Box<dyn Backend>,
    hidden: usize,
    normalize: bool,
    out: Tensor,
}

impl TextEncoder {
    pub fn load(
        config: &FrontendConfig,
        kind: BackendKind,
        opts: &BackendOptions,
    ) -> Result<TextEncoder, FrontendError> {
        let spec = part_spec(config);
        let part: Box<dyn Backend> = match kind {
            BackendKind::Tract => Box::new(SymbolicTract::load(&spec)?),
            _ => backend::load(kind, &spec, opts)?,
        };
        Ok(TextEncoder {
            part,
            hidden: config.hidden,
            normalize: config.normalize,
            out: Tensor::zeros(&[0]),
        })
    }

    /// What runs the encoder (e.g. "tract (cpu)").
    pub fn provider(&self) -> String {
        self.part.provider()
    }

    /// Replaces the engine part by `f(part)` (tests wrap it to watch its calls).
    #[cfg(test)]
    pub(crate) fn wrap_part(self, f: impl FnOnce(Box<dyn Backend>) -> Box<dyn Backend>) -> TextEncoder {
        TextEncoder {
            part: f(self.part),
            ..self
        }
    }

    /// Readies the engine for calls of `batch` rows of `seq` tokens ahead of time.
    pub fn prepare(&mut self, batch: usize, seq: usize) -> Result<(), FrontendError> {
        Ok(self.part.prepare(Shape { batch, window: 0, seq })?)
    }

    /// Embeddings of the first `out.len() / hidden` rows of `batch` into `out` (row-major).
    pub fn embed(&mut self, batch: &TokenBatch, out: &mut [f32]) -> Result<(), FrontendError> {
        let (rows, seq) = (batch.rows(), batch.seq());
        self.out.set_shape(&[rows, seq, self.hidden]);
        let inputs = [
            Input::I64(&batch.ids),
            Input::I64(&batch.mask),
            Input::I64(&batch.types),
        ];
        self.part.run_typed(&inputs, std::slice::from_mut(&mut self.out))?;
        mean_pool(
            self.out.data(),
            batch.mask.data(),
            seq,
            self.hidden,
            self.normalize,
            out,
        );
        Ok(())
    }
}

/// Mean of `hidden` ([rows, seq, width]) over the positions where `mask` ([rows, seq]) is
/// non-zero, for the first `out.len() / width` rows; then, with `normalize`, each row divided by
/// max(L2 norm, 1e-12) (torch's `F.normalize`). A row with no kept position pools to zeros.
pub fn mean_pool(hidden: &[f32], mask: &[i64], seq: usize, width: usize, normalize: bool, out: &mut [f32]) {
    let mut acc = vec![0f64; width];
    for (r, dst) in out.chunks_exact_mut(width).enumerate() {
        acc.fill(0.0);
        let mut count = 0usize;
        for t in (0..seq).filter(|&t| mask[r * seq + t] != 0) {
            count += 1;
            let at = (r * seq + t) * width;
            for (a, &v) in acc.iter_mut().zip(&hidden[at..at + width]) {
                *a += f64::from(v);
            }
        }
        let n = (count as f64).max(1e-9);
        let norm = if normalize {
            (acc.iter().map(|a| a * a).sum::<f64>().sqrt() / n).max(1e-12)
        } else {
            1.0
        };
        for (d, a) in dst.iter_mut().zip(&acc) {
            *d = (a / n / norm) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_under_the_mask_and_normalises() {
        // 2 rows x 3 positions x width 2; row 0 keeps positions 0 and 1, row 1 only 0.
        let hidden = [1.0, 0.0, 3.0, 0.0, 99.0, 99.0, 0.0, 2.0, 99.0, 99.0, 99.0, 99.0];
        let mask = [1, 1, 0, 1, 0, 0];
        let mut out = [0.0f32; 4];
        mean_pool(&hidden, &mask, 3, 2, false, &mut out);
        assert_eq!(out, [2.0, 0.0, 0.0, 2.0]);
        mean_pool(&hidden, &mask, 3, 2, true, &mut out);
        assert_eq!(out, [1.0, 0.0, 0.0, 1.0]);
        let mut first = [0.0f32; 2];
        mean_pool(&hidden, &mask, 3, 2, false, &mut first);
        assert_eq!(first, [2.0, 0.0], "only the rows out asks for");
    }

    #[test]
    fn an_empty_mask_pools_to_zeros() {
        let mut out = [7.0f32; 2];
        mean_pool(&[1.0, 1.0], &[0], 1, 2, true, &mut out);
        assert_eq!(out, [0.0, 0.0]);
    }
}
