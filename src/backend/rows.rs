//! Calls of a part on R rows (windows or completion samples) whatever batch sizes the part
//! takes: a part with a symbolic batch runs at R rounded up to a power of two (at most
//! `MAX_CALL_ROWS` a call), so an engine that specialises per shape builds a handful of plans;
//! a fixed-batch part runs one row at a time. Rows added to fill a call are copies of the
//! chunk's first row (always valid input, so every engine output stays finite) and their
//! outputs are dropped; rows never mix in a part, so the real rows' outputs do not depend on
//! them.

use super::{Axis, Backend, BackendError};
use crate::capacity::MAX_CALL_ROWS;
use crate::tensor::Tensor;

/// Scratch inputs and outputs of calls whose row count differs from the caller's.
#[derive(Default)]
pub struct RowCaller {
    ins: Vec<Tensor>,
    outs: Vec<Tensor>,
}

/// Rows one call of `part` takes for `rows` rows.
pub fn call_rows(part: &dyn Backend, rows: usize) -> usize {
    let batched = part.spec().inputs.iter().any(|s| s.axes.first() == Some(&Axis::Batch));
    if batched {
        rows.next_power_of_two().min(MAX_CALL_ROWS)
    } else {
        1
    }
}

impl RowCaller {
    /// Runs `part` on every row of `inputs` (axis 0 of each is the row axis, all with the same
    /// row count) into `outputs` (shaped by the caller with that row count).
    pub fn run(
        &mut self,
        part: &mut dyn Backend,
        inputs: &[&Tensor],
        outputs: &mut [Tensor],
    ) -> Result<(), BackendError> {
        let rows = inputs.first().map_or(1, |t| t.shape()[0]);
        let call = call_rows(part, rows);
        if call == rows {
            return part.run(inputs, outputs);
        }
        self.ins.resize_with(inputs.len(), || Tensor::zeros(&[0]));
        self.outs.resize_with(outputs.len(), || Tensor::zeros(&[0]));
        let mut start = 0;
        while start < rows {
            let real = call.min(rows - start);
            for (dst, src) in self.ins.iter_mut().zip(inputs) {
                fill_rows(dst, src, start, real, call);
            }
            for (dst, src) in self.outs.iter_mut().zip(outputs.iter()) {
                let mut shape = [0usize; 6];
                let rank = src.shape().len();
                shape[..rank].copy_from_slice(src.shape());
                shape[0] = call;
                dst.set_shape(&shape[..rank]);
            }
            let refs: heapless::Vec<&Tensor, 8> = self.ins.iter().collect();
            part.run(&refs, &mut self.outs)?;
            for (dst, src) in outputs.iter_mut().zip(&self.outs) {
                let per = src.len() / call;
                dst.data_mut()[start * per..(start + real) * per].copy_from_slice(&src.data()[..real * per]);
            }
            start += real;
        }
        Ok(())
    }
}

/// `dst` = rows `start..start + real` of `src`, then copies of row `start` up to `call` rows.
fn fill_rows(dst: &mut Tensor, src: &Tensor, start: usize, real: usize, call: usize) {
    let per = src.len() / src.shape()[0].max(1);
    let mut shape = [0usize; 6];
    let rank = src.shape().len();
    shape[..rank].copy_from_slice(src.shape());
    shape[0] = call;
    dst.set_shape(&shape[..rank]);
    let (out, data) = (dst.data_mut(), src.data());
    out[..real * per].copy_from_slice(&data[start * per..(start + real) * per]);
    for r in real..call {
        out[r * per..(r + 1) * per].copy_from_slice(&data[start * per..(start + 1) * per]);
    }
}
