"""Sampler: noise layout from stream keys, inpainting invariants, analytic point-mass score."""
import numpy as np
import pytest

from gsdnet_ref import rng
from gsdnet_ref.sampler import (Sde, draw_noise, heun_times, inverse_std, marginal_std, sample,
                                stream_key)

W, D, K = 8, 4, 3


def _setup(n=6, seed=0):
    rs = np.random.default_rng(seed)
    h = rs.normal(size=(3, W, D)).astype(np.float32)
    node_mask = np.zeros(W, np.float32)
    node_mask[:n] = 1
    avail = np.zeros((W, 3), np.float32)
    avail[:n] = 1
    avail[:n:2, 1] = 0          # audio missing on every other utterance
    avail[1, 2] = 0
    u = np.linalg.qr(rs.normal(size=(W, K)))[0]
    u[n:] = 0
    lam_obs = rs.uniform(0, 1, size=(3, K)).astype(np.float32)
    cond = h * avail.T[:, :, None] * node_mask[None, :, None]
    return h, cond, avail, node_mask, u, lam_obs


def _point_mass(target, lam_target, sde):
    def s_theta(x, t, adj_t):
        return (-(x - target) / marginal_std(t, sde.sigma_x) ** 2).astype(np.float32)

    def s_phi(lam, t):
        return (-(lam - lam_target) / marginal_std(t, sde.sigma_lambda) ** 2).astype(np.float32)
    return s_theta, s_phi


def test_noise_layout_matches_design_keys():
    key = stream_key(2, 300, "vid", 0)
    assert key == rng.derive(2, 2, 300, rng.fnv1a64("vid"), 0)
    nz = draw_noise(key, 3, W, D, K)
    assert nz.zx.shape == (3, 3, W, D) and nz.zl.shape == (3, 3, K)
    np.testing.assert_array_equal(nz.zx_init, rng.normals_f32(rng.derive(key, 1), (3, W, D)))
    np.testing.assert_array_equal(nz.zl_init, rng.normals_f32(rng.derive(key, 2), (3, K)))
    np.testing.assert_array_equal(nz.zx[2], rng.normals_f32(rng.derive(key, 16, 2), (3, W, D)))
    np.testing.assert_array_equal(nz.zl[1], rng.normals_f32(rng.derive(key, 32, 1), (3, K)))


def test_point_mass_score_recovers_target():
    sde = Sde(25.0, 2.0, 1e-3, 200)
    h, cond, avail, node_mask, u, lam_obs = _setup()
    target = np.full_like(h, 0.7)
    lam_target = np.full_like(lam_obs, 0.3)
    nz = draw_noise(stream_key(0, 500, "pm", 0), sde.steps, W, D, K)
    x0, lam0 = sample(sde, h, cond, avail, node_mask, u, lam_obs,
                      *_point_mass(target, lam_target, sde), nz)
    miss = (avail.T == 0) & (node_mask[None] > 0)
    assert miss.sum() > 0
    np.testing.assert_allclose(x0[miss], 0.7, atol=0.05)
    np.testing.assert_allclose(lam0[1], 0.3, atol=0.05)   # audio not fully observed
    np.testing.assert_array_equal(lam0[0], lam_obs[0])    # text fully observed


def test_inpainting_invariants_and_determinism():
    sde = Sde(25.0, 2.0, 1e-3, 5)
    h, cond, avail, node_mask, u, lam_obs = _setup()
    nz = draw_noise(stream_key(1, 700, "inv", 0), sde.steps, W, D, K)
    fns = _point_mass(np.zeros_like(h), np.zeros_like(lam_obs), sde)
    trace = {}
    x0, lam0 = sample(sde, h, cond, avail, node_mask, u, lam_obs, *fns, nz, trace)
    obs = (avail.T > 0) & (node_mask[None] > 0)
    np.testing.assert_array_equal(x0[obs], h[obs])
    assert np.all(x0[:, node_mask == 0] == 0)
    np.testing.assert_array_equal(lam0[0], lam_obs[0])
    np.testing.assert_array_equal(lam0[2], lam0[2])
    x1, lam1 = sample(sde, h, cond, avail, node_mask, u, lam_obs, *fns, nz)
    np.testing.assert_array_equal(x0, x1)
    np.testing.assert_array_equal(lam0, lam1)
    # step 0 sees observed entries at h + std(1) * zx[0]
    np.testing.assert_allclose(trace["x_t"][obs], (h + np.float32(marginal_std(1.0, 25.0))
                                                   * nz.zx[0])[obs], rtol=1e-6)
    assert trace["adj_t"].shape == (3, W, W)
    np.testing.assert_allclose(trace["adj_t"][0], u @ np.diag(trace["lam_t"][0]) @ u.T,
                               atol=1e-5)


def test_one_step_by_hand():
    sde = Sde(25.0, 2.0, 1e-3, 1)
    h, cond, avail, node_mask, u, lam_obs = _setup()
    nz = draw_noise(stream_key(1, 100, "one", 0), 1, W, D, K)
    const = np.float32(0.25)
    x0, _ = sample(sde, h, cond, avail, node_mask, u, lam_obs,
                   lambda x, t, a: np.full_like(x, const), lambda lam, t: np.zeros_like(lam), nz)
    sx1 = marginal_std(1.0, 25.0)
    x = sx1 * nz.zx_init
    want = x + 25.0 ** 2 * 0.25 * sde.dt
    miss = (avail.T == 0) & (node_mask[None] > 0)
    np.testing.assert_allclose(x0[miss], want[miss], rtol=1e-5)


def test_sde_validation():
    with pytest.raises(ValueError):
        Sde(1.0, 2.0, 1e-3, 5)
    with pytest.raises(ValueError):
        Sde(25.0, 2.0, 0.0, 5)
    assert abs(marginal_std(1.0, 25.0) - np.sqrt((625 - 1) / (2 * np.log(25)))) < 1e-12


def _heun(steps):
    return Sde(25.0, 2.0, 1e-3, steps, "pf_ode_heun_inpaint")


@pytest.mark.parametrize("steps", [2, 8])
def test_heun_point_mass_in_few_steps(steps):
    """For a point mass the ODE path is x(t) = target + (x(1) - target) std(t) / std(1); Heun in
    the std variable reaches it in a few steps (EM needs hundreds for 0.05)."""
    sde = _heun(steps)
    h, cond, avail, node_mask, u, lam_obs = _setup()
    target, lam_target = np.full_like(h, 0.7), np.full_like(lam_obs, 0.3)
    nz = draw_noise(stream_key(0, 500, "pm", 0), sde.noise_steps, W, D, K)
    assert nz.zx.shape[0] == 0
    x0, lam0 = sample(sde, h, cond, avail, node_mask, u, lam_obs,
                      *_point_mass(target, lam_target, sde), nz)
    miss = (avail.T == 0) & (node_mask[None] > 0)
    # x(t) - target scales with std(t); x(1) = std(1) Zx_init
    ex, el = (marginal_std(1e-3, s) / marginal_std(1.0, s) for s in (25.0, 2.0))
    exact_x = target + ex * (marginal_std(1.0, 25.0) * nz.zx_init - target)
    exact_l = lam_target + el * (marginal_std(1.0, 2.0) * nz.zl_init - lam_target)
    np.testing.assert_allclose(x0[miss], exact_x[miss], atol=1e-3)
    np.testing.assert_allclose(lam0[1], exact_l[1], atol=1e-3)
    np.testing.assert_array_equal(lam0[0], lam_obs[0])
    obs = (avail.T > 0) & (node_mask[None] > 0)
    np.testing.assert_array_equal(x0[obs], h[obs])
    assert np.all(x0[:, node_mask == 0] == 0)


def test_heun_one_step_by_hand():
    """Constant score c, one step from std a = std(1) to b = std(eps): x1 = x + (b - a)/2
    (-a c - b c); the second call sees observed entries at h + b Zx_init."""
    sde = _heun(1)
    h, cond, avail, node_mask, u, lam_obs = _setup()
    nz = draw_noise(stream_key(1, 100, "one", 0), 0, W, D, K)
    seen = []

    def s_theta(x, t, a):
        seen.append((float(t), x.copy()))
        return np.full_like(x, 0.25)
    x0, _ = sample(sde, h, cond, avail, node_mask, u, lam_obs, s_theta,
                   lambda lam, t: np.zeros_like(lam), nz)
    assert [t for t, _ in seen] == pytest.approx([1.0, 1e-3], abs=1e-7)
    a, b = marginal_std(1.0, 25.0), marginal_std(1e-3, 25.0)
    obs = (avail.T > 0) & (node_mask[None] > 0)
    np.testing.assert_allclose(seen[1][1][obs], (h + b * nz.zx_init)[obs], rtol=1e-5, atol=1e-6)
    want = a * nz.zx_init + (b - a) / 2 * (-a * 0.25 - b * 0.25)
    miss = (avail.T == 0) & (node_mask[None] > 0)
    np.testing.assert_allclose(x0[miss], want[miss], rtol=1e-5)


def test_heun_times_schedule():
    ts = heun_times(_heun(6))
    assert ts[0] == 1.0 and ts[-1] == 1e-3 and len(ts) == 7
    assert all(a > b for a, b in zip(ts, ts[1:]))
    for t in ts[1:-1]:
        assert abs(marginal_std(inverse_std(marginal_std(t, 25.0), 25.0), 25.0)
                   - marginal_std(t, 25.0)) < 1e-12


def test_unknown_sampler_is_refused():
    with pytest.raises(ValueError, match="unknown sampler"):
        Sde(25.0, 2.0, 1e-3, 5, "ddim")
