"""The sensor side a robot runs next to the daemon: audio features per utterance and the program
that sends them (issue 21).

- `silence`: the silence ratio of the recipe, plain numpy (no openSMILE).
- `audio`: the 47 values of `audio.f32` (openSMILE eGeMAPSv01a LLD means and stds + silence
  ratio), input checks (resampling, mix-down, clipping, silence, dropout, level).
- `wav`, `segments`: WAV files and utterance boundaries (CSV / JSON with transcripts).
- `endpoint`, `capture`: an energy endpointer and live capture through a command (`arecord`).
- `sender`: the connection to the daemon (Unix, TCP, serial) through `gsdnet_client`.
- `program`, `cli`: the runs and the command line (`gsdnet-sensor`, `python -m gsdnet_sensor`).
- `synth`: synthetic two-speaker dialogues with espeak-ng and sox (tests, examples).

Licence: the audio features need openSMILE (PyPI `opensmile==2.6.0`, the extra `sensor` of
python/: `pip install -e 'python[sensor]'`). openSMILE is distributed by audEERING under its
research licence, which permits non-commercial use only; the wheel's "MIT" classifier is wrong
(it covers the Python wrapper at most, not the bundled openSMILE library). Commercial use needs a
licence from audEERING. The daemon does not depend on it.
"""
