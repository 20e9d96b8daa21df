"""The audio frontend (gsdnet_sensor.audio) on synthetic speech: a two-speaker dialogue spoken by
espeak-ng (gsdnet_sensor.synth). Skipped where opensmile cannot be imported or espeak-ng / sox
are not installed (the test command installs them: apt-get install espeak-ng sox).

The IEMOCAP rows were computed by openSMILE 2.3.0 from audio the project does not have, so bit
identity cannot be checked: the values are checked against the ranges of the IEMOCAP columns
(../shared, skipped without it)."""

import subprocess

import numpy as np
import pytest

from conftest import ROOT
from gsdnet_sensor import synth
from gsdnet_sensor.audio import COLUMNS, N_VALUES, AudioError
from gsdnet_sensor.wav import read_wav

opensmile = pytest.importorskip("opensmile", reason="opensmile (the sensor extra) is not installed")
pytestmark = pytest.mark.skipif(bool(synth.tools_missing()),
                                reason=f"not installed: {synth.tools_missing()} (apt-get install espeak-ng sox)")
IEMOCAP = ROOT.parent / "shared" / "data" / "iemocap" / "6way"


@pytest.fixture(scope="module")
def extractor():
    from gsdnet_sensor.audio import Extractor
    return Extractor()


@pytest.fixture(scope="module")
def dialogue(tmp_path_factory):
    """(int16 samples [n, 1], rate, segments, wav path) of the synthetic dialogue at 16 kHz."""
    wav, seg = synth.write_dialogue(tmp_path_factory.mktemp("dialogue"))
    from gsdnet_sensor.segments import load_segments
    x, rate = read_wav(wav)
    return x, rate, load_segments(seg), wav


def clips(dialogue):
    x, rate, segs, _ = dialogue
    return [x[int(s.start_s * rate):int(s.end_s * rate)] for s in segs]


def test_values_shape_finite_and_physical(extractor, dialogue):
    assert len(COLUMNS) == N_VALUES == 47
    for clip in clips(dialogue):
        f = extractor.extract(clip, 16000)
        v = f.values
        assert v.dtype == np.float32 and v.shape == (47,) and np.all(np.isfinite(v))
        assert np.all(v[23:46] >= 0), "stds are non-negative"
        assert 0.0 <= v[46] <= 1.0
        f1, f2, f3 = v[COLUMNS.index("F1frequency_sma3nz_mean")], v[19], v[21]
        assert 300 < f1 < f2 < f3 < 3500
        assert 5 < v[COLUMNS.index("F0semitoneFrom27.5Hz_sma3nz_mean")] < 40
        assert f.flags.problems() == [], f.flags


@pytest.mark.skipif(not IEMOCAP.exists(), reason="../shared/data/iemocap not available")
def test_values_within_the_iemocap_columns(extractor, dialogue):
    a = np.concatenate([np.fromfile(IEMOCAP / s / "audio.f32", "<f4").reshape(-1, 47) for s in ("train", "val")])
    lo, hi, mu, sd = a.min(0), a.max(0), a.mean(0), a.std(0)
    for clip in clips(dialogue):
        v = extractor.extract(clip, 16000).values
        z = (v - mu) / sd
        # measured on this dialogue: |z| <= 6.3, four columns a little outside [min, max]
        assert np.all(np.abs(z) < 8), [(COLUMNS[i], float(z[i])) for i in np.flatnonzero(np.abs(z) >= 8)]
        outside = (v < lo - 0.5 * (hi - lo)) | (v > hi + 0.5 * (hi - lo))
        assert not outside.any(), [COLUMNS[i] for i in np.flatnonzero(outside)]


def sox(args):
    subprocess.run(["sox", "-R", *map(str, args)], check=True, capture_output=True)


def test_44k_input_equals_16k_input(extractor, dialogue, tmp_path):
    """The same dialogue at 44.1 kHz (sox) gives the 16 kHz values after the frontend resamples
    it. Energy and spectral shape agree closely; the voice-quality descriptors (jitter, shimmer)
    react to the resampling filter (up to 1.4 IEMOCAP standard deviations measured)."""
    _, _, segs, wav = dialogue
    up = tmp_path / "up.wav"
    sox([wav, "-r", "44100", up])
    x44, rate = read_wav(up)
    x16 = dialogue[0]
    sd = None
    if IEMOCAP.exists():
        sd = np.fromfile(IEMOCAP / "train" / "audio.f32", "<f4").reshape(-1, 47).std(0)
    for s in segs:
        a = extractor.extract(x16[int(s.start_s * 16000):int(s.end_s * 16000)], 16000).values
        f = extractor.extract(x44[int(s.start_s * rate):int(s.end_s * rate)], rate)
        assert f.flags.resampled and f.flags.sample_rate == 44100
        rel = np.abs(a - f.values) / (np.abs(a) + 1e-3)
        assert np.median(rel) < 0.02
        robust = [0, 1, 2, 5, 6, 16, 19, 21]  # loudness, spectral balance, flux, mfcc1, formant means
        assert rel[robust].max() < 0.05, COLUMNS[robust[int(rel[robust].argmax())]]
        if sd is not None:
            d = np.abs(a - f.values) / sd
            assert np.median(d) < 0.05 and np.mean(d < 0.5) > 0.9 and d.max() < 2.5, (COLUMNS[int(d.argmax())], d.max())


def test_stereo_is_mixed_down(extractor, dialogue):
    clip = clips(dialogue)[0]
    mono = extractor.extract(clip, 16000)
    both = extractor.extract(np.repeat(clip, 2, axis=1), 16000)
    assert both.flags.channels == 2
    np.testing.assert_allclose(both.values, mono.values, rtol=1e-6, atol=1e-6)
    one_dead = extractor.extract(np.c_[clip, np.zeros_like(clip)], 16000)  # the mean halves the level
    half = extractor.extract((clip.astype(np.float32) / 2 / 32768), 16000)
    np.testing.assert_allclose(one_dead.values, half.values, rtol=1e-4, atol=1e-4)


def test_clipping_is_flagged(extractor, dialogue):
    clip = clips(dialogue)[1].astype(np.int32)
    hot = np.clip(clip * 10, -32768, 32767).astype(np.int16)  # +20 dB into a 16-bit converter
    f = extractor.extract(hot, 16000)
    assert f.flags.clipping and f.flags.clipped_fraction > 0.01 and "clipping" in f.flags.problems()
    assert not extractor.extract(clip.astype(np.int16), 16000).flags.clipping


def test_silence_quiet_and_dropout_are_flagged(extractor, dialogue):
    zeros = extractor.extract(np.zeros(16000, np.int16), 16000).flags
    assert zeros.all_zero and zeros.silent and zeros.dropout
    hiss = extractor.extract(10 ** (-80 / 20) * np.random.default_rng(0).standard_normal(16000), 16000).flags
    assert hiss.silent and not hiss.all_zero and not hiss.dropout
    clip = clips(dialogue)[2].astype(np.float64) / 32768
    quiet = extractor.extract(clip * 10 ** (-40 / 20), 16000).flags  # 40 dB too low
    assert quiet.too_quiet and not quiet.silent
    cut = clip.copy()
    cut[8000:12000] = 0.0  # the microphone stops for 250 ms
    assert extractor.extract(cut, 16000).flags.dropout
    assert extractor.extract(clip, 16000).flags.problems() == []


def test_refused_input(extractor):
    with pytest.raises(AudioError, match="below 8000"):
        extractor.extract(np.ones(4000, np.int16), 4000)
    with pytest.raises(AudioError, match="at least"):
        extractor.extract(np.ones(300, np.int16), 16000)
    with pytest.raises(AudioError, match="NaN"):
        extractor.extract(np.array([0.1, np.nan] * 4000), 16000)
    with pytest.raises(AudioError):
        extractor.extract(np.zeros((0, 2)), 16000)
