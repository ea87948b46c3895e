"""Prompt building and loss masking: a conversation + audio frames → input ids and labels.

The audio goes at the start of the first user turn as ``<audio_start>`` + one ``<audio>`` per
frame + ``<audio_end>``; the model later swaps each ``<audio>`` embedding for a projected frame.
The text is rendered with the tokenizer's own chat template (a simple default is installed on
tokenizers without one). Only the assistant's answers and the end-of-turn token that closes
each answer are supervised; system, user and audio positions get the label ``IGNORE_INDEX``.

The supervised spans are defined by rendering the conversation incrementally: the text of the
messages before answer *k* with the generation prompt, and the text up to and including
answer *k*. The characters between the two are answer *k* (plus the template's end-of-turn
marker), and the tokens that start inside that span are supervised
(:func:`supervised_spans_by_prefixes`, three renders per answer).

The training loader takes a cheaper route to the same spans (:func:`supervised_spans`): the
prefix renders are made once per template and turn structure, on a *skeleton* conversation
whose contents are sentinels (cached), and each sample's conversation is rendered once. When
that one rendering equals the skeleton's with every sentinel replaced by its message's content
(the template inserts contents verbatim), the skeleton's span boundaries are moved to the real
text by the contents' lengths. Anything else (a template that transforms or branches on
content, a content holding a sentinel character, a template that is not prefix-stable) falls
back to the prefix renders, so the spans and their errors are always those of
:func:`supervised_spans_by_prefixes`.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Sequence

import numpy as np

IGNORE_INDEX = -100
AUDIO_START = "<audio_start>"
AUDIO_END = "<audio_end>"
AUDIO = "<audio>"
AUDIO_TOKENS = (AUDIO_START, AUDIO_END, AUDIO)

# Installed on tokenizers that have no chat template (and on the tiny tokenizer). The role
# markers are special tokens of the tiny tokenizer; the end-of-turn token is the eos token.
DEFAULT_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}<|system|>{{ m['content'] }}"
    "{% elif m['role'] == 'user' %}<|user|>{{ m['content'] }}"
    "{% else %}<|assistant|>{{ m['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")


class PromptError(ValueError):
    """A conversation cannot be turned into a training example (bad roles, template)."""


@dataclass(frozen=True)
class Example:
    """One tokenized sample: ``input_ids`` and ``labels`` have the same length."""

    input_ids: list[int]
    labels: list[int]
    n_audio: int              # number of <audio> placeholders in input_ids
    truncated: bool

    @property
    def n_supervised(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def audio_markup(n_frames: int) -> str:
    """The text that stands for ``n_frames`` audio frames inside a user turn."""
    if n_frames < 1:
        raise ValueError(f"a clip needs at least one audio frame, got {n_frames}")
    return AUDIO_START + AUDIO * n_frames + AUDIO_END


def to_messages(turns: Sequence[tuple[str, str]], n_frames: int,
                system_prompt: str = "") -> list[dict[str, str]]:
    """``[(role, content), ...]`` → chat messages with the audio inside the first user turn."""
    if not turns or turns[0][0] != "user":
        raise PromptError(f"a conversation must start with a user turn, got "
                          f"{[r for r, _ in turns]}")
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for i, (role, content) in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise PromptError(f"turn {i} has role {role!r}, expected {expected!r} (turns must "
                              f"alternate user/assistant): {[r for r, _ in turns]}")
        if i == 0:
            content = f"{audio_markup(n_frames)}\n{content}"
        messages.append({"role": role, "content": content})
    return messages


def render(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False,
                                         add_generation_prompt=add_generation_prompt)


def supervised_spans_by_prefixes(tokenizer: Any, messages: list[dict[str, str]]
                                 ) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of each answer (+ end-of-turn), by
    rendering every prefix of the conversation (the definition of the spans)."""
    full = render(tokenizer, messages, add_generation_prompt=False)
    spans = []
    for k, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:k], add_generation_prompt=True)
        upto = render(tokenizer, messages[: k + 1], add_generation_prompt=False)
        if not full.startswith(upto) or not upto.startswith(before):
            raise PromptError(
                "the chat template does not render conversations prefix by prefix (an earlier "
                "turn changes when later turns are added), so the answer spans cannot be "
                f"located; use a tokenizer with a prefix-stable template. Turn {k}: "
                f"{before[-60:]!r} / {upto[-60:]!r}")
        start, end = len(before), len(before) + len(upto[len(before):].rstrip())
        if end <= start:
            raise PromptError(f"assistant turn {k} renders to no text")
        spans.append((start, end))
    if not spans:
        raise PromptError("a conversation needs at least one assistant answer to supervise")
    return full, spans


# Sentinel contents of the skeleton conversation: private-use characters, which no template
# strips, around the message's index.
_OPEN, _CLOSE = "\ue000", "\ue001"
_SENTINEL = re.compile(f"{_OPEN}([0-9]+){_CLOSE}")


@dataclass(frozen=True)
class _Skeleton:
    """A template's rendering of one turn structure, with a slot for each message's content."""

    pieces: tuple[str | int, ...]          # literal text, or the index of a message (its content)
    bounds: tuple[tuple[int, int, int, int], ...]
    # per answer: (piece, offset) where its span starts (the end of the prefix rendered with
    # the generation prompt) and (piece, offset) where the prefix through the answer ends


# tokenizer -> {(template, bos, eos, roles): skeleton, or None where the fast route cannot be used}
_SKELETONS: "weakref.WeakKeyDictionary[Any, dict[tuple, _Skeleton | None]]" = \
    weakref.WeakKeyDictionary()


def _locate(starts: list[int], pieces: list[str | int], pos: int) -> tuple[int, int] | None:
    """``pos`` in the skeleton text as (piece, offset); ``None`` when it falls inside a slot."""
    for i in range(len(pieces)):
        lo = starts[i]
        hi = starts[i + 1]
        if lo <= pos < hi:
            if isinstance(pieces[i], int) and pos != lo:
                return None
            return i, pos - lo
    return len(pieces), 0                  # the very end of the text


def _make_skeleton(tokenizer: Any, roles: tuple[str, ...]) -> _Skeleton | None:
    import jinja2                            # transformers renders chat templates with it

    msgs = [{"role": r, "content": f"{_OPEN}{j}{_CLOSE}"} for j, r in enumerate(roles)]
    try:
        full = render(tokenizer, msgs, add_generation_prompt=False)
        prefixes = []
        for k, role in enumerate(roles):
            if role != "assistant":
                continue
            before = render(tokenizer, msgs[:k], add_generation_prompt=True)
            upto = render(tokenizer, msgs[: k + 1], add_generation_prompt=False)
            if not full.startswith(upto) or not upto.startswith(before):
                return None                  # the prefix route raises the error for it
            prefixes.append((len(before), len(upto)))
    except (jinja2.TemplateError, ValueError, TypeError):
        return None                          # the prefix route renders (and raises) itself
    pieces: list[str | int] = []
    at = 0
    for m in _SENTINEL.finditer(full):
        if m.start() > at:
            pieces.append(full[at:m.start()])
        j = int(m.group(1))
        if j >= len(roles):
            return None
        pieces.append(j)
        at = m.end()
    if at < len(full):
        pieces.append(full[at:])
    rest = _SENTINEL.sub("", full)
    if _OPEN in rest or _CLOSE in rest or not prefixes:
        return None                          # a sentinel was altered: not verbatim contents
    skel_lens = [len(p) if isinstance(p, str) else len(f"{_OPEN}{p}{_CLOSE}") for p in pieces]
    starts = [0, *accumulate(skel_lens)]
    bounds = []
    for before, upto in prefixes:
        a, b = _locate(starts, pieces, before), _locate(starts, pieces, upto)
        if a is None or b is None:
            return None
        bounds.append((*a, *b))
    return _Skeleton(tuple(pieces), tuple(bounds))


def _skeleton(tokenizer: Any, roles: tuple[str, ...]) -> _Skeleton | None:
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str):
        return None
    key = (template, tokenizer.bos_token, tokenizer.eos_token, roles)
    try:
        cache = _SKELETONS.setdefault(tokenizer, {})
    except TypeError:                        # not weak-referenceable: build it every time
        return _make_skeleton(tokenizer, roles)
    if key not in cache:
        cache[key] = _make_skeleton(tokenizer, roles)
    return cache[key]


def supervised_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of each answer (+ end-of-turn):
    :func:`supervised_spans_by_prefixes`'s result, from one rendering of the conversation where
    the template inserts contents verbatim (see the module doc)."""
    contents = [m["content"] for m in messages]
    skel = _skeleton(tokenizer, tuple(m["role"] for m in messages))
    if skel is None or any(_OPEN in c or _CLOSE in c for c in contents):
        return supervised_spans_by_prefixes(tokenizer, messages)
    parts = [p if isinstance(p, str) else contents[p] for p in skel.pieces]
    full = render(tokenizer, messages, add_generation_prompt=False)
    if full != "".join(parts):
        return supervised_spans_by_prefixes(tokenizer, messages)
    starts = [0, *accumulate(len(p) for p in parts)]
    spans = []
    for pa, oa, pb, ob in skel.bounds:
        start, upto = starts[pa] + oa, starts[pb] + ob
        end = start + len(full[start:upto].rstrip())
        if end <= start:
            return supervised_spans_by_prefixes(tokenizer, messages)   # raises its error
        spans.append((start, end))
    return full, spans


def _encode(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """``tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)``'s ids and
    offsets; for a plain transformers fast tokenizer, straight from its Rust backend (what that
    call runs, without its per-call Python layers)."""
    from transformers import PreTrainedTokenizerFast

    backend = getattr(tokenizer, "_tokenizer", None)
    cls = type(tokenizer)
    if (isinstance(tokenizer, PreTrainedTokenizerFast) and backend is not None
            and cls.__call__ is PreTrainedTokenizerFast.__call__
            and cls._encode_plus is PreTrainedTokenizerFast._encode_plus
            and backend.truncation is None and backend.padding is None
            and backend.encode_special_tokens == bool(tokenizer.split_special_tokens)):
        enc = backend.encode(text, add_special_tokens=False)
        return enc.ids, enc.offsets
    out = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(out["input_ids"]), list(out["offset_mapping"])


def _label_mask(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> np.ndarray:
    """True for the tokens whose first character lies in a span (spans sorted, disjoint)."""
    begin = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)[:, 0]      # (T,) first chars
    if len(begin) > 1 and bool(np.any(begin[1:] < begin[:-1])):
        return _label_mask_loop(begin, spans)     # offsets out of order: walk them as given
    s = np.asarray(spans, dtype=np.int64)                       # (K, 2)
    k = np.searchsorted(s[:, 1], begin, side="right")           # first span ending after it
    inside = k < len(s)
    mask = np.zeros(len(begin), dtype=bool)
    mask[inside] = begin[inside] >= s[k[inside], 0]
    return mask


def _label_mask_loop(begin: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    mask = np.zeros(len(begin), dtype=bool)
    span_i = 0
    for t, start in enumerate(begin.tolist()):
        while span_i < len(spans) and start >= spans[span_i][1]:
            span_i += 1
        if span_i == len(spans):
            break
        if spans[span_i][0] <= start < spans[span_i][1]:
            mask[t] = True
    return mask


def build_example(tokenizer: Any, turns: Sequence[tuple[str, str]], n_frames: int,
                  system_prompt: str = "", max_length: int = 0) -> Example:
    """Tokenize a conversation about a clip of ``n_frames`` frames with its loss mask."""
    messages = to_messages(turns, n_frames, system_prompt)
    text, spans = supervised_spans(tokenizer, messages)
    ids, offsets = _encode(tokenizer, text)
    ids_np = np.asarray(ids, dtype=np.int64)
    labels_np = np.where(_label_mask(offsets, spans), ids_np, IGNORE_INDEX)
    audio_id = tokenizer.convert_tokens_to_ids(AUDIO)
    is_audio = ids_np == audio_id
    n_audio = int(np.count_nonzero(is_audio))
    if n_audio != n_frames:
        raise PromptError(f"the prompt holds {n_audio} {AUDIO} tokens for {n_frames} frames: the "
                          f"tokenizer does not treat {AUDIO} as one special token")
    truncated = bool(max_length) and len(ids) > max_length
    if truncated:
        ids, labels_np = ids[:max_length], labels_np[:max_length]
        n_audio = int(np.count_nonzero(is_audio[:max_length]))
    return Example(list(ids), labels_np.tolist(), n_audio, truncated)


def build_prompt(tokenizer: Any, question: str, n_frames: int, system_prompt: str = "") -> list[int]:
    """Token ids of a one-question prompt ending with the assistant's generation prompt."""
    messages = to_messages([("user", question)], n_frames, system_prompt)
    text = render(tokenizer, messages, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
