//! The shapes the text frontend calls its encoder at. A batch of texts is padded to the smallest
//! seq bucket that holds its longest row (then `max_tokens`) and to a power-of-two row count
//! (1, 2, 4, 8 with the default `MAX_BATCH`), so the set of shapes is small and known ahead:
//! `shapes` lists every one `call_shape` can give, which is what the frontend warms.

/// Token counts a batch is padded to (then `max_tokens`): steps of 8 up to 32 tokens, where most
/// utterances are (a 20-token transcript runs at 24; at 32 tract took 1.6x the time), coarser
/// above.
pub const SEQ_BUCKETS: [usize; 7] = [8, 16, 24, 32, 48, 64, 96];
/// Most texts in one encoder call. 8, not 16: with tract's one plan for every shape, 16 rows
/// cost more per text than 8 (8.7 vs 7.0 ms for a 20-token transcript, one pinned core), so a
/// burst of 16 runs sooner as two calls of 8 (2 x 56 ms vs 139 ms); ort gains 3 % at 16
/// (docs/BENCHMARKS.md, text frontend).
pub const MAX_BATCH: usize = 8;

/// Seq buckets and the largest batch of one frontend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buckets {
    seq: Vec<usize>,
    max_batch: usize,
}

impl Buckets {
    /// `SEQ_BUCKETS` below `max_tokens`, then `max_tokens`; batches of up to `MAX_BATCH`.
    pub fn new(max_tokens: usize) -> Buckets {
        let mut seq: Vec<usize> = SEQ_BUCKETS.iter().copied().filter(|&b| b < max_tokens).collect();
        seq.push(max_tokens.max(1));
        Buckets {
            seq,
            max_batch: MAX_BATCH,
        }
    }

    /// The seq buckets, ascending (the last is `max_tokens`).
    pub fn seq(&self) -> &[usize] {
        &self.seq
    }

    /// Most texts per encoder call (at least 1).
    pub fn set_max_batch(&mut self, n: usize) {
        self.max_batch = n.max(1);
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// The seq bucket a row of `tokens` tokens runs at.
    pub fn bucket(&self, tokens: usize) -> usize {
        let last = self.seq[self.seq.len() - 1];
        self.seq.iter().copied().find(|&b| b >= tokens).unwrap_or(last)
    }

    /// The (rows, seq) of the encoder call for `n` texts (1..=`max_batch`) whose longest has
    /// `longest` tokens.
    pub fn call_shape(&self, n: usize, longest: usize) -> (usize, usize) {
        let rows = n.clamp(1, self.max_batch).next_power_of_two();
        (rows, self.bucket(longest))
    }

    /// Every (rows, seq) `call_shape` gives for up to `rows` texts per call (at most
    /// `max_batch`), row counts ascending, then seq.
    pub fn shapes(&self, rows: usize) -> Vec<(usize, usize)> {
        let top = self.call_shape(rows, 1).0;
        let counts = std::iter::successors(Some(1usize), |&b| (b < top).then_some(b * 2));
        counts.flat_map(|b| self.seq.iter().map(move |&s| (b, s))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_buckets_end_at_max_tokens() {
        assert_eq!(Buckets::new(128).seq(), &[8, 16, 24, 32, 48, 64, 96, 128]);
        assert_eq!(Buckets::new(40).seq(), &[8, 16, 24, 32, 40]);
        let b = Buckets::new(128);
        assert_eq!((b.bucket(1), b.bucket(20), b.bucket(24), b.bucket(25)), (8, 24, 24, 32));
        assert_eq!((b.bucket(128), b.bucket(500)), (128, 128));
    }

    #[test]
    fn row_counts_round_up_to_powers_of_two() {
        let mut b = Buckets::new(128);
        assert_eq!(b.max_batch(), MAX_BATCH);
        b.set_max_batch(16);
        let rows: Vec<usize> = (1..=16).map(|n| b.call_shape(n, 5).0).collect();
        assert_eq!(rows, [1, 2, 4, 4, 8, 8, 8, 8, 16, 16, 16, 16, 16, 16, 16, 16]);
        let mut capped = b.clone();
        capped.set_max_batch(6);
        assert_eq!((capped.call_shape(5, 5), capped.call_shape(6, 5)), ((8, 8), (8, 8)));
    }

    /// Warming `shapes(max_batch)` covers every call: no (rows, seq) is first met by a transcript.
    #[test]
    fn shapes_hold_every_call_shape_and_nothing_else() {
        for max_batch in [1, 3, 8, 16] {
            let mut b = Buckets::new(128);
            b.set_max_batch(max_batch);
            let warmed = b.shapes(max_batch);
            let mut called: Vec<(usize, usize)> = (1..=max_batch)
                .flat_map(|n| (1..=130).map(move |t| (n, t)))
                .map(|(n, t)| b.call_shape(n, t))
                .collect();
            called.sort_unstable();
            called.dedup();
            assert_eq!(called, warmed, "max_batch {max_batch}");
        }
        let mut b = Buckets::new(128);
        assert_eq!(b.shapes(16).len(), 4 * 8, "capped at MAX_BATCH = 8: 1, 2, 4, 8 rows");
        b.set_max_batch(16);
        assert_eq!(b.shapes(16).len(), 5 * 8);
        assert_eq!(b.shapes(1), b.seq().iter().map(|&s| (1, s)).collect::<Vec<_>>());
        assert_eq!(b.shapes(3).len(), 3 * 8, "1, 2 and 4 rows");
    }
}
