"""Random crops of the training windows (gsdnet_torch.crops, `train --crop-prob`): each crop is a
contiguous run of its own window with its own graph, the pool is a function of the member's
seed, the per-step draw maps a window only to its own crops, and `train --members K` with crops
still trains member j as the single model of seed + j. Synthetic data only. Needs torch:
skipped without it."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from gsdnet_ref import data as gdata  # noqa: E402
from gsdnet_ref import graph as ggraph  # noqa: E402
from gsdnet_torch import common, crops, train  # noqa: E402

W, K_EIG = 16, 4


def conv(cid, n):
    rs = np.random.default_rng(n)
    return gdata.Conversation(cid, [f"{cid}_{i}" for i in range(n)],
                              {"text": rs.normal(size=(n, 3)).astype(np.float32),
                               "audio": rs.normal(size=(n, 2)).astype(np.float32)},
                              None, np.arange(n) % 3, np.arange(n) % 2)


def convs():
    # 5 utterances (shorter than MIN_LEN), 12, and 40 (cut into windows of 16, 16 and 8)
    return [conv("a", 5), conv("b", 12), conv("c", 40)]


def make(cs):
    stats = {m: (np.zeros(d, np.float32), np.ones(d, np.float32)) for m, d in
             (("text", 3), ("audio", 2))}
    return common.make_batch(cs, stats, W, K_EIG, 2, 1)


def test_crops_are_contiguous_runs_of_their_own_window():
    cs = convs()
    wins = [c.part(sl) for c in cs for sl in gdata.window_slices(c.n, W)]
    got = crops.crop_convs(cs, W, seed=3)
    assert len(got) == len(wins) * crops.PER_WINDOW
    lengths = set()
    for i, w in enumerate(wins):
        for c in got[i * crops.PER_WINDOW:(i + 1) * crops.PER_WINDOW]:
            assert c.conv_id == w.conv_id
            start = w.utt_ids.index(c.utt_ids[0])
            assert c.utt_ids == w.utt_ids[start:start + c.n]       # contiguous, in order
            assert min(crops.MIN_LEN, w.n) <= c.n <= w.n
            np.testing.assert_array_equal(c.feats["audio"], w.feats["audio"][start:start + c.n])
            np.testing.assert_array_equal(c.label, w.label[start:start + c.n])
            np.testing.assert_array_equal(c.speaker, w.speaker[start:start + c.n])
            lengths.add(c.n)
        if w.n <= crops.MIN_LEN:     # a short window is only ever kept whole
            assert all(c.n == w.n for c in got[i * crops.PER_WINDOW:(i + 1) * crops.PER_WINDOW])
    assert len(lengths) > 3     # lengths are drawn, not fixed
    same = crops.crop_convs(cs, W, seed=3)
    other = crops.crop_convs(cs, W, seed=4)
    assert [c.utt_ids for c in same] == [c.utt_ids for c in got]
    assert [c.utt_ids for c in other] != [c.utt_ids for c in got]


def test_pool_keeps_the_windows_and_rebuilds_each_crops_graph():
    cs = convs()
    tb = make(cs)
    tb.pools = [x[tb.node_mask > 0] for x in tb.x]
    pool = crops.crop_pool(tb, cs, make, W, seed=0, prob=0.5)
    v = len(tb.n)
    assert pool.n_windows == v and len(pool.batch.n) == v * (1 + crops.PER_WINDOW)
    assert pool.batch.pools is tb.pools
    torch.testing.assert_close(pool.batch.x[0][:v], tb.x[0])
    torch.testing.assert_close(pool.batch.adj[:v], tb.adj)
    for j, c in enumerate(crops.crop_convs(cs, W, seed=0)):
        i = v + j
        assert pool.batch.n[i] == c.n and pool.batch.node_mask[i].sum() == c.n
        a, u, _ = ggraph.build_graph(c.speaker, W, K_EIG, 2, 1)
        np.testing.assert_allclose(pool.batch.adj[i].numpy(), a, atol=1e-6)
        np.testing.assert_allclose(pool.batch.u[i].numpy(), u, atol=1e-6)


def test_draw_maps_a_window_only_to_its_own_crops():
    cs = convs()
    tb = make(cs)
    v = len(tb.n)
    idx = torch.arange(v)
    gen = torch.Generator().manual_seed(0)
    never = crops.CropPool(tb, v, 0.0).draw(idx, gen)
    torch.testing.assert_close(never, idx)
    always = crops.CropPool(tb, v, 1.0)
    seen = set()
    for _ in range(50):
        out = always.draw(idx, gen)
        assert ((out - v) // crops.PER_WINDOW == idx).all()
        seen.update(out.tolist())
    assert len(seen) == v * crops.PER_WINDOW       # every crop of every window gets drawn
    half = crops.CropPool(tb, v, 0.5).draw(torch.zeros(4000, dtype=torch.long), gen)
    assert 0.45 < (half >= v).float().mean() < 0.55


def test_members_with_crops_train_as_the_single_models(tmp_path):
    from test_members import write_split
    write_split(tmp_path / "d" / "train", 6, 0)
    write_split(tmp_path / "d" / "val", 3, 1)
    args = ["--data", str(tmp_path / "d"), "--epochs", "2", "--score-epochs", "0",
            "--ft-epochs", "0", "--no-prior", "--d", "4", "--k", str(K_EIG), "--width", "8",
            "--hid", "8", "--enc-hidden", "6", "--threads", "1", "--window-same", "2",
            "--window-other", "1", "--crop-prob", "0.5"]
    merged, _ = train.main(args + ["--seed", "3", "--members", "2"])
    plain, _ = train.main(args[:-2] + ["--seed", "4"])
    for j in range(2):
        single, _ = train.main(args + ["--seed", str(3 + j)])
        torch.testing.assert_close(merged.fusion.members[j].cls.weight, single.fusion.cls.weight)
    assert not torch.allclose(single.fusion.cls.weight, plain.fusion.cls.weight)
