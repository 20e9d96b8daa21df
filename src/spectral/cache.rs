//! The graph cache of a pipeline: the last graphs and eigenpairs built, by speaker sequence.

use super::{GraphSettings, Spectral, SpectralError};

/// The last graphs built, by speaker sequence. A window's graph and eigenpairs are a pure
/// function of its speakers and the manifest's `[graph]` (one cache serves one manifest), so a
/// repeated sequence (every window of a monologue of the same length, a sliding window that
/// has filled W) is copied instead of decomposed. Round-robin replacement; storage is kept.
pub struct GraphCache {
    entries: Vec<(Vec<u32>, Spectral)>,
    capacity: usize,
    next: usize,
}

impl GraphCache {
    pub fn new(capacity: usize) -> Self {
        GraphCache {
            entries: Vec::new(),
            capacity: capacity.max(1),
            next: 0,
        }
    }

    /// Makes `out` the graph of a window with `speakers`: the cached one, else rebuilt.
    pub fn build(&mut self, speakers: &[u32], g: &GraphSettings, out: &mut Spectral) -> Result<(), SpectralError> {
        if let Some((_, hit)) = self.entries.iter().find(|(s, _)| s.as_slice() == speakers) {
            out.copy_from(hit);
            return Ok(());
        }
        out.rebuild(speakers, g)?;
        if self.entries.len() < self.capacity {
            self.entries.push((speakers.to_vec(), out.clone()));
        } else {
            let (key, graph) = &mut self.entries[self.next];
            key.clear();
            key.extend_from_slice(speakers);
            graph.copy_from(out);
            self.next = (self.next + 1) % self.capacity;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::G;
    use super::*;

    #[test]
    fn cached_graphs_equal_rebuilt_ones() {
        let mut cache = GraphCache::new(2);
        let (mut got, mut want) = (Spectral::new(8, 4), Spectral::new(8, 4));
        for speakers in [
            &[0, 1, 0][..],
            &[0, 0, 1, 1, 0],
            &[0, 1, 0],
            &[1, 1],
            &[0, 0, 1, 1, 0],
            &[0, 1, 0],
        ] {
            cache.build(speakers, &G, &mut got).unwrap();
            want.rebuild(speakers, &G).unwrap();
            assert_eq!(
                (got.n, &got.adj, &got.u, &got.ut, &got.u64, &got.eig),
                (want.n, &want.adj, &want.u, &want.ut, &want.u64, &want.eig)
            );
        }
        assert_eq!(cache.entries.len(), 2);
        assert!(cache.build(&[0; 9], &G, &mut got).is_err());
    }
}
