"""Typed errors shared by every stage.

Core code raises these with the numbers that were wrong; the Beam glue turns them into
dead-letter records whose ``error_type`` is the class name. Nothing returns ``None`` for failure.
"""

from __future__ import annotations


class LlarkError(Exception):
    """Base class of every expected, per-record failure."""


class ConfigError(LlarkError, ValueError):
    """A configuration value is missing, unknown or out of range."""


class AudioError(LlarkError):
    """Base class of audio loading failures."""


class AudioNotFoundError(AudioError, FileNotFoundError):
    """The audio file named by a record does not exist."""


class EmptyAudioError(AudioError):
    """The file exists but holds no bytes or no samples."""


class UndecodableAudioError(AudioError):
    """Neither soundfile nor ffmpeg could decode the file."""


class TruncatedAudioError(AudioError):
    """The file decodes to fewer samples than the requested window needs."""


class AudioTooShortError(AudioError):
    """The audio is shorter than the minimum clip length."""


class InvalidAudioError(AudioError):
    """The decoded samples are unusable (NaN or infinite values)."""


class MetadataError(LlarkError):
    """A metadata row is malformed (bad column, unparsable value, unsafe path)."""


class UnsafePathError(MetadataError):
    """A path from metadata points outside the data directory."""


class AnalysisError(LlarkError):
    """A music analysis backend failed on a clip."""


class LLMError(LlarkError):
    """An LLM request failed after its retries."""


class InvalidReplyError(LlarkError):
    """An LLM reply could not be parsed or failed validation."""


class EncoderError(LlarkError):
    """An audio encoder could not run (weights missing, bad input shape)."""


class ShardError(LlarkError):
    """A shard set is incomplete, corrupt or of another schema version."""
