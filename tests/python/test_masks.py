"""Missing masks: keep-one rule, expected rate, determinism per seed, fixed patterns."""
import numpy as np
import pytest

from gsdnet_ref import masks


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3, 0.5, 0.6, 0.7])
def test_keep_one_and_expected_rate(rate):
    conv_ids = [f"video{i}" for i in range(200)]
    miss, total = 0, 0
    for cid in conv_ids:
        a = masks.mask_for_rate(0, rate, cid, 30)
        assert a.shape == (30, 3) and a.dtype == bool
        assert a.any(axis=1).all(), "every utterance keeps a modality"
        miss += (~a).sum()
        total += a.size
    expected = min(rate, 2.0 / 3.0)
    assert abs(miss / total - expected) < 0.015


def test_rate_07_keeps_exactly_one():
    a = masks.mask_for_rate(3, 0.7, "abc", 500)
    assert (a.sum(axis=1) == 1).all()


def test_rate_zero_is_complete():
    assert masks.mask_for_rate(1, 0.0, "abc", 40).all()


def test_deterministic_and_seed_dependent():
    a = masks.mask_for_rate(1, 0.5, "conv", 50)
    np.testing.assert_array_equal(a, masks.mask_for_rate(1, 0.5, "conv", 50))
    assert not np.array_equal(a, masks.mask_for_rate(2, 0.5, "conv", 50))
    assert not np.array_equal(a, masks.mask_for_rate(1, 0.5, "other", 50))


def test_prefix_stable():
    """Utterance i's availability depends only on uniforms 4i..4i+3 of the stream."""
    a = masks.mask_for_rate(0, 0.4, "c", 10)
    b = masks.mask_for_rate(0, 0.4, "c", 20)
    np.testing.assert_array_equal(a, b[:10])


def test_patterns():
    a = masks.mask_for_pattern("TV", 4)
    assert a.tolist() == [[True, False, True]] * 4
    assert masks.pattern_bits("TAV") == 7 and masks.scenario_id(pattern="T") == 1001
    assert masks.scenario_id(rate=0.3) == 300
    for bad in ["", "X", "TT", "t"]:
        with pytest.raises(ValueError):
            masks.pattern_bits(bad)


def test_rate_out_of_range():
    with pytest.raises(ValueError):
        masks.mask_for_rate(0, 0.8, "c", 3)


# ---- M modalities (contract of issue 11): stride M + 1, q = 1 - M / (M - 1) r ----------------

def old_three_modality_mask(seed, rate, conv_id, n):
    """The three-modality rule as it was before the generalisation (stride 4, q = 1 - 1.5 r)."""
    from gsdnet_ref import rng
    key = rng.derive(seed, 1, masks.rate_millis(rate), rng.fnv1a64(conv_id))
    u = rng.uniforms(key, 4 * n).reshape(n, 4)
    keep = np.minimum(np.floor(3.0 * u[:, 0]), 2).astype(np.int64)
    avail = u[:, 1:] < min(max(1.0 - 1.5 * rate, 0.0), 1.0)
    avail[np.arange(n), keep] = True
    return avail


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3, 0.5, 0.6, 0.7])
def test_m3_is_the_old_rule_bit_for_bit(rate):
    for cid in ("abc", "video7", "Ses04F_impro01"):
        np.testing.assert_array_equal(masks.mask_for_rate(2, rate, cid, 37, 3),
                                      old_three_modality_mask(2, rate, cid, 37))
        np.testing.assert_array_equal(masks.mask_for_rate(2, rate, cid, 37),
                                      masks.mask_for_rate(2, rate, cid, 37, m=3))


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
def test_m2_keep_one_and_expected_rate(rate):
    miss, total = 0, 0
    for i in range(300):
        a = masks.mask_for_rate(0, rate, f"conv{i}", 30, m=2)
        assert a.shape == (30, 2) and a.dtype == bool
        assert a.any(axis=1).all(), "every utterance keeps a modality"
        miss += (~a).sum()
        total += a.size
    assert abs(miss / total - rate) < 0.012


def test_m2_at_the_maximum_keeps_exactly_one_uniformly():
    a = masks.mask_for_rate(1, 0.5, "dialogue", 4000, m=2)
    assert (a.sum(axis=1) == 1).all()
    assert abs(a[:, 0].mean() - 0.5) < 0.03      # the kept modality is drawn uniformly


def test_m2_uses_stride_three_and_its_own_keep_rule():
    from gsdnet_ref import rng
    n, rate = 25, 0.3
    u = rng.uniforms(rng.derive(4, 1, 300, rng.fnv1a64("c")), 3 * n).reshape(n, 3)
    keep = np.minimum(np.floor(2 * u[:, 0]), 1).astype(int)
    want = u[:, 1:] < 1.0 - 2.0 * rate
    want[np.arange(n), keep] = True
    np.testing.assert_array_equal(masks.mask_for_rate(4, rate, "c", n, m=2), want)
    np.testing.assert_array_equal(masks.mask_for_rate(4, rate, "c", 10, m=2),
                                  masks.mask_for_rate(4, rate, "c", n, m=2)[:10])


def test_m2_rates_and_patterns():
    assert masks.max_rate(3) == 0.7 and masks.max_rate(2) == 0.5
    assert masks.protocol_rates(2) == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert masks.protocol_rates(3) == [round(0.1 * i, 1) for i in range(8)]
    assert masks.patterns_for("TA") == ("T", "A", "TA")
    assert masks.patterns_for("TAV") == masks.PATTERNS
    assert masks.mask_for_pattern("A", 3, "TA").tolist() == [[False, True]] * 3
    assert masks.mask_for_pattern("TA", 2, "TA").tolist() == [[True, True]] * 2
    assert masks.scenario_id(pattern="TA") == 1003     # bits by name, not by slot
    with pytest.raises(ValueError):
        masks.mask_for_pattern("V", 3, "TA")
    with pytest.raises(ValueError):
        masks.mask_for_rate(0, 0.6, "c", 3, m=2)
