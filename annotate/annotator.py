"""The annotator: ``build_annotator(config)`` → a callable ``(audio, sr) -> ClipAnalysis``.

Built once per process (models load here: in a Beam worker that is ``DoFn.setup``), called
once per clip window with the window's samples. The window is measured first: a silent or
near-silent window (RMS below :attr:`AnnotatorConfig.silence_dbfs`) is annotated as silent
without running any model. Otherwise the chosen backend runs (``madmom``, ``essentia``) or
both run and :func:`annotate.consensus.combine` merges them (``consensus``, the default).
The result's chords are then spelled in its key (:func:`annotate.labels.spell_analysis`).
Backends that throw on a window raise :class:`llark.errors.AnalysisError` naming the backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from annotate.consensus import ConsensusConfig, combine, from_single, silent_analysis
from annotate.essentia_backend import EssentiaAnnotator, EssentiaConfig
from annotate.labels import spell_analysis
from annotate.madmom_backend import SAMPLE_RATE_HZ as ANALYSIS_RATE_HZ
from annotate.madmom_backend import MadmomAnnotator, MadmomConfig
from annotate.types import BACKENDS, BackendAnalysis, ClipAnalysis
from llark.audio import resample
from llark.config import doc
from llark.errors import AnalysisError, ConfigError, LlarkError

Annotator = Callable[[np.ndarray, int], ClipAnalysis]


@dataclass(frozen=True)
class AnnotatorConfig:
    """What the annotator runs and how (every field has a documented default)."""

    backend: str = doc("consensus (both libraries, merged), madmom or essentia",
                       default="consensus")
    silence_dbfs: float = doc("windows whose RMS is below this are annotated as silent",
                              default=-60.0)
    madmom: MadmomConfig = doc("madmom backend options", default_factory=MadmomConfig)
    essentia: EssentiaConfig = doc("essentia backend options", default_factory=EssentiaConfig)
    consensus: ConsensusConfig = doc("consensus weights", default_factory=ConsensusConfig)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if not -200.0 <= self.silence_dbfs <= 0.0:
            raise ConfigError(f"silence_dbfs must be within -200..0, got {self.silence_dbfs}")


def rms_dbfs(audio: np.ndarray) -> float:
    """RMS level of a float signal in dB relative to full scale (−inf dB floored at −200)."""
    if audio.size == 0:
        return -200.0
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return max(20.0 * math.log10(rms), -200.0) if rms > 0 else -200.0


def _run(backend: Callable[[np.ndarray, int], BackendAnalysis], audio: np.ndarray, sr: int
         ) -> BackendAnalysis:
    try:
        return backend(audio, sr)
    except LlarkError:
        raise
    except (RuntimeError, ValueError, IndexError, FloatingPointError) as exc:
        name = getattr(backend, "name", type(backend).__name__)
        raise AnalysisError(f"{name} backend failed on a {audio.size / sr:.2f}s window: "
                            f"{type(exc).__name__}: {exc}") from exc


@dataclass
class ClipAnnotator:
    """The callable :func:`build_annotator` returns; holds the loaded backends."""

    config: AnnotatorConfig
    madmom: MadmomAnnotator | None = None
    essentia: EssentiaAnnotator | None = None
    calls: int = field(default=0)

    def __call__(self, audio: np.ndarray, sr: int) -> ClipAnalysis:
        if audio.ndim != 1:
            raise AnalysisError(f"annotator needs mono audio (n,), got shape {audio.shape}")
        if sr <= 0:
            raise AnalysisError(f"bad sample rate {sr}")
        if not np.isfinite(audio).all():
            raise AnalysisError(f"{int((~np.isfinite(audio)).sum())} samples are NaN or inf")
        self.calls += 1
        level = rms_dbfs(audio)
        duration = audio.size / sr
        if level < self.config.silence_dbfs:
            return silent_analysis(self.config.backend, duration, level)
        # Resample once to the rate both libraries need; the backends' own resampling is
        # then a no-op.
        audio = resample(np.ascontiguousarray(audio, dtype=np.float32), int(sr), ANALYSIS_RATE_HZ)
        sr = ANALYSIS_RATE_HZ
        m = _run(self.madmom, audio, sr) if self.madmom is not None else None
        e = _run(self.essentia, audio, sr) if self.essentia is not None else None
        if m is not None and e is not None:
            return spell_analysis(combine(m, e, level, self.config.consensus))
        single = m if m is not None else e
        assert single is not None  # one backend always runs (checked by build_annotator)
        return spell_analysis(from_single(single, level))


def build_annotator(config: AnnotatorConfig | str | None = None) -> ClipAnnotator:
    """Load the backends ``config`` asks for (a backend name is enough) and return the
    annotator. Call once per process; the result is reused for every window."""
    if config is None:
        config = AnnotatorConfig()
    elif isinstance(config, str):
        config = AnnotatorConfig(backend=config)
    want_m = config.backend in ("consensus", "madmom")
    want_e = config.backend in ("consensus", "essentia")
    if config.backend == "consensus":
        config.consensus.params()      # a missing or stale fusion file fails here, not per clip
    return ClipAnnotator(
        config=config,
        madmom=MadmomAnnotator(config.madmom) if want_m else None,
        essentia=EssentiaAnnotator(config.essentia) if want_e else None)
