"""An energy endpointer for live capture without external boundaries: it cuts a 16 kHz mono
stream into utterances where the 20 ms frame level rises above the noise floor.

A frame is speech when its RMS is above both `floor x ratio` (the floor follows the quietest
recent frames: the 10th percentile of the last 3 s) and an absolute minimum (-55 dBFS). An
utterance starts at the first speech frame (minus 100 ms, never before the previous utterance's
end), ends after `hangover_s` without speech (plus 100 ms), is dropped when shorter than `min_s`
of speech and is cut at `max_s`. It knows
nothing about speakers: one microphone, one speaker index, unless boundaries come from outside.
"""

from collections import deque

import numpy as np

FRAME = 320  # 20 ms at 16 kHz
MARGIN = 5  # frames kept before the start and after the end (100 ms)


class Endpointer:
    def __init__(self, rate=16000, ratio=4.0, min_dbfs=-55.0, hangover_s=0.4, min_s=0.25, max_s=15.0):
        if rate != 16000:
            raise ValueError("the endpointer runs on 16 kHz audio")
        self.ratio = ratio
        self.min_rms = 10 ** (min_dbfs / 20)
        self.hangover = int(hangover_s * 50)
        self.min_frames = int(min_s * 50)
        self.max_frames = int(max_s * 50)
        self.history = deque(maxlen=150)  # 3 s of frame levels
        self.pending = np.zeros(0, np.float32)
        self.frame_index = 0  # frames consumed so far
        self.start = None  # first speech frame of the open utterance
        self.last_speech = None
        self.speech_frames = 0
        self.prev_end = 0  # end frame of the last utterance: the next never overlaps it

    def feed(self, samples):
        """Consumes float samples (pcm / 32768); returns the utterances closed by them as
        (start_sample, end_sample) in stream positions."""
        self.pending = np.concatenate([self.pending, np.asarray(samples, np.float32)])
        n = self.pending.size // FRAME
        frames = self.pending[: n * FRAME].reshape(n, FRAME)
        self.pending = self.pending[n * FRAME:]
        out = []
        for rms in np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)):
            closed = self._step(float(rms))
            if closed:
                out.append(closed)
        return out

    def flush(self):
        """Closes the open utterance at the end of the stream, if it is long enough."""
        return [c for c in [self._close(self.frame_index)] if c]

    def _step(self, rms):
        floor = np.percentile(self.history, 10) if len(self.history) >= 25 else self.min_rms
        self.history.append(rms)
        i = self.frame_index
        self.frame_index += 1
        speech = rms > max(floor * self.ratio, self.min_rms)
        if speech:
            if self.start is None:
                self.start, self.speech_frames = i, 0
            self.last_speech = i
            self.speech_frames += 1
        if self.start is None:
            return None
        if i - self.last_speech >= self.hangover or i + 1 - self._first() >= self.max_frames:
            return self._close(i + 1)
        return None

    def _first(self):
        return max(self.prev_end, self.start - MARGIN)

    def _close(self, end_frame):
        if self.start is None:
            return None
        first, last, speech = self._first(), self.last_speech, self.speech_frames
        self.start = self.last_speech = None
        if speech < self.min_frames:
            return None
        end = min(end_frame, last + 1 + MARGIN)
        self.prev_end = end
        return first * FRAME, end * FRAME
