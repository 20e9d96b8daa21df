"""The conversation prior at the end of the fusion part (docs/MODEL.md item 12), against a
by-hand computation. Needs PyTorch (scripts/requirements-train.txt): skipped in CI, where the
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
