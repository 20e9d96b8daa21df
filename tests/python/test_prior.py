"""The conversation prior at the end of the fusion part (docs/MODEL.md item 12), against a
by-hand computation. Needs PyTorch (python/requirements-train.txt): skipped in CI, where the
golden cases check the exported fusion.onnx, prior included, against its torch outputs."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from gsdnet_torch.model import ConversationPrior  # noqa: E402


def by_hand(logits, mask, gain, temp):
    """logit_1 - logit_0 of node j gains gain * mean over the other valid nodes k of
    tanh((logit_1 - logit_0)_k / temp); padded nodes stay as they are."""
    out = logits.copy()
    for b in range(logits.shape[0]):
        valid = np.flatnonzero(mask[b])
        z = logits[b, :, 1] - logits[b, :, 0]
        for j in valid:
            others = [k for k in valid if k != j]
            ctx = np.mean(np.tanh(z[others] / temp)) if others else 0.0
            out[b, j, 1] += 0.5 * gain * ctx
            out[b, j, 0] -= 0.5 * gain * ctx
    return out


def run(logits, mask, gain, temp):
    prior = ConversationPrior()
    prior.gain.fill_(gain)
    prior.temp.fill_(temp)
    reg = torch.randn(*logits.shape[:2], 1)
    lg, rg = prior(torch.tensor(logits), reg, torch.tensor(mask))
    assert torch.equal(rg, reg)
    return lg.numpy()


def window(seed=0, b=2, w=9, n=(6, 1)):
    rng = np.random.default_rng(seed)
    mask = np.zeros((b, w), np.float32)
    for i, k in enumerate(n):
        mask[i, :k] = 1.0
    logits = rng.normal(0, 2, (b, w, 2)).astype(np.float32) * mask[:, :, None]
    return logits, mask


@pytest.mark.parametrize("gain,temp", [(2.0, 1.0), (3.0, 0.5), (0.5, 4.0)])
def test_matches_by_hand(gain, temp):
    logits, mask = window()
    np.testing.assert_allclose(run(logits, mask, gain, temp), by_hand(logits, mask, gain, temp),
                               atol=1e-5)


def test_gain_zero_is_identity_and_padding_untouched():
    logits, mask = window(1)
    np.testing.assert_array_equal(run(logits, mask, 0.0, 1.0), logits)
    out = run(logits, mask, 3.0, 1.0)
    assert np.all(out[mask == 0] == 0.0)
    np.testing.assert_array_equal(out[1, 0], logits[1, 0])   # a lone utterance has no context


def test_agreeing_neighbours_pull_a_doubtful_utterance():
    logits = np.zeros((1, 4, 2), np.float32)
    logits[0, :3, 1] = 3.0           # three confident positive utterances
    logits[0, 3, 0] = 0.4            # one weakly negative
    out = run(logits, np.ones((1, 4), np.float32), 2.0, 1.0)
    assert out[0, 3, 1] > out[0, 3, 0]


# ---- K > 2: softmax form of the prior (docs/MODEL.md item 12) --------------------------------

def by_hand_softmax(logits, mask, gain, temp):
    """Every logit of node j gains gain * mean over the other valid nodes k of
    (softmax(logits_k / temp) - 1/K)."""
    out = logits.copy()
    kk = logits.shape[-1]
    for b in range(logits.shape[0]):
        valid = np.flatnonzero(mask[b])
        z = logits[b] / temp
        p = np.exp(z - z.max(-1, keepdims=True))
        p = p / p.sum(-1, keepdims=True) - 1.0 / kk
        for j in valid:
            others = [k for k in valid if k != j]
            if others:
                out[b, j] += gain * p[others].mean(0)
    return out


def run_k(logits, mask, gain, temp):
    prior = ConversationPrior(logits.shape[-1])
    prior.gain.fill_(gain)
    prior.temp.fill_(temp)
    lg, rg = prior(torch.tensor(logits), None, torch.tensor(mask))
    assert rg is None
    return lg.numpy()


def window_k(seed=0, k=6, b=2, w=9, n=(7, 1)):
    rng = np.random.default_rng(seed)
    mask = np.zeros((b, w), np.float32)
    for i, m in enumerate(n):
        mask[i, :m] = 1.0
    return rng.normal(0, 2, (b, w, k)).astype(np.float32) * mask[:, :, None], mask


@pytest.mark.parametrize("gain,temp", [(2.0, 1.0), (3.0, 0.5), (0.5, 4.0)])
def test_k_class_prior_matches_by_hand(gain, temp):
    logits, mask = window_k()
    np.testing.assert_allclose(run_k(logits, mask, gain, temp),
                               by_hand_softmax(logits, mask, gain, temp), atol=1e-5)


def test_k_class_gain_zero_is_identity_and_padding_untouched():
    logits, mask = window_k(2, k=4)
    np.testing.assert_array_equal(run_k(logits, mask, 0.0, 1.0), logits)
    out = run_k(logits, mask, 3.0, 1.0)
    assert np.all(out[mask == 0] == 0.0)
    np.testing.assert_array_equal(out[1, 0], logits[1, 0])


def test_softmax_form_at_k2_is_the_binary_form_at_twice_the_temperature():
    """softmax_1 - 1/2 = tanh(z / 2 temp) / 2: the K-class prior generalises the binary one."""
    logits, mask = window(4)
    np.testing.assert_allclose(by_hand_softmax(logits, mask, 2.5, 0.75),
                               by_hand(logits, mask, 2.5, 1.5), atol=1e-6)


def test_k2_prior_is_still_the_binary_form():
    logits, mask = window(5)
    prior = ConversationPrior()
    assert prior.n_classes == 2
    np.testing.assert_allclose(run(logits, mask, 3.0, 0.5), by_hand(logits, mask, 3.0, 0.5),
                               atol=1e-5)
