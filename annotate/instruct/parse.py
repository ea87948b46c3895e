"""Tolerant JSON extraction from LLM replies.

Models wrap JSON in code fences, add chatter before and after it, leave trailing commas, and get
cut off by ``max_tokens`` in the middle of a list. :func:`extract_json` recovers what it can:

1. the inside of a ```` ```json ```` fence (closed or not), else the whole reply;
2. the first JSON value starting at the first ``{`` or ``[`` (trailing text ignored);
3. trailing commas before ``}``/``]`` removed;
4. a reply cut off mid-way: the longest prefix that ends with a complete element, closed with the
   brackets still open (a half-written list item is dropped, never half-kept).

What it did is returned as notes (``code_fence``, ``trailing_text``, ``trailing_comma``,
``truncated``); when nothing parses, :class:`ReplyParseError` says why, with a short excerpt.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from llark.errors import InvalidReplyError

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)(?:```|$)", re.S)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


class ReplyParseError(InvalidReplyError):
    """The reply holds no usable JSON."""


@dataclass(frozen=True)
class ParsedReply:
    value: Any
    notes: tuple[str, ...]


def excerpt(text: str, n: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"


def _strip_trailing_commas(text: str) -> str:
    """Remove ``,`` before a closing bracket, outside strings."""
    out = []
    in_string = escape = False
    i = 0
    while i < len(text):
        ch = text[i]
        if in_string:
            out.append(ch)
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
            out.append(ch)
        elif ch == ",":
            j = i + 1
            while j < len(text) and text[j] in " \t\r\n":
                j += 1
            if j < len(text) and text[j] in "}]":
                i += 1
                continue
            out.append(ch)
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _complete_prefixes(text: str) -> list[str]:
    """Candidate repairs of a truncated value, longest first: each prefix ending right after a
    complete nested element, with the brackets still open closed in order."""
    stack: list[str] = []
    in_string = escape = False
    cuts: list[tuple[int, tuple[str, ...]]] = []
    for i, ch in enumerate(text):
        if in_string:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
            if ch == "[":
                cuts.append((i + 1, tuple(stack)))      # an empty list is a complete prefix too
        elif ch in "}]":
            if not stack:
                break
            stack.pop()
            cuts.append((i + 1, tuple(stack)))
            if not stack:
                break
    return [text[:end] + "".join(reversed(open_)) for end, open_ in reversed(cuts)]


def extract_json(reply: str) -> ParsedReply:
    """The JSON value in ``reply`` (see module doc); raises :class:`ReplyParseError`."""
    notes: list[str] = []
    text = reply.strip()
    if not text:
        raise ReplyParseError("the reply is empty")
    fence = _FENCE.search(text)
    if fence and fence.group(1).strip():
        notes.append("code_fence")
        text = fence.group(1).strip()
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        raise ReplyParseError(f"no JSON object in the reply: {excerpt(reply)!r}")
    start = min(starts)
    if start > 0 and "code_fence" not in notes:
        notes.append("leading_text")
    body = text[start:]
    decoder = json.JSONDecoder()
    cleaned = ""
    for attempt in range(2):
        candidate = body if attempt == 0 else cleaned
        try:
            value, end = decoder.raw_decode(candidate)
        except json.JSONDecodeError:
            cleaned = cleaned or _strip_trailing_commas(body)
            continue
        if attempt == 1:
            notes.append("trailing_comma")
        if candidate[end:].strip():
            notes.append("trailing_text")
        return ParsedReply(value, tuple(notes))
    for candidate in _complete_prefixes(cleaned):
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        notes.append("truncated")
        return ParsedReply(value, tuple(notes))
    raise ReplyParseError(f"the reply's JSON does not parse and cannot be repaired: "
                          f"{excerpt(reply)!r}")
