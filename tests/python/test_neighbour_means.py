"""The fusion's neighbour means (`train --nb-means`, docs/MODEL.md "IEMOCAP" item 8): per
modality the mean of the structural neighbours' observed latents, missing neighbours left out,
and the observed share of the weight; without their weights the fusion is the plain one.
The merge and the ONNX export with them: tests/python/test_members.py. Needs torch:
skipped without it."""
import pytest

torch = pytest.importorskip("torch")
from gsdnet_torch.model import NB_EPS, Fusion  # noqa: E402

W, D = 8, 4


def test_neighbour_means_leave_missing_neighbours_out():
    """Three nodes on a path with self loops (weights by hand); node 1 lacks text, node 2
    lacks audio. Node 0's text mean is its own text (its neighbour 1 has none), node 1's
    audio mean the weighted mean of nodes 0 and 1, and the shares are the observed weight."""
    f = Fusion(d=2, hid=4, m=2, n_classes=3, regression=False, nb_means=True).eval()
    x = torch.tensor([[[1.0, 2.0], [5.0, 6.0], [3.0, 4.0]],          # text of nodes 0, 1, 2
                      [[-1.0, 0.0], [0.0, -2.0], [9.0, 9.0]]])[None]  # audio
    avail = torch.tensor([[[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]]])      # [B,W,M]
    x_obs = x * avail.permute(0, 2, 1)[..., None]
    a = torch.tensor([[[0.5, 0.5, 0.0], [0.25, 0.5, 0.25], [0.0, 0.5, 0.5]]])
    out = f._neighbour_means(x_obs, avail, a)[0]                      # [W, 2d + 2]
    text, audio, share = out[:, :2], out[:, 2:4], out[:, 4:]
    torch.testing.assert_close(text[0], torch.tensor([1.0, 2.0]) * 0.5 / (0.5 + NB_EPS))
    want1 = (0.25 * torch.tensor([1.0, 2.0]) + 0.25 * torch.tensor([3.0, 4.0])) / (0.5 + NB_EPS)
    torch.testing.assert_close(text[1], want1)
    want_a1 = (0.25 * torch.tensor([-1.0, 0.0]) + 0.5 * torch.tensor([0.0, -2.0])) / (0.75 + NB_EPS)
    torch.testing.assert_close(audio[1], want_a1)
    torch.testing.assert_close(audio[2], torch.tensor([0.0, -2.0]) * 0.5 / (0.5 + NB_EPS))
    torch.testing.assert_close(share, torch.tensor([[0.5, 1.0], [0.5, 0.75], [0.5, 0.5]])
                               / (1.0 + NB_EPS))
    # a node whose neighbours all lack a modality reads zeros for it, not a division by zero
    none = f._neighbour_means(x_obs * 0, avail * 0, a)
    assert torch.isfinite(none).all() and none.abs().max() == 0


def test_neighbour_means_change_the_logits_only_through_their_weights():
    torch.manual_seed(0)
    f = Fusion(d=D, hid=8, m=2, n_classes=4, regression=False, nb_means=True).eval()
    x = torch.randn(1, 2, W, D)
    avail = (torch.rand(1, W, 2) > 0.4).float()
    adj = torch.rand(1, 2, W, W)
    nm = torch.ones(1, W)
    with torch.no_grad():
        on = f(x, avail, adj, nm)[0]
        f.inp_nb.weight.zero_()
        off = f(x, avail, adj, nm)[0]
        plain = Fusion(d=D, hid=8, m=2, n_classes=4, regression=False)
        plain.load_state_dict({k: v for k, v in f.state_dict().items() if not k.startswith("inp_nb")})
        torch.testing.assert_close(off, plain.eval()(x, avail, adj, nm)[0])
    assert (on - off).abs().max() > 1e-3

