//! Counter-based random numbers shared bit-for-bit with `python/gsdnet_ref/rng.py`.
//!
//! Owns the DESIGN.md "Random numbers" contract: SplitMix64's finaliser applied to a counter,
//! key derivation from a seed and a path of labels, open-interval uniforms and Box-Muller
//! normals (computed in f64, cast to f32). Every value is a pure function of (key, index), so
//! draws never depend on call order or thread.

/// Weyl increment of SplitMix64.
pub const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
/// Salt xored into a seed before derivation.
pub const SEED_SALT: u64 = 0x6A09_E667_F3BC_C909;

/// SplitMix64 finaliser (wrapping u64).
pub fn mix64(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Stream key for `seed` and a path of integer labels.
pub fn derive(seed: u64, labels: &[u64]) -> u64 {
    labels
        .iter()
        .fold(mix64(seed ^ SEED_SALT), |k, &l| mix64(k.wrapping_add(GAMMA) ^ l))
}

/// FNV-1a 64 over the UTF-8 bytes of `s` (conversation ids in stream keys).
pub fn fnv1a64(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

/// Value `j` of stream `key`.
pub fn raw(key: u64, j: u64) -> u64 {
    mix64(key.wrapping_add(j.wrapping_add(1).wrapping_mul(GAMMA)))
}

/// Uniform `j` of stream `key`, in the open interval (0, 1).
pub fn uniform(key: u64, j: u64) -> f64 {
    ((raw(key, j) >> 11) as f64 + 0.5) * (1.0 / 9_007_199_254_740_992.0)
}

/// Fills `out` with uniforms 0..out.len() of stream `key`.
pub fn fill_uniforms(key: u64, out: &mut [f64]) {
    for (j, v) in out.iter_mut().enumerate() {
        *v = uniform(key, j as u64);
    }
}

/// Normal pair `p` of stream `key` by Box-Muller on uniforms 2p and 2p+1.
fn normal_pair(key: u64, p: u64) -> (f64, f64) {
    let u1 = uniform(key, 2 * p);
    let u2 = uniform(key, 2 * p + 1);
    let r = (-2.0 * u1.ln()).sqrt();
    let a = 2.0 * std::f64::consts::PI * u2;
    (r * a.cos(), r * a.sin())
}

/// Fills `out` with normals 0..out.len() of stream `key` (f64 maths, cast to f32). An odd
/// length drops the last sine, as the reference does.
pub fn fill_normals(key: u64, out: &mut [f32]) {
    let mut chunks = out.chunks_exact_mut(2);
    let mut p = 0u64;
    for pair in &mut chunks {
        let (c, s) = normal_pair(key, p);
        pair[0] = c as f32;
        pair[1] = s as f32;
        p += 1;
    }
    if let [last] = chunks.into_remainder() {
        *last = normal_pair(key, p).0 as f32;
    }
}

/// Normals 0..n of stream `key` in f64 (for tests and tools; the runtime uses `fill_normals`).
pub fn normals_f64(key: u64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let (c, s) = normal_pair(key, (i / 2) as u64);
            if i % 2 == 0 {
                c
            } else {
                s
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_length_uses_cosine_of_last_pair() {
        let mut a = [0f32; 3];
        fill_normals(42, &mut a);
        let b = normals_f64(42, 4);
        assert_eq!(a[2], b[2] as f32);
        assert_eq!(a[1], b[1] as f32);
    }

    #[test]
    fn uniforms_are_in_open_interval() {
        let mut u = [0f64; 1000];
        fill_uniforms(7, &mut u);
        assert!(u.iter().all(|&v| v > 0.0 && v < 1.0));
    }
}
