"""The pure core of the instruct stage: one clip's facts + one family → validated, grounded
conversations, or a counted skip, or a typed error.

Writers ("backends" of the stage) implement :class:`Writer`:

* :class:`~annotate.instruct.template.TemplateWriter`: deterministic, offline (mir, caption);
* :class:`LLMWriter`: prompts a :class:`~annotate.instruct.llm.ChatBackend`, parses the reply
  tolerantly and checks its shape.

:class:`InstructionGenerator` runs a writer, validates every pair (lengths, disallowed phrases,
identifiers, grounding, near-duplicates), and for an LLM asks again (showing the bad reply and
what was wrong) when a reply is unusable or nothing in it survives; after ``reply_retries`` it
raises :class:`~llark.errors.InvalidReplyError`. Everything it drops is counted in the caller's
``tally`` as ``dropped:<reason>``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from annotate.instruct.facts import DEFAULT_MIN_CONFIDENCE, ClipFacts
from annotate.instruct.grounding import GroundingSettings, check_text
from annotate.instruct.llm import ChatBackend
from annotate.instruct.parse import ReplyParseError, excerpt, extract_json
from annotate.instruct.prompts import (
    PROMPT_VERSION,
    ChatMessage,
    build_messages,
    repair_messages,
)
from annotate.instruct.validate import (
    Draft,
    Drop,
    Limits,
    QAPair,
    Repair,
    ReplySchemaError,
    caption_instruction,
    caption_length_problem,
    caption_text,
    is_near_duplicate,
    length_problem,
    normalize_question,
    phrase_problems,
    qa_items,
)
from llark.errors import InvalidReplyError

FAMILIES = ("mir", "caption", "reasoning")


class UnusableReplyError(InvalidReplyError):
    """A reply that could not be read into the requested shape (kept for the repair prompt)."""

    def __init__(self, message: str, reply: str) -> None:
        super().__init__(message)
        self.reply = reply


class Writer(Protocol):
    """A backend of the stage: writes a draft for one (clip, family)."""

    name: str                 # stored as Instruction.backend
    model: str
    prompt_version: str
    retryable: bool           # does asking again give a different answer?

    def supports(self, family: str) -> bool: ...

    def draft(self, facts: ClipFacts, family: str, tally: Counter, repair: Repair | None
              ) -> Draft: ...


@dataclass(frozen=True)
class GenerationSettings:
    mir_pairs: int = 5
    reasoning_pairs: int = 3
    min_confidence: float = DEFAULT_MIN_CONFIDENCE   # below it nothing is stated or grounded
    few_shot: bool = True
    reply_retries: int = 2
    limits: Limits = field(default_factory=Limits)
    grounding: GroundingSettings = field(default_factory=GroundingSettings)


@dataclass(frozen=True)
class Conversation:
    family: str
    n: int
    turns: tuple[ChatMessage, ...]      # user, assistant
    notes: tuple[str, ...]


@dataclass(frozen=True)
class UnitResult:
    """What one (clip, family) produced: conversations, or the reason it was skipped."""

    clip_id: str
    family: str
    conversations: tuple[Conversation, ...] = ()
    skip_reason: str = ""


class LLMWriter:
    """Prompts an LLM through a :class:`ChatBackend` and reads its reply."""

    prompt_version = PROMPT_VERSION
    retryable = True

    def __init__(self, chat: ChatBackend, settings: GenerationSettings) -> None:
        self.chat = chat
        self.name = chat.name
        self.model = chat.model
        self.settings = settings

    def supports(self, family: str) -> bool:
        return family in FAMILIES

    def messages(self, facts: ClipFacts, family: str) -> list[ChatMessage]:
        s = self.settings
        n = s.reasoning_pairs if family == "reasoning" else s.mir_pairs
        return build_messages(facts, family, n, s.min_confidence, s.few_shot)

    def draft(self, facts: ClipFacts, family: str, tally: Counter, repair: Repair | None
              ) -> Draft:
        messages = self.messages(facts, family)
        if repair is not None:
            messages = repair_messages(messages, repair.reply, repair.problem)
        reply = self.chat.complete(messages, tally)
        notes = []
        if reply.finish_reason == "length":
            notes.append("reply:cut_at_max_tokens")
        try:
            parsed = extract_json(reply.text)
            notes += [f"reply:{n}" for n in parsed.notes]
            if family == "caption":
                return Draft(caption=caption_text(parsed.value), notes=tuple(notes),
                             reply=reply.text)
            return Draft(pairs=tuple(qa_items(parsed.value)), notes=tuple(notes), reply=reply.text)
        except (ReplyParseError, ReplySchemaError) as exc:
            raise UnusableReplyError(str(exc), reply.text) from None


class InstructionGenerator:
    """``generate(facts, family, tally) -> UnitResult`` (see module doc). Thread-safe."""

    def __init__(self, writer: Writer, settings: GenerationSettings) -> None:
        self.writer = writer
        self.settings = settings

    @property
    def backend(self) -> str:
        return self.writer.name

    @property
    def model(self) -> str:
        return self.writer.model

    @property
    def prompt_version(self) -> str:
        return self.writer.prompt_version

    # ------------------------------------------------------------------ validation

    def _check(self, text: str, facts: ClipFacts, question: str = ""
               ) -> tuple[Drop | None, tuple[str, ...]]:
        """Phrase checks on question and answer; grounding on the answer only (a question
        such as "Are there vocals?" claims nothing)."""
        problems = phrase_problems(f"{question}\n{text}", facts)
        if problems:
            return problems[0], ()
        grounding = check_text(text, facts, self.settings.grounding, self.settings.min_confidence)
        if not grounding.ok:
            c = grounding.contradictions[0]
            return Drop(c.reason, str(c)), ()
        return None, tuple(f"grounded:{k}" for k in grounding.grounded)

    def validate(self, facts: ClipFacts, family: str, draft: Draft
                 ) -> tuple[list[Conversation], list[Drop]]:
        limits = self.settings.limits
        kept: list[Conversation] = []
        drops: list[Drop] = []
        if family == "caption":
            caption = " ".join(draft.caption.split())
            problem = caption_length_problem(caption, limits)
            notes: tuple[str, ...] = ()
            if problem is None:
                problem, notes = self._check(caption, facts)
            if problem is not None:
                return [], [problem]
            turns = (ChatMessage("user", caption_instruction(facts.clip_id)),
                     ChatMessage("assistant", caption))
            return [Conversation(family, 0, turns, draft.notes + notes)], []
        seen: list[str] = []
        for pair in draft.pairs:
            pair = QAPair(" ".join(pair.question.split()), " ".join(pair.answer.split()))
            if len(kept) >= limits.max_pairs:
                drops.append(Drop("too_many", f"more than {limits.max_pairs} pairs"))
                continue
            problem = length_problem(pair, limits)
            notes = ()
            if problem is None:
                problem, notes = self._check(pair.answer, facts, pair.question)
            if problem is None and is_near_duplicate(pair.question, seen, limits.duplicate_ratio):
                problem = Drop("near_duplicate", excerpt(pair.question, 60))
            if problem is not None:
                drops.append(problem)
                continue
            seen.append(normalize_question(pair.question))
            turns = (ChatMessage("user", pair.question), ChatMessage("assistant", pair.answer))
            kept.append(Conversation(family, len(kept), turns, draft.notes + notes))
        return kept, drops

    # ------------------------------------------------------------------ one unit

    def generate(self, facts: ClipFacts, family: str, tally: Counter) -> UnitResult:
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r}")
        if facts.is_silent:
            return UnitResult(facts.clip_id, family, skip_reason="silent_clip")
        if not self.writer.supports(family):
            return UnitResult(facts.clip_id, family, skip_reason=f"{family}_needs_llm")
        attempts = 1 + (self.settings.reply_retries if self.writer.retryable else 0)
        repair: Repair | None = None
        problem = ""
        for attempt in range(attempts):
            if attempt:
                tally["reply_retries"] += 1
            try:
                draft = self.writer.draft(facts, family, tally, repair)
            except UnusableReplyError as exc:
                tally[f"invalid_reply:{family}"] += 1
                problem = str(exc)
                repair = Repair(exc.reply, problem)
                continue
            if not self.writer.retryable and not draft.pairs and not draft.caption:
                return UnitResult(facts.clip_id, family, skip_reason="template_nothing_to_say")
            kept, drops = self.validate(facts, family, draft)
            for drop in drops:
                tally[f"dropped:{drop.reason}"] += 1
            tally["pairs_kept"] += len(kept)
            if kept:
                if attempt:
                    note = (f"reply:attempt_{attempt + 1}",)
                    kept = [Conversation(c.family, c.n, c.turns, c.notes + note) for c in kept]
                return UnitResult(facts.clip_id, family, tuple(kept))
            summary = Counter(d.reason for d in drops)
            problem = ("nothing in the reply passed validation (" +
                       ", ".join(f"{r} x{n}" for r, n in sorted(summary.items())) +
                       f"; first: {drops[0].detail})" if drops else "the reply was empty")
            repair = Repair(draft.reply or json.dumps({"caption": draft.caption}), problem)
        raise InvalidReplyError(f"{family}: no usable reply after {attempts} attempt(s) from "
                                f"{self.writer.name}/{self.writer.model}; last problem: {problem}")
