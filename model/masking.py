"""Prompt building and loss masking: a conversation + audio frames → input ids and labels.

The audio goes at the start of the first user turn as ``<audio_start>`` + one ``<audio>`` per
frame + ``<audio_end>``; the model later swaps each ``<audio>`` embedding for a projected frame.
The text is rendered with the tokenizer's own chat template (a simple default is installed on
tokenizers without one). Only the assistant's answers and the end-of-turn token that closes
each answer are supervised; system, user and audio positions get the label ``IGNORE_INDEX``.

The supervised spans are found by rendering the conversation incrementally: the text of the
messages before answer *k* with the generation prompt, and the text up to and including
answer *k*. The characters between the two are answer *k* (plus the template's end-of-turn
marker), and the tokens that start inside that span are supervised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

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


def supervised_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of each answer (+ end-of-turn)."""
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


def build_example(tokenizer: Any, turns: Sequence[tuple[str, str]], n_frames: int,
                  system_prompt: str = "", max_length: int = 0) -> Example:
    """Tokenize a conversation about a clip of ``n_frames`` frames with its loss mask."""
    messages = to_messages(turns, n_frames, system_prompt)
    text, spans = supervised_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    labels = [IGNORE_INDEX] * len(ids)
    span_i = 0
    for t, (start, _end) in enumerate(enc["offset_mapping"]):
        while span_i < len(spans) and start >= spans[span_i][1]:
            span_i += 1
        if span_i == len(spans):
            break
        if spans[span_i][0] <= start < spans[span_i][1]:
            labels[t] = ids[t]
    audio_id = tokenizer.convert_tokens_to_ids(AUDIO)
    n_audio = sum(1 for i in ids if i == audio_id)
    if n_audio != n_frames:
        raise PromptError(f"the prompt holds {n_audio} {AUDIO} tokens for {n_frames} frames: the "
                          f"tokenizer does not treat {AUDIO} as one special token")
    truncated = bool(max_length) and len(ids) > max_length
    if truncated:
        ids, labels = ids[:max_length], labels[:max_length]
        n_audio = sum(1 for i in ids if i == audio_id)
    return Example(ids, labels, n_audio, truncated)


def build_prompt(tokenizer: Any, question: str, n_frames: int, system_prompt: str = "") -> list[int]:
    """Token ids of a one-question prompt ending with the assistant's generation prompt."""
    messages = to_messages([("user", question)], n_frames, system_prompt)
    text = render(tokenizer, messages, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
