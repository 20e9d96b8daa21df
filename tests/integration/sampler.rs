//! Sampler unit tests with mock score networks whose exact score is known: the data
//! distribution is N(MU, S0^2) per entry, so the VE score at time t is
//! -(x - MU) / (S0^2 + std(t)^2): the reverse SDE must produce samples of that law, and the
//! probability-flow ODE must follow its closed-form path sample by sample.

use gsdnet_edge::backend::{Backend, BackendError, PartSpec, TensorSpec};
use gsdnet_edge::diffusion::{
    heun_time, BatchNoise, Condition, Draw, NoiseSource, RecordedNoise, Sampler, SamplerKind, SdeParams, SeededNoise,
    Ve,
};
use gsdnet_edge::spectral::GraphSettings;
use gsdnet_edge::spectral::Spectral;
use gsdnet_edge::tensor::Tensor;

const MU: f32 = 0.7;
const S0: f32 = 0.5;
const W: usize = 6;
const D: usize = 2;
const K: usize = 3;

/// Gaussian score on its first input; input 1 is t. Records every t it sees.
struct GaussScore {
    spec: PartSpec,
    ve: Ve,
    ts: Vec<f32>,
}

impl GaussScore {
    fn new(name: &str, shape: &[usize], n_inputs: usize, ve: Ve) -> Self {
        let spec = PartSpec {
            name: name.into(),
            path: "mock".into(),
            inputs: (0..n_inputs)
                .map(|i| TensorSpec::fixed(&format!("in{i}"), &[]))
                .collect(),
            outputs: vec![TensorSpec::fixed("score", shape)],
        };
        GaussScore {
            spec,
            ve,
            ts: Vec::new(),
        }
    }
}

impl Backend for GaussScore {
    fn spec(&self) -> &PartSpec {
        &self.spec
    }
    fn provider(&self) -> String {
        "mock".into()
    }
    fn run(&mut self, inputs: &[&Tensor], outputs: &mut [Tensor]) -> Result<(), BackendError> {
        assert_eq!(inputs.len(), self.spec.inputs.len());
        let t = inputs[1].data()[0];
        self.ts.push(t);
        let var = S0 * S0 + self.ve.std(f64::from(t)).powi(2) as f32;
        for (o, x) in outputs[0].data_mut().iter_mut().zip(inputs[0].data()) {
            *o = -(x - MU) / var;
        }
        Ok(())
    }
}

struct Fixture {
    h: Tensor,
    cond: Tensor,
    avail: Tensor,
    node_mask: Tensor,
    u: Tensor,
    lam_obs: Tensor,
    spectral: Spectral,
}

/// N = 5 valid nodes; text fully observed, audio missing on nodes 1 and 3, visual on node 0.
fn fixture() -> Fixture {
    let n = 5;
    let mut avail = vec![0f32; W * 3];
    for i in 0..n {
        avail[i * 3] = 1.0;
        avail[i * 3 + 1] = if i == 1 || i == 3 { 0.0 } else { 1.0 };
        avail[i * 3 + 2] = if i == 0 { 0.0 } else { 1.0 };
    }
    let mut node_mask = vec![0f32; W];
    node_mask[..n].fill(1.0);
    let h: Vec<f32> = (0..3 * W * D).map(|j| (j as f32 * 0.37).sin()).collect();
    let cond: Vec<f32> = (0..3 * W * D)
        .map(|j| {
            let (m, i) = (j / (W * D), (j / D) % W);
            h[j] * avail[i * 3 + m] * node_mask[i]
        })
        .collect();
    let mut spectral = Spectral::new(W, K);
    spectral
        .rebuild(
            &[0, 1, 0, 0, 1],
            &GraphSettings {
                window_same: 2,
                window_other: 1,
            },
        )
        .unwrap();
    let mut lam_obs = vec![0f32; 3 * K];
    spectral.spectrum(&cond, W, D, &mut [0.0; D], &mut lam_obs);
    Fixture {
        h: Tensor::from_vec(&[1, 3, W, D], h).unwrap(),
        cond: Tensor::from_vec(&[1, 3, W, D], cond).unwrap(),
        avail: Tensor::from_vec(&[1, W, 3], avail).unwrap(),
        node_mask: Tensor::from_vec(&[1, W], node_mask).unwrap(),
        u: Tensor::from_vec(&[1, W, K], spectral.u.clone()).unwrap(),
        lam_obs: Tensor::from_vec(&[1, 3, K], lam_obs).unwrap(),
        spectral,
    }
}

fn params(steps: usize) -> SdeParams {
    SdeParams {
        x: Ve { sigma: 25.0 },
        lam: Ve { sigma: 2.0 },
        eps: 1e-3,
        steps,
        kind: SamplerKind::EulerMaruyama,
    }
}

fn heun(steps: usize) -> SdeParams {
    SdeParams {
        kind: SamplerKind::PfOdeHeun,
        ..params(steps)
    }
}

impl Fixture {
    fn condition(&self) -> Condition<'_> {
        Condition {
            h: &self.h,
            cond: &self.cond,
            avail: &self.avail,
            node_mask: &self.node_mask,
            u: &self.u,
            lam_obs: &self.lam_obs,
            spectra: std::slice::from_ref(&self.spectral),
            graph_of: &[0],
        }
    }
}

fn run(f: &Fixture, p: &SdeParams, noise: &mut dyn BatchNoise) -> (Tensor, Tensor, Vec<f32>) {
    let c = f.condition();
    let mut st = GaussScore::new("s_theta", &[1, 3, W, D], 6, p.x);
    let mut sp = GaussScore::new("s_phi", &[1, 3, K], 7, p.lam);
    let mut sampler = Sampler::new(3, W, D, K);
    let (mut x0, mut lam0) = (Tensor::zeros(&[1, 3, W, D]), Tensor::zeros(&[1, 3, K]));
    sampler
        .run(p, &c, [&mut st, &mut sp], noise, [&mut x0, &mut lam0])
        .unwrap();
    assert_eq!(st.ts.len(), p.kind.score_calls(p.steps));
    assert_eq!(sp.ts, st.ts);
    (x0, lam0, st.ts)
}

fn missing_rows(f: &Fixture) -> Vec<(usize, usize)> {
    let (a, nm) = (f.avail.data(), f.node_mask.data());
    (0..3)
        .flat_map(|m| (0..W).map(move |i| (m, i)))
        .filter(|&(m, i)| nm[i] > 0.5 && a[i * 3 + m] < 0.5)
        .collect()
}

#[test]
fn observed_entries_exact_padding_zero_full_spectra_kept() {
    let f = fixture();
    let (x0, lam0, ts) = run(&f, &params(10), &mut SeededNoise::from_key(5));
    let (a, nm) = (f.avail.data(), f.node_mask.data());
    for m in 0..3 {
        for i in 0..W {
            let row = (m * W + i) * D;
            let got = &x0.data()[row..row + D];
            if nm[i] < 0.5 {
                assert!(got.iter().all(|&v| v == 0.0), "padded row {i} not zero");
            } else if a[i * 3 + m] > 0.5 {
                assert_eq!(got, &f.h.data()[row..row + D], "observed ({m},{i}) changed");
            }
        }
    }
    // Text is fully observed: its spectrum is lam_obs exactly; audio and visual are sampled.
    assert_eq!(&lam0.data()[..K], &f.lam_obs.data()[..K]);
    assert_ne!(&lam0.data()[K..2 * K], &f.lam_obs.data()[K..2 * K]);
    // t_i = 1 - i (1 - eps) / S.
    assert!((ts[0] - 1.0).abs() < 1e-7);
    assert!((ts[9] - (1.0 - 9.0 * 0.999 / 10.0) as f32).abs() < 1e-6);
}

#[test]
fn samples_follow_the_data_distribution() {
    let f = fixture();
    let rows = missing_rows(&f);
    let mut vals = Vec::new();
    for seed in 0..150 {
        let (x0, _, _) = run(&f, &params(200), &mut SeededNoise::for_window(seed, 300, "conv", 0));
        for &(m, i) in &rows {
            let row = (m * W + i) * D;
            vals.extend_from_slice(&x0.data()[row..row + D]);
        }
    }
    let n = vals.len() as f32;
    let mean = vals.iter().sum::<f32>() / n;
    let std = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n).sqrt();
    assert!((mean - MU).abs() < 0.05, "mean {mean}, want {MU} ({n} samples)");
    assert!((std - S0).abs() < 0.06, "std {std}, want {S0}");
}

/// Records what a seeded source hands out, to replay it.
struct Tap<'a> {
    inner: SeededNoise,
    log: &'a mut Vec<(Draw, Vec<f32>)>,
}

impl NoiseSource for Tap<'_> {
    fn fill(&mut self, draw: Draw, out: &mut [f32]) -> Result<(), gsdnet_edge::diffusion::NoiseError> {
        self.inner.fill(draw, out)?;
        self.log.push((draw, out.to_vec()));
        Ok(())
    }
}

#[test]
fn recorded_noise_replays_seeded_noise() {
    let f = fixture();
    let p = params(4);
    let mut log = Vec::new();
    let (x_a, l_a, _) = run(
        &f,
        &p,
        &mut Tap {
            inner: SeededNoise::from_key(9),
            log: &mut log,
        },
    );
    let pick =
        |d: fn(&Draw) -> bool| -> Vec<f32> { log.iter().filter(|(k, _)| d(k)).flat_map(|(_, v)| v.clone()).collect() };
    let mut rec = RecordedNoise {
        zx_init: pick(|d| *d == Draw::XInit),
        zl_init: pick(|d| *d == Draw::LamInit),
        zx: pick(|d| matches!(d, Draw::X(_))),
        zl: pick(|d| matches!(d, Draw::Lam(_))),
        steps: 4,
    };
    let (x_b, l_b, _) = run(&f, &p, &mut rec.clone());
    assert_eq!(x_a, x_b);
    assert_eq!(l_a, l_b);
    // Too few recorded steps is an error, not a panic.
    let c = f.condition();
    let mut st = GaussScore::new("s_theta", &[1, 3, W, D], 6, p.x);
    let mut sp = GaussScore::new("s_phi", &[1, 3, K], 7, p.lam);
    let (mut x0, mut lam0) = (Tensor::zeros(&[1, 3, W, D]), Tensor::zeros(&[1, 3, K]));
    rec.steps = 3;
    let err = Sampler::new(3, W, D, K)
        .run(&params(5), &c, [&mut st, &mut sp], &mut rec, [&mut x0, &mut lam0])
        .unwrap_err();
    assert!(err.to_string().contains("steps"), "{err}");
}

#[test]
fn seeded_streams_follow_design_keys() {
    use gsdnet_edge::rng;
    let k = rng::derive(1, &[2, 1003, rng::fnv1a64("vid"), 0]);
    let mut a = vec![0f32; 10];
    SeededNoise::for_window(1, 1003, "vid", 0)
        .fill(Draw::X(7), &mut a)
        .unwrap();
    let mut b = vec![0f32; 10];
    rng::fill_normals(rng::derive(k, &[16, 7]), &mut b);
    assert_eq!(a, b);
    SeededNoise::from_key(k).fill(Draw::LamInit, &mut a).unwrap();
    rng::fill_normals(rng::derive(k, &[2]), &mut b);
    assert_eq!(a, b);
}

/// The ODE path of Gaussian data N(MU, S0^2) from x(1): MU + (x(1) - MU) sqrt(v(eps) / v(1)),
/// v(t) = S0^2 + std(t)^2.
fn ode_path(x1: f64, ve: Ve, eps: f64) -> f64 {
    let v = |t: f64| f64::from(S0 * S0) + ve.std(t).powi(2);
    f64::from(MU) + (x1 - f64::from(MU)) * (v(eps) / v(1.0)).sqrt()
}

#[test]
fn heun_follows_the_closed_form_ode_path() {
    let f = fixture();
    let mut errs = Vec::new();
    for steps in [8, 24] {
        let p = heun(steps);
        let mut zx = vec![0f32; 3 * W * D];
        SeededNoise::from_key(77).fill(Draw::XInit, &mut zx).unwrap();
        let (x0, _, ts) = run(&f, &p, &mut SeededNoise::from_key(77));
        let mut worst = 0f64;
        for &(m, i) in &missing_rows(&f) {
            let rows = (m * W + i) * D..(m * W + i + 1) * D;
            for (&z, &got) in zx[rows.clone()].iter().zip(&x0.data()[rows]) {
                let x1 = p.x.std(1.0) * f64::from(z);
                worst = worst.max((f64::from(got) - ode_path(x1, p.x, p.eps)).abs());
            }
        }
        // |x(1) - MU| reaches ~30: 8 steps stay within 0.1 of the exact path, 24 within 0.01.
        let tol = if steps == 8 { 0.1 } else { 0.01 };
        assert!(worst < tol, "{steps} steps: worst error {worst}");
        errs.push(worst);
        // Calls at t_0, t_1, t_1, t_2, ..., t_S: two per step, the corrector at the next time.
        let want: Vec<f32> = (0..steps)
            .flat_map(|i| [heun_time(&p, i), heun_time(&p, i + 1)])
            .map(|t| t as f32)
            .collect();
        assert_eq!(ts, want);
    }
    // Second order: 3x the steps cuts the error by about 9 (first order would give 3).
    assert!(errs[1] < errs[0] / 6.0, "{errs:?}");
}

#[test]
fn heun_schedule_is_monotone_from_one_to_eps() {
    let p = heun(6);
    let ts: Vec<f64> = (0..=6).map(|i| heun_time(&p, i)).collect();
    assert_eq!((ts[0], ts[6]), (1.0, 1e-3));
    assert!(ts.windows(2).all(|w| w[0] > w[1]), "{ts:?}");
    // std_x(t_i)^(1/7) is evenly spaced.
    let r: Vec<f64> = ts.iter().map(|&t| p.x.std(t).powf(1.0 / 7.0)).collect();
    let step = r[1] - r[0];
    assert!(r.windows(2).all(|w| ((w[1] - w[0]) - step).abs() < 1e-9), "{r:?}");
}

#[test]
fn heun_draws_only_the_initial_noise() {
    let f = fixture();
    let mut log = Vec::new();
    let (x_a, l_a, _) = run(
        &f,
        &heun(3),
        &mut Tap {
            inner: SeededNoise::from_key(4),
            log: &mut log,
        },
    );
    let draws: Vec<Draw> = log.iter().map(|(d, _)| *d).collect();
    assert_eq!(draws, [Draw::XInit, Draw::LamInit]);
    let mut rec = RecordedNoise {
        zx_init: log[0].1.clone(),
        zl_init: log[1].1.clone(),
        zx: vec![],
        zl: vec![],
        steps: 0,
    };
    let (x_b, l_b, _) = run(&f, &heun(3), &mut rec);
    assert_eq!((x_a, l_a), (x_b, l_b));
}

#[test]
fn sampler_names_parse_and_print() {
    for k in SamplerKind::ALL {
        assert_eq!(k.name().parse::<SamplerKind>(), Ok(k));
    }
    assert_eq!("heun".parse::<SamplerKind>(), Ok(SamplerKind::PfOdeHeun));
    assert!("ddim".parse::<SamplerKind>().unwrap_err().contains("unknown sampler"));
}

#[test]
fn sample_streams_derive_from_the_window_key() {
    use gsdnet_edge::diffusion::{sample_key, NoiseError};
    use gsdnet_edge::rng;
    let k = 0x1234_5678_9ABC_DEF0;
    assert_eq!(sample_key(k, 0), k, "sample 0 is the window's own stream");
    assert_eq!(sample_key(k, 3), rng::derive(k, &[64, 3]));
    let mut a = SeededNoise::from_key(k);
    let (mut x, mut y) = ([0f32; 6], [0f32; 6]);
    a.select_sample(2).unwrap();
    a.fill(Draw::XInit, &mut x).unwrap();
    SeededNoise::from_key(sample_key(k, 2))
        .fill(Draw::XInit, &mut y)
        .unwrap();
    assert_eq!(x, y);
    a.select_sample(0).unwrap();
    a.fill(Draw::XInit, &mut x).unwrap();
    SeededNoise::from_key(k).fill(Draw::XInit, &mut y).unwrap();
    assert_eq!(x, y, "selecting sample 0 returns to the window's stream");
    let mut rec = RecordedNoise {
        zx_init: vec![],
        zl_init: vec![],
        zx: vec![],
        zl: vec![],
        steps: 0,
    };
    assert!(rec.select_sample(0).is_ok());
    assert_eq!(rec.select_sample(1), Err(NoiseError::NoSuchSample { sample: 1 }));
}
