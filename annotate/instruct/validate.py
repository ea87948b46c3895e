"""Validation of generated instruction data: reply schema, length limits, disallowed phrases,
near-duplicate questions, and captions turned into Q&A with a pool of instructions.

Every check that drops something names a reason (``too_long``, ``disallowed_phrase``,
``identifier``, ``near_duplicate``...) that the caller counts as ``dropped:<reason>``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

from annotate.instruct.facts import ClipFacts
from annotate.instruct.parse import excerpt
from llark.errors import InvalidReplyError


class ReplySchemaError(InvalidReplyError):
    """The reply parsed as JSON but does not have the requested shape."""


@dataclass(frozen=True)
class QAPair:
    question: str
    answer: str


@dataclass(frozen=True)
class Draft:
    """A writer's output before validation: pairs (mir/reasoning) or a caption."""

    pairs: tuple[QAPair, ...] = ()
    caption: str = ""
    notes: tuple[str, ...] = ()         # how the reply was read ("reply:code_fence", ...)
    reply: str = ""                     # the raw reply (LLM writers), for a repair prompt


@dataclass(frozen=True)
class Repair:
    """What went wrong with the previous reply, to show the model when asking again."""

    reply: str
    problem: str


@dataclass(frozen=True)
class Limits:
    """Length limits (characters) and how many pairs a reply may hold."""

    min_question: int = 8
    max_question: int = 300
    min_answer: int = 2
    max_answer: int = 1200
    min_caption: int = 40
    max_caption: int = 1500
    max_pairs: int = 12
    duplicate_ratio: float = 0.85     # questions at least this similar are near-duplicates


@dataclass(frozen=True)
class Drop:
    reason: str        # counted as dropped:<reason>
    detail: str


# --------------------------------------------------------------------------- schema

def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def qa_items(value: Any) -> list[QAPair]:
    """``{"qa": [{"question", "answer"}...]}`` (or a bare list, or ``questions``/``pairs``, or
    ``q``/``a`` keys) → pairs. Items that are not question/answer objects are skipped here and
    counted by the caller via the length checks (empty strings)."""
    items = value
    if isinstance(value, dict):
        for name in ("qa", "pairs", "questions", "qa_pairs", "conversations", "items"):
            if isinstance(value.get(name), list):
                items = value[name]
                break
        else:
            raise ReplySchemaError(f"expected an object with a 'qa' list, got keys "
                                   f"{sorted(value)[:6]}")
    if not isinstance(items, list):
        raise ReplySchemaError(f"expected a list of question/answer objects, got "
                               f"{type(items).__name__}")
    pairs = []
    for item in items:
        if not isinstance(item, dict):
            pairs.append(QAPair("", ""))
            continue
        q = _text(item.get("question", item.get("q")))
        a = _text(item.get("answer", item.get("a")))
        pairs.append(QAPair(q, a))
    if not pairs:
        raise ReplySchemaError("the reply's question list is empty")
    return pairs


def caption_text(value: Any) -> str:
    """``{"caption": "..."}`` (or ``description``, or a bare string) → the caption."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict):
        for name in ("caption", "description", "text"):
            if isinstance(value.get(name), str):
                return value[name].strip()
        raise ReplySchemaError(f"expected an object with a 'caption' string, got keys "
                               f"{sorted(value)[:6]}")
    raise ReplySchemaError(f"expected a caption object, got {type(value).__name__}")


# --------------------------------------------------------------------------- phrases

_GENERIC = [
    ("disallowed_phrase", re.compile(
        r"\bmeta[\s-]?data\b|\bannotat\w*|\bjson\b|\bas an ai\b|\blanguage model\b|"
        r"\bi(?:'m| am) an ai\b|\bi (?:cannot|can't|can not) (?:hear|listen)\b|"
        r"\bwithout (?:hearing|listening)\b|\bthe provided\b|\baccording to the\b|"
        r"\b(?:the|these|its|given|listed) (?:tags?|caption|labels?|data ?set)\b|\btagged\b|"
        r"\bdata ?set\b|\bconfidence (?:score|value|level|of)\b|\bthe (?:facts|information) "
        r"(?:given|provided|above|listed)\b|\bmusicnet\b|\bmagnatagatune\b|\bmusiccaps\b|"
        r"\bfree music archive\b|\bchord timeline\b|\bnote summary\b", re.I)),
    ("file_name", re.compile(
        r"\b[\w\-]+\.(?:mp3|wav|ogg|flac|m4a|aac|opus|mid|midi|csv|jsonl?|npy|parquet|txt)\b|"
        r"https?://|\bwww\.|\byoutube\b|\byoutu\.be\b", re.I)),
]


def phrase_problems(text: str, facts: ClipFacts) -> list[Drop]:
    """Disallowed phrases, file names and identifiers of this clip found in ``text``."""
    found: list[Drop] = []
    for reason, pattern in _GENERIC:
        m = pattern.search(text)
        if m:
            found.append(Drop(reason, m.group(0)))
    lowered = text.lower()
    for ident in (facts.clip_id, facts.source_id, facts.audio_name,
                  facts.audio_name.rsplit(".", 1)[0]):
        ident = ident.strip()
        # short or purely alphabetic source ids ("rock") would match ordinary words
        if len(ident) >= 4 and not ident.isalpha() and _contains_token(lowered, ident.lower()):
            found.append(Drop("identifier", ident))
            break
    return found


def _contains_token(text: str, token: str) -> bool:
    """``token`` in ``text`` with no word character or ``-`` right before or after it."""
    start = text.find(token)
    while start >= 0:
        end = start + len(token)
        before = text[start - 1] if start else " "
        after = text[end] if end < len(text) else " "
        if not (before.isalnum() or before in "_-") and not (after.isalnum() or after in "_-"):
            return True
        start = text.find(token, start + 1)
    return False


def length_problem(pair: QAPair, limits: Limits) -> Drop | None:
    if not pair.question or not pair.answer:
        return Drop("empty", "question or answer missing")
    if len(pair.question) < limits.min_question:
        return Drop("too_short", f"question of {len(pair.question)} chars")
    if len(pair.answer) < limits.min_answer:
        return Drop("too_short", f"answer of {len(pair.answer)} chars")
    if len(pair.question) > limits.max_question:
        return Drop("too_long", f"question of {len(pair.question)} chars > {limits.max_question}")
    if len(pair.answer) > limits.max_answer:
        return Drop("too_long", f"answer of {len(pair.answer)} chars > {limits.max_answer}")
    return None


def caption_length_problem(caption: str, limits: Limits) -> Drop | None:
    if len(caption) < limits.min_caption:
        return Drop("too_short", f"caption of {len(caption)} chars < {limits.min_caption}")
    if len(caption) > limits.max_caption:
        return Drop("too_long", f"caption of {len(caption)} chars > {limits.max_caption}")
    return None


# --------------------------------------------------------------------------- duplicates

def normalize_question(question: str) -> str:
    words = re.findall(r"[a-z0-9#]+", re.sub(r"['’]s\b", " is", question.lower()))
    stop = {"the", "a", "an", "this", "that", "of", "in", "is", "it", "its", "what", "which",
            "piece", "track", "song", "music", "excerpt", "clip", "recording", "does", "do"}
    return " ".join(w for w in words if w not in stop)


def is_near_duplicate(question: str, earlier: list[str], ratio: float) -> bool:
    norm = normalize_question(question)
    for other in earlier:
        if norm == other:
            return True
        m = SequenceMatcher(None, norm, other)
        if m.real_quick_ratio() >= ratio and m.quick_ratio() >= ratio and m.ratio() >= ratio:
            return True
    return False


# --------------------------------------------------------------------------- captions as Q&A

#: Instructions a caption answers; one is picked per clip, deterministically.
CAPTION_INSTRUCTIONS: tuple[str, ...] = (
    "Describe this piece of music.",
    "Write a short description of what you hear in this track.",
    "How would you describe this music to a friend?",
    "Give a detailed description of this recording.",
    "What does this music sound like?",
    "Describe the style, mood and instrumentation of this excerpt.",
    "Write a caption for this music.",
    "Tell me about this piece: its character, instruments and feel.",
    "Summarize what is going on in this music.",
    "Describe this track as a music critic would.",
    "Can you describe the sound of this recording?",
    "What would you say about this music if you were writing liner notes?",
    "Paint a picture of this music in words.",
    "Describe the musical content of this clip.",
    "Characterize this piece of music in a few sentences.",
    "Explain what a listener hears in this excerpt.",
)


def pick(pool: tuple[str, ...], *seed_parts: str) -> str:
    """A deterministic choice from ``pool`` for the given seed (stable across runs/machines)."""
    digest = hashlib.sha256("\x1f".join(seed_parts).encode()).digest()
    return pool[int.from_bytes(digest[:8], "big") % len(pool)]


def caption_instruction(clip_id: str, n: int = 0) -> str:
    return pick(CAPTION_INSTRUCTIONS, clip_id, "caption", str(n))


def describe_parse_failure(reply: str, error: Exception) -> str:
    return f"{error} (reply began {excerpt(reply, 60)!r})"
