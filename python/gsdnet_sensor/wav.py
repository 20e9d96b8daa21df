"""WAV files in and out: integer PCM through the standard library's `wave`, other encodings
(float, ...) through `soundfile` (installed with the `sensor` extra)."""

import wave
from pathlib import Path

import numpy as np

_PCM = {1: np.uint8, 2: np.int16, 4: np.int32}


class WavError(ValueError):
    """A file that is not readable audio."""


def read_wav(path):
    """(samples [n, channels] as int16 / int32 PCM or float32, sample rate) of a WAV file."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except wave.Error:
        return _read_soundfile(path)
    except (OSError, EOFError) as e:
        raise WavError(f"{path}: {e}") from e
    if width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        x = (b[:, 0].astype(np.int32) << 8 | b[:, 1].astype(np.int32) << 16
             | b[:, 2].astype(np.int8).astype(np.int32) << 24)
    elif width in _PCM:
        x = np.frombuffer(raw, dtype=np.dtype(_PCM[width]).newbyteorder("<"))
        if width == 1:  # unsigned 8-bit
            x = ((x.astype(np.int16) - 128) << 8).astype(np.int16)
    else:
        raise WavError(f"{path}: {8 * width}-bit samples are not supported")
    return x.reshape(-1, channels), rate


def _read_soundfile(path):
    try:
        import soundfile
    except ImportError as e:
        raise WavError(f"{path}: not integer PCM and soundfile is not installed ({e})") from e
    try:
        x, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises its own LibsndfileError and RuntimeError
        raise WavError(f"{path}: {e}") from e
    return x, rate


def write_wav(path, samples, rate):
    """Writes int16 mono or [n, channels] samples as a 16-bit PCM WAV file."""
    x = np.asarray(samples, dtype=np.int16)
    x = x.reshape(x.shape[0], -1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(x.shape[1])
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(x.astype("<i2").tobytes())
