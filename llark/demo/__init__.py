"""Every maker of labelled test and demo audio, in one place.

- :mod:`llark.demo.synth`: the synthesizer (drums, bass, chords, melody from a song spec).
- :mod:`llark.demo.corpus`: the demo corpus, laid out as MusicCaps, MagnaTagATune, FMA,
  MusicNet and a folder (``llark demo-data``).
- :mod:`llark.demo.score`: real compositions (music21's corpus) rendered with FluidSynth, with
  labels read from the score (the real-music development set of the annotators).

Imports nothing heavy at package level.
"""
