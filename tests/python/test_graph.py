"""Graph and spectrum: symmetry, sorting, sign rule, padding, speaker edges, NaN rejection."""
import numpy as np
import pytest

from gsdnet_ref import graph


def test_structural_adjacency_windows_and_speakers():
    spk = np.array([0, 0, 1, 1, 0, 2])
    a = graph.structural_adjacency(spk, 8, window_same=3, window_other=1)
    assert a.shape == (8, 8) and np.allclose(a, a.T)
    assert np.all(np.diag(a) == 0) and np.all(a[6:] == 0) and np.all(a[:, 6:] == 0)
    assert a[0, 4] == 0  # same speaker at distance 4 > 3
    assert a[1, 4] == 1  # same speaker at distance 3
    assert a[0, 2] == 0  # other speaker at distance 2 > 1
    assert a[1, 2] == 1  # other speaker at distance 1


def test_normalise_matches_formula_and_pads():
    spk = np.zeros(5, int)
    a = graph.structural_adjacency(spk, 7, 1, 1)
    an = graph.normalise(a, 5)
    b = a[:5, :5] + np.eye(5)
    d = b.sum(1)
    np.testing.assert_allclose(an[:5, :5], b / np.sqrt(np.outer(d, d)))
    assert np.all(an[5:] == 0) and np.all(an[:, 5:] == 0)
    assert np.allclose(an, an.T)


def test_top_eigen_sorted_signed_padded():
    spk = np.array([0, 1, 0, 1, 0, 1, 2, 2, 0])
    a, u, eig = graph.build_graph(spk, 12, 16, 4, 2)
    n = len(spk)
    assert u.shape == (12, 16) and eig.shape == (16,)
    assert np.all(np.diff(eig[:n]) <= 1e-12)
    assert np.all(eig[n:] == 0) and np.all(u[n:] == 0) and np.all(u[:, n:] == 0)
    np.testing.assert_allclose(u[:n, :n].T @ u[:n, :n], np.eye(n), atol=1e-10)
    np.testing.assert_allclose(u[:n, :n] @ np.diag(eig[:n]) @ u[:n, :n].T, a[:n, :n], atol=1e-10)
    for j in range(n):
        first = np.nonzero(np.abs(u[:n, j]) > graph.SIGN_EPS)[0][0]
        assert u[first, j] > 0


def test_top_eigen_truncates_to_k():
    a, u, eig = graph.build_graph(np.zeros(20, int), 24, 5, 3, 3)
    _, full_u, full_eig = graph.build_graph(np.zeros(20, int), 24, 20, 3, 3)
    np.testing.assert_allclose(eig, full_eig[:5])
    np.testing.assert_allclose(u, full_u[:, :5])


def test_rejects_non_finite_and_asymmetric():
    a = np.eye(4)
    a[1, 2] = np.nan
    with pytest.raises(ValueError):
        graph.top_eigen(a, 4, 2)
    with pytest.raises(ValueError):
        graph.normalise(a, 4)
    b = np.eye(4)
    b[0, 1] = 1.0
    with pytest.raises(ValueError):
        graph.top_eigen(b, 4, 2)


def test_spectrum_is_rayleigh_quotient_of_cosine_similarity():
    rs = np.random.default_rng(0)
    w, n, k, d = 10, 7, 4, 5
    _, u, _ = graph.build_graph(np.zeros(n, int), w, k, 2, 2)
    h = rs.normal(size=(3, w, d))
    mask = np.zeros(w)
    mask[:n] = 1
    lam = graph.spectrum(h, u, mask)
    for m in range(3):
        hn = h[m, :n] / np.linalg.norm(h[m, :n], axis=1, keepdims=True)
        s = hn @ hn.T
        want = np.array([u[:n, j] @ s @ u[:n, j] for j in range(k)]) / n
        np.testing.assert_allclose(lam[m], want, atol=1e-12)
    h[0, 3] = 0.0  # a zero row (missing entry) contributes nothing
    assert np.isfinite(graph.spectrum(h, u, mask)).all()


def test_adj_from_lam():
    _, u, eig = graph.build_graph(np.zeros(6, int), 8, 8, 1, 1)
    lam = np.stack([eig, 2 * eig])
    a = graph.adj_from_lam(u, lam)
    assert a.shape == (2, 8, 8)
    np.testing.assert_allclose(a[1], 2 * a[0], atol=1e-12)


def test_manifest_windows_give_a_simple_spectrum():
    """With the bundled model's windows every single-speaker window (N = 2..W) and the golden
    multi-speaker case have distinct kept eigenvalues, so u is unique up to the sign rule."""
    import tomllib

    from conftest import ROOT
    man = tomllib.loads((ROOT / "models" / "gsdnet-mosi" / "manifest.toml").read_text())
    ws, wo = man["graph"]["window_same"], man["graph"]["window_other"]
    w, k = man["dims"]["window"], man["dims"]["k"]
    for n in range(2, w + 1):
        a = graph.normalise(graph.structural_adjacency(np.zeros(n, int), w, ws, wo), n)
        vals = np.sort(np.linalg.eigvalsh(a[:n, :n]))[::-1]
        assert graph.spectral_gap(vals, min(k, n)) > 1e-6, n
    case = tomllib.loads((ROOT / "tests" / "golden" / "speakers" / "case.toml").read_text())
    n = case["meta"]["n_nodes"]
    spk = np.fromfile(ROOT / "tests" / "golden" / "speakers" / "speaker.f32", "<f4")[:n]
    a = graph.normalise(graph.structural_adjacency(spk.astype(int), w, ws, wo), n)
    vals = np.sort(np.linalg.eigvalsh(a[:n, :n]))[::-1]
    assert graph.spectral_gap(vals, min(k, n)) > 1e-6


def test_degenerate_eigenspace_gets_the_canonical_basis():
    """Complete graph on 9 nodes: eigenvalue 0 has multiplicity 8. The kept vectors must not
    depend on which basis of that eigenspace the solver returned (DESIGN.md rule)."""
    a = graph.normalise(graph.structural_adjacency(np.zeros(9, int), 12, 8, 8), 9)
    u, eig = graph.top_eigen(a, 9, 6)
    np.testing.assert_allclose(u[:9, :6].T @ u[:9, :6], np.eye(6), atol=1e-10)
    rs = np.random.default_rng(3)
    vals, vecs = np.linalg.eigh(a[:9, :9])
    space = vecs[:, np.abs(vals) < 1e-8]                       # the 8-dim zero eigenspace
    rotated = space @ np.linalg.qr(rs.normal(size=(8, 8)))[0]  # another basis of it
    b1, b2 = graph.canonical_basis(space), graph.canonical_basis(rotated)
    np.testing.assert_allclose(b1, b2, atol=1e-10)
    np.testing.assert_allclose(np.abs(u[:9, 1:6]), np.abs(b1[:, :5]), atol=1e-10)


IEMOCAP_MODELS = ("gsdnet-iemocap6", "gsdnet-iemocap4")


def kept_gaps(speaker, w, k, ws, wo):
    n = len(speaker)
    a = graph.normalise(graph.structural_adjacency(np.asarray(speaker, int), w, ws, wo), n)
    vals = np.sort(np.linalg.eigvalsh(a[:n, :n]))[::-1]
    return np.abs(np.diff(vals[:min(k, n) + 1]))


@pytest.mark.parametrize("name", IEMOCAP_MODELS)
def test_iemocap_windows_have_no_nearly_repeated_eigenvalues(name):
    """The dyadic graph of the IEMOCAP models (docs/MODEL.md, IEMOCAP): no window of the shared
    splits (the same cut into windows of W as evaluation) has kept eigenvalues nearer than 1e-6
    without being exactly repeated (<= 1e-8: the canonical-basis rule of DESIGN.md makes u
    unique there); the golden case's window has a simple spectrum."""
    import tomllib

    from conftest import ROOT

    from gsdnet_ref import data as gdata
    folder = ROOT / "models" / name
    if not folder.is_dir():
        pytest.skip(f"{name} not exported")
    man = tomllib.loads((folder / "manifest.toml").read_text())
    ws, wo = man["graph"]["window_same"], man["graph"]["window_other"]
    w, k = man["dims"]["window"], man["dims"]["k"]
    if name == "gsdnet-iemocap6":
        case = ROOT / "tests" / "golden" / "dyadic6_synthetic"
        n = tomllib.loads((case / "case.toml").read_text())["meta"]["n_nodes"]
        spk = np.fromfile(case / "speaker.f32", "<f4")[:n]
        assert kept_gaps(spk, w, k, ws, wo).min() > 1e-6
    data = ROOT.parent / "shared" / "data" / "iemocap" / f"{name[-1]}way"
    if not (data / "val" / "utterances.csv").exists():
        pytest.skip("shared IEMOCAP data absent")
    for split in ("train", "val"):
        for c in gdata.load_split(data / split):
            for sl in gdata.window_slices(c.n, w):
                g = kept_gaps(c.speaker[sl], w, k, ws, wo)
                assert not np.any((g > 1e-8) & (g < 1e-6)), (c.conv_id, sl)
