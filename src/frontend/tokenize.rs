//! Tokenisation of transcripts with the frontend's `tokenizer.json` (the `tokenizers` crate,
//! the same library sentence-transformers uses): BERT WordPiece with [CLS] / [SEP], truncated to
//! `max_tokens` tokens including both, no padding of its own. `TokenBatch` pads a batch to one
//! length with [PAD] (attention mask 0), as the encoder takes it.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationParams};

use super::FrontendError;
use crate::tensor::TensorI64;

/// The padding token of BERT vocabularies.
pub const PAD_TOKEN: &str = "[PAD]";

/// A loaded tokenizer with the frontend's truncation.
pub struct TextTokenizer {
    inner: Tokenizer,
    pad_id: u32,
    max_tokens: usize,
}

impl TextTokenizer {
    /// Loads `path` (tokenizer.json) and sets truncation to `max_tokens`; its own padding is
    /// switched off (a batch is padded to its bucket instead).
    pub fn load(path: &Path, max_tokens: usize) -> Result<TextTokenizer, FrontendError> {
        let err = |detail: String| FrontendError::Tokenizer {
            path: path.to_path_buf(),
            detail,
        };
        let mut inner = Tokenizer::from_file(path).map_err(|e| err(e.to_string()))?;
        let truncation = TruncationParams {
            max_length: max_tokens,
            ..TruncationParams::default()
        };
        inner
            .with_truncation(Some(truncation))
            .map_err(|e| err(e.to_string()))?;
        inner.with_padding(None);
        let pad_id = inner
            .token_to_id(PAD_TOKEN)
            .ok_or_else(|| err(format!("no {PAD_TOKEN} token")))?;
        Ok(TextTokenizer {
            inner,
            pad_id,
            max_tokens,
        })
    }

    /// Token ids of `text`, [CLS] and [SEP] included, at most `max_tokens` of them.
    pub fn ids(&self, text: &str) -> Result<Vec<u32>, FrontendError> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| FrontendError::Tokenize { detail: e.to_string() })?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }
}

/// Token rows padded to one length: ids, attention mask (1 token, 0 padding) and token types
/// (all 0), each int64 [rows, seq].
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBatch {
    pub ids: TensorI64,
    pub mask: TensorI64,
    pub types: TensorI64,
}

impl TokenBatch {
    /// Pads `rows` (each non-empty, at most `seq` long) with `pad_id` to `seq` tokens, and to
    /// `batch` rows by repeating the first row (filler rows' outputs are dropped by the caller;
    /// rows never mix in the encoder).
    pub fn pad(rows: &[Vec<u32>], seq: usize, batch: usize, pad_id: u32) -> TokenBatch {
        debug_assert!(!rows.is_empty() && batch >= rows.len());
        let shape = [batch, seq];
        let (mut ids, mut mask) = (TensorI64::zeros(&shape), TensorI64::zeros(&shape));
        ids.data_mut().fill(i64::from(pad_id));
        let filler = rows.iter().cycle().take(1).cycle();
        for (r, row) in rows.iter().chain(filler).take(batch).enumerate() {
            for (t, &id) in row.iter().take(seq).enumerate() {
                ids.data_mut()[r * seq + t] = i64::from(id);
                mask.data_mut()[r * seq + t] = 1;
            }
        }
        TokenBatch {
            ids,
            mask,
            types: TensorI64::zeros(&shape),
        }
    }

    pub fn rows(&self) -> usize {
        self.ids.shape()[0]
    }

    pub fn seq(&self) -> usize {
        self.ids.shape()[1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_fills_ids_mask_and_filler_rows() {
        let b = TokenBatch::pad(&[vec![101, 7, 102], vec![101, 102]], 4, 3, 0);
        assert_eq!(b.ids.shape(), &[3, 4]);
        assert_eq!(b.ids.data(), &[101, 7, 102, 0, 101, 102, 0, 0, 101, 7, 102, 0]);
        assert_eq!(b.mask.data(), &[1, 1, 1, 0, 1, 1, 0, 0, 1, 1, 1, 0]);
        assert!(b.types.data().iter().all(|&t| t == 0));
        assert_eq!((b.rows(), b.seq()), (3, 4));
    }
}
