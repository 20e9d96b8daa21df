"""The silence ratio of the audio recipe (gsdnet_sensor.silence), plain numpy: framing, padding,
threshold, against a per-frame loop written from the recipe's words."""

import numpy as np
import pytest

from gsdnet_sensor.silence import frame_rms, silence_ratio


def loop_reference(x, threshold=0.3):
    """The recipe spelled out frame by frame."""
    y = np.asarray(x, np.float64) + 1e-4
    n = y.size
    padded = np.concatenate([y[1:1025][::-1], y, y[-1025:-1][::-1]])  # numpy's "reflect"
    rms = []
    for start in range(0, padded.size - 2048 + 1, 512):
        f = padded[start:start + 2048]
        rms.append(np.sqrt(np.mean(f * f)))
    assert len(rms) == 1 + n // 512
    rms = np.array(rms)
    return float(np.mean(rms <= threshold * rms.mean()))


def test_frame_count_is_one_plus_len_over_hop():
    for n in (2048, 16000, 16001, 16384, 48000):
        assert frame_rms(np.zeros(n)).size == 1 + n // 512


def test_matches_the_loop_on_speech_like_bursts():
    rng = np.random.default_rng(1)
    x = np.zeros(16000 * 3)
    for start in (2000, 20000, 33000):
        x[start:start + 6000] = 0.3 * rng.standard_normal(6000)
    x += 1e-3 * rng.standard_normal(x.size)
    got = silence_ratio(x)
    assert got == loop_reference(x)
    assert 0.4 < got < 0.8


def test_half_loud_half_quiet_is_about_half_silent():
    x = np.concatenate([0.5 * np.ones(32000), 0.001 * np.ones(32000)])
    assert abs(silence_ratio(x) - 0.5) < 0.03


def test_steady_signal_and_digital_silence_have_no_silence():
    # relative to its own mean level: a constant clip has no frame below 0.3 x the mean
    assert silence_ratio(0.2 * np.sin(np.arange(16000) / 5)) == 0.0
    assert silence_ratio(np.zeros(16000)) == 0.0  # the 1e-4 offset everywhere: equal frames


def test_quieter_speech_above_the_threshold_is_not_silence():
    # half the level is above 0.3 x the mean: no frame is silent; a tenth is below it
    assert silence_ratio(np.r_[np.ones(16384), 0.5 * np.ones(16384)]) == 0.0
    assert abs(silence_ratio(np.r_[np.ones(16384), 0.1 * np.ones(16384)]) - 0.5) < 0.05


def test_short_clip_is_reflected_not_refused():
    x = np.linspace(-0.1, 0.1, 700)
    assert silence_ratio(x) == loop_reference_short(x)


def loop_reference_short(x):
    y = np.pad(np.asarray(x, np.float64) + 1e-4, 1024, mode="reflect")
    rms = np.array([np.sqrt(np.mean(y[s:s + 2048] ** 2)) for s in range(0, y.size - 2047, 512)])
    return float(np.mean(rms <= 0.3 * rms.mean()))


def test_rejects_empty_and_multichannel():
    with pytest.raises(ValueError):
        silence_ratio(np.zeros(0))
    with pytest.raises(ValueError):
        silence_ratio(np.zeros((100, 2)))
