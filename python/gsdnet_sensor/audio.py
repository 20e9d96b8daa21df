"""The audio frontend: the 47 values of `audio.f32` for one utterance, and the checks of its input.

Recipe (issue 21, established from the source repository's extraction scripts and checked
against the data): openSMILE eGeMAPSv01a low-level descriptors (23 columns at a 10 ms hop, PyPI
`opensmile==2.6.0`, `Smile(FeatureSet.eGeMAPSv01a, FeatureLevel.LowLevelDescriptors)`); per
column the mean over all frames (unvoiced zeros included), then per column the pandas std with
ddof = 1, then the silence ratio (`gsdnet_sensor.silence`). 23 + 23 + 1 = 47 float32 values, in
the column order of the data (`COLUMNS`). The original extraction ran openSMILE 2.3.0; the wheel
bundles openSMILE 3.0.1. Bit identity with the IEMOCAP rows cannot be checked without IEMOCAP
audio, which the project does not have; the values on synthetic speech fall in the ranges of
the IEMOCAP columns (tests/python/test_sensor_audio.py).

Licence: openSMILE is under audEERING's research licence, which allows non-commercial use only
(the wheel's "MIT" classifier is wrong). It is the optional extra `sensor` of python/
(`pip install -e 'python[sensor]'`), never a dependency of the daemon.

Input: any sample rate (resampled to 16 kHz with audresample, which opensmile installs; below
8 kHz refused: the descriptors need the band up to 4 kHz), mono or several channels (mixed down
by the mean), int16 / int32 PCM or float in [-1, 1]. Gain matters: openSMILE's formant and pitch
descriptors are zero below an absolute level (halving a clip's gain moved F3's std by 43 IEMOCAP
standard deviations), so the sensor must deliver speech at a normal recording level: speech peaks
between about -20 and -1 dBFS, an active level (95th percentile of the 25 ms frame RMS) between
-40 and -10 dBFS (the IEMOCAP median loudness is about -29 dBFS there), and a microphone noise
floor above digital zero (real microphones have one; synthetic speech gets one from
`gsdnet_sensor.synth`). `InputFlags` reports what breaks this.
"""

import warnings
from dataclasses import dataclass

import numpy as np

from gsdnet_sensor.silence import SAMPLE_RATE, silence_ratio

LLD = (
    "Loudness_sma3", "alphaRatio_sma3", "hammarbergIndex_sma3", "slope0-500_sma3",
    "slope500-1500_sma3", "spectralFlux_sma3", "mfcc1_sma3", "mfcc2_sma3", "mfcc3_sma3",
    "mfcc4_sma3", "F0semitoneFrom27.5Hz_sma3nz", "jitterLocal_sma3nz", "shimmerLocaldB_sma3nz",
    "HNRdBACF_sma3nz", "logRelF0-H1-H2_sma3nz", "logRelF0-H1-A3_sma3nz", "F1frequency_sma3nz",
    "F1bandwidth_sma3nz", "F1amplitudeLogRelF0_sma3nz", "F2frequency_sma3nz",
    "F2amplitudeLogRelF0_sma3nz", "F3frequency_sma3nz", "F3amplitudeLogRelF0_sma3nz",
)
COLUMNS = tuple(f"{n}_mean" for n in LLD) + tuple(f"{n}_std" for n in LLD) + ("silence_ratio",)
N_VALUES = len(COLUMNS)  # 47
MIN_SAMPLE_RATE = 8000
MIN_SECONDS = 0.05  # below this openSMILE yields fewer than two frames: no std
FULL_SCALE = 32767 / 32768  # a sample at or above this magnitude is at full scale
CLIPPING_FRACTION = 0.001  # flagged above 0.1 % of samples at full scale
SILENT_PEAK_DBFS = -60.0  # no sample above this: nothing but (at most) a noise floor
QUIET_ACTIVE_DBFS = -40.0  # active level below this: pitch and formants start to vanish
ACTIVE_FRAME = 400  # 25 ms at 16 kHz
DROPOUT_S = 0.1  # a run of exact zeros this long: the microphone stopped delivering


class AudioError(ValueError):
    """Input the frontend cannot turn into features (empty, too short, sample rate too low)."""


@dataclass(frozen=True)
class InputFlags:
    """What was done to the input and what is wrong with it."""

    sample_rate: int  # as given; resampled to 16 kHz when different
    channels: int  # mixed down to mono when more than one
    clipped_fraction: float  # samples at full scale, any channel
    peak_dbfs: float
    active_dbfs: float  # 95th percentile of the 25 ms frame RMS (of the 16 kHz mono signal)
    all_zero: bool  # digital silence: a dead or muted microphone
    zero_run_s: float = 0.0  # the longest run of exact digital zeros (all channels)

    @property
    def resampled(self):
        return self.sample_rate != SAMPLE_RATE

    @property
    def clipping(self):
        return self.clipped_fraction > CLIPPING_FRACTION

    @property
    def silent(self):
        return self.all_zero or self.peak_dbfs < SILENT_PEAK_DBFS

    @property
    def dropout(self):
        """The microphone stopped delivering during the clip: 100 ms or more of exact zeros,
        which a microphone with any noise floor never gives."""
        return self.zero_run_s >= DROPOUT_S

    @property
    def too_quiet(self):
        return not self.silent and self.active_dbfs < QUIET_ACTIVE_DBFS

    def problems(self):
        """Names of the flags raised, for logs and reports."""
        names = ("clipping", "silent", "dropout", "too_quiet")
        return [n for n in names if getattr(self, n)]


@dataclass(frozen=True)
class AudioFeatures:
    values: np.ndarray  # float32 [47], COLUMNS order
    flags: InputFlags


def _dbfs(x):
    return float(20.0 * np.log10(max(float(x), 1e-10)))


def to_float(samples):
    """float64 samples in [-1, 1] and a boolean mask of full-scale samples, from int16 / int32 PCM
    or float input of shape [n] or [n, channels]."""
    x = np.asarray(samples)
    if x.ndim not in (1, 2) or x.shape[0] == 0 or (x.ndim == 2 and x.shape[1] == 0):
        raise AudioError(f"audio must be [samples] or [samples, channels], non-empty; got {x.shape}")
    if np.issubdtype(x.dtype, np.integer):
        scale = float(np.iinfo(x.dtype).max) + 1.0
        y = x.astype(np.float64) / scale
    elif np.issubdtype(x.dtype, np.floating):
        y = x.astype(np.float64)
        if not np.all(np.isfinite(y)):
            raise AudioError("audio holds NaN or infinite samples")
        y = np.clip(y, -1.0, 1.0)
    else:
        raise AudioError(f"unsupported sample type {x.dtype}")
    return y, np.abs(y) >= FULL_SCALE


def longest_zero_run(y):
    """Length of the longest run of samples that are exactly zero in every channel."""
    zero = ~np.any(y.reshape(y.shape[0], -1) != 0, axis=1)
    if not zero.any():
        return 0
    edges = np.flatnonzero(np.diff(np.concatenate([[0], zero.astype(np.int8), [0]])))
    return int((edges[1::2] - edges[::2]).max())


def prepare(samples, sample_rate):
    """The 16 kHz mono float32 signal the recipe runs on, and the input's flags."""
    sample_rate = int(sample_rate)
    if sample_rate < MIN_SAMPLE_RATE:
        raise AudioError(f"sample rate {sample_rate} Hz is below {MIN_SAMPLE_RATE} Hz: refused")
    y, full = to_float(samples)
    channels = 1 if y.ndim == 1 else y.shape[1]
    clipped = float(full.mean())  # per sample and channel, before the mix-down hides it
    mono = y if y.ndim == 1 else y.mean(axis=1)
    mono = mono.astype(np.float32)
    if sample_rate != SAMPLE_RATE:
        mono = _resample(mono, sample_rate)
    n = mono.size // ACTIVE_FRAME * ACTIVE_FRAME
    frames = mono[:n].reshape(-1, ACTIVE_FRAME) if n else mono.reshape(1, -1)
    active = np.percentile(np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)), 95)
    flags = InputFlags(sample_rate=sample_rate, channels=channels, clipped_fraction=clipped,
                       peak_dbfs=_dbfs(np.abs(y).max()), active_dbfs=_dbfs(active),
                       all_zero=not np.any(y), zero_run_s=longest_zero_run(y) / sample_rate)
    return mono, flags


def _resample(mono, sample_rate):
    import audresample  # installed with opensmile (the `sensor` extra)

    return audresample.resample(mono, sample_rate, SAMPLE_RATE)[0].astype(np.float32)


class Extractor:
    """openSMILE set up once (building it costs more than a short utterance); `extract` per
    utterance. Raises ImportError without opensmile (the `sensor` extra)."""

    def __init__(self):
        import opensmile

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "eGeMAPSv01a is deprecated": it is the recipe's set
            self._smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv01a,
                                          feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
        names = tuple(self._smile.feature_names)
        if names != LLD:
            raise RuntimeError(f"opensmile gives columns {names}, the recipe needs {LLD}: "
                               "install opensmile==2.6.0")

    def lld(self, mono16k):
        """The 23 low-level descriptors, one row per 10 ms frame (float64 [frames, 23])."""
        df = self._smile.process_signal(np.asarray(mono16k, dtype=np.float32), SAMPLE_RATE)
        return df.to_numpy(dtype=np.float64)

    def extract(self, samples, sample_rate):
        """AudioFeatures of one utterance: 47 float32 values and the input's flags."""
        mono, flags = prepare(samples, sample_rate)
        if mono.size < MIN_SECONDS * SAMPLE_RATE:
            raise AudioError(f"{mono.size} samples at 16 kHz: at least {MIN_SECONDS} s needed")
        lld = self.lld(mono)
        if lld.shape[0] < 2:
            raise AudioError(f"openSMILE gave {lld.shape[0]} frame(s): at least 2 needed")
        values = np.concatenate([lld.mean(axis=0), lld.std(axis=0, ddof=1), [silence_ratio(mono)]])
        return AudioFeatures(values=values.astype(np.float32), flags=flags)
