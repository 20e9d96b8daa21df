"""The silence ratio of `audio.f32` (its 47th value), in plain numpy: the reference of the recipe
that was pinned down against all 10,039 IEMOCAP rows (issue 21).

Recipe, on 16 kHz mono audio: y = pcm / 32768 + 1e-4; reflect-pad y by 1024 samples on each side;
frames of 2048 samples every 512; the RMS of each frame; silence = the fraction of frames whose
RMS is at most 0.3 x the mean RMS. The ratio is relative to the clip's own mean level, so digital
silence (every frame at the 1e-4 offset) gives 0, not 1: a silent clip is flagged separately
(`gsdnet_sensor.audio.InputFlags`).
"""

import numpy as np

SAMPLE_RATE = 16000
OFFSET = 1e-4
FRAME = 2048
HOP = 512
PAD = FRAME // 2
THRESHOLD = 0.3


def frame_rms(samples):
    """RMS of each frame of `samples` (float, pcm / 32768) under the recipe's offset, padding and
    framing: 1 + len // 512 frames."""
    y = np.asarray(samples, dtype=np.float64)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"silence ratio needs a non-empty mono signal, got shape {y.shape}")
    y = np.pad(y + OFFSET, PAD, mode="reflect")
    n_frames = 1 + (y.size - FRAME) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(y, FRAME)[::HOP][:n_frames]
    return np.sqrt(np.mean(frames * frames, axis=1))


def silence_ratio(samples, threshold=THRESHOLD):
    """Fraction of frames whose RMS is at most `threshold` x the mean frame RMS."""
    rms = frame_rms(samples)
    return float(np.mean(rms <= threshold * rms.mean()))
