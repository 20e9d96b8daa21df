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
