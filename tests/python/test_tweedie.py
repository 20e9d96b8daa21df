"""Tweedie's posterior mean (`tweedie_posterior_mean`, gsdnet_ref.sampler.sample_tweedie): with
the score of a Gaussian prior N(mu, s^2) noised to std(1), one call gives the exact posterior
mean (s^2 x_1 + std^2 mu) / (s^2 + std^2); observed entries stay exact; a point-mass prior is
recovered exactly (up to f32)."""
import numpy as np

from gsdnet_ref.sampler import TWEEDIE, Sde, draw_noise, marginal_std, sample
from test_sampler import D, K, W, _point_mass, _setup


def test_gaussian_prior_gives_the_posterior_mean():
    sde = Sde(25.0, 2.0, 1e-3, 3, TWEEDIE)
    assert sde.score_calls == 1 and sde.noise_steps == 0
    h, cond, avail, node_mask, u, lam_obs = _setup()
    noise = draw_noise(7, sde.noise_steps, W, D, K)
    mu, s2 = np.float32(0.3), 0.25
    sx2, sl2 = marginal_std(1.0, sde.sigma_x) ** 2, marginal_std(1.0, sde.sigma_lambda) ** 2

    def s_theta(x, t, adj_t):
        assert t == np.float32(1.0)
        return (-(x - mu) / (s2 + sx2)).astype(np.float32)

    def s_phi(lam, t):
        return (-(lam - mu) / (s2 + sl2)).astype(np.float32)
    x0, lam0 = sample(sde, h, cond, avail, node_mask, u, lam_obs, s_theta, s_phi, noise)
    obs = (avail.T * node_mask[None, :]).astype(bool)
    x1 = np.float32(marginal_std(1.0, sde.sigma_x)) * noise.zx_init
    want = (s2 * x1 + sx2 * mu) / (s2 + sx2)
    miss = (~obs) & (node_mask[None, :] > 0)
    np.testing.assert_allclose(x0[miss], want[miss], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(x0[obs], h[obs])
    assert np.all(x0[:, node_mask == 0] == 0)
    full = (avail * node_mask[:, None]).sum(0) >= node_mask.sum()
    np.testing.assert_array_equal(lam0[full], lam_obs[full])


def test_point_mass_is_recovered():
    sde = Sde(25.0, 2.0, 1e-3, 1, TWEEDIE)
    h, cond, avail, node_mask, u, lam_obs = _setup(seed=3)
    target = np.random.default_rng(1).normal(size=h.shape).astype(np.float32)
    lam_t = np.random.default_rng(2).uniform(size=lam_obs.shape).astype(np.float32)
    noise = draw_noise(11, 0, W, D, K)
    x0, lam0 = sample(sde, h, cond, avail, node_mask, u, lam_obs, *_point_mass(target, lam_t, sde),
                      noise)
    miss = ~(avail.T * node_mask[None, :]).astype(bool) & (node_mask[None, :] > 0)
    np.testing.assert_allclose(x0[miss], target[miss], atol=2e-5)
    full = (avail * node_mask[:, None]).sum(0) >= node_mask.sum()
    np.testing.assert_allclose(lam0[~full], lam_t[~full], atol=1e-5)
