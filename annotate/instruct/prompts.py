"""Prompts for the LLM writers, in our own words: one system prompt per family, a note per
dataset on where its facts come from, and one few-shot example per family (a made-up clip and
the reply we want, which passes our own validation and grounding; a test checks that).

:data:`PROMPT_VERSION` is stored with every record the prompts produce. Change any text here
and bump it: ``tests/test_instruct_template.py`` holds the fingerprint of these texts for every
released version (``PROMPT_FINGERPRINTS``, append-only) and fails until the bumped version's
fingerprint is appended there.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass

from annotate.instruct.facts import ChordSegment, ClipFacts
from annotate.instruct.render import render_facts

PROMPT_VERSION = "instruct-prompts-2"   # 2: musicians' spelling; facts below the threshold say "no clear key"


@dataclass(frozen=True)
class ChatMessage:
    role: str          # "system", "user" or "assistant"
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


RULES = """\
You write training data for a music assistant that listens to audio. You are given facts about \
a short music excerpt. Write as someone who has just listened to it carefully.

Rules:
- Never mention where the facts came from: no metadata, annotations, tags, captions, labels, \
datasets, confidence values, files, IDs, links or JSON in any question or answer.
- Never say you are an AI or that you cannot hear the music.
- Only state a key, tempo, meter, chord or instrument when it agrees with the facts. If a fact \
is marked LOW or unknown, do not state it at all.
- Do not invent details that contradict the facts. Do not name the title, artist or composer \
unless a question is about them and the facts give them.
- Reply with one JSON object only, exactly in the format asked for, with no other text."""

FAMILY_TASKS: dict[str, str] = {
    "mir": """\
Task family: mir
Write {n} question-answer pairs about what can be heard and measured in the excerpt: tempo, \
meter, key, chords, instruments, genre, mood, texture, dynamics. Vary the questions; each \
answer is one to three sentences in plain English.
Format: {{"qa": [{{"question": "...", "answer": "..."}}, ...]}}""",
    "caption": """\
Task family: caption
Write one description of the excerpt in two to five sentences, the way a musician would \
describe it to someone who has not heard it: genre and style, mood, instruments, rhythm and \
tempo, harmony, how it develops.
Format: {{"caption": "..."}}""",
    "reasoning": """\
Task family: reasoning
Write {n} question-answer pairs that need musical reasoning, not just a fact: why the music \
feels the way it does, how its tempo, harmony or instruments create an effect, what setting or \
scene it would suit and why, how a musician could play along, arrange or continue it. Answers \
are two to five sentences and stay consistent with the facts.
Format: {{"qa": [{{"question": "...", "answer": "..."}}, ...]}}""",
}

DATASET_NOTES: dict[str, str] = {
    "musiccaps": "The description was written by a musician who listened to this excerpt.",
    "magnatagatune": "The tags were chosen by listeners in an online game; a few may be noisy, "
                     "and tags like 'no vocals' mean that something is absent.",
    "fma": "The genres were chosen by the artist who uploaded the track.",
    "musicnet": "This is a classical recording; the instruments and the note summary come from "
                "a score aligned to the recording, so they are exact.",
    "folder": "The descriptive fields come from the owner's catalogue of recordings.",
}

#: A made-up clip for the few-shot examples (no real recording, no real dataset row).
EXAMPLE_FACTS = ClipFacts(
    clip_id="example:demo:0-24000", dataset="folder", duration_s=24.0,
    genres=("funk", "soul"), tags=("groovy", "bass", "electric guitar", "drums", "upbeat"),
    instruments=("bass guitar", "electric guitar", "drums", "organ"),
    tempo_bpm=104.2, tempo_confidence=0.88, meter=4, meter_confidence=0.81,
    key="E minor", key_confidence=0.72,
    chords=(ChordSegment(0.0, 4.6, "E:min"), ChordSegment(4.6, 9.2, "A:maj"),
            ChordSegment(9.2, 13.8, "E:min"), ChordSegment(13.8, 18.4, "A:maj"),
            ChordSegment(18.4, 24.0, "B:min")),
    chords_confidence=0.64,
)

EXAMPLE_REPLIES: dict[str, dict] = {
    "mir": {"qa": [
        {"question": "How fast is this groove?",
         "answer": "It sits at about 104 BPM, a relaxed but steady funk pace."},
        {"question": "What key is the music in?", "answer": "It is in E minor."},
        {"question": "How is the rhythm organised into bars?",
         "answer": "It is in 4/4, with the bass and drums locking onto the first beat of each bar."},
        {"question": "Which chords does the harmony keep returning to?",
         "answer": "The harmony swings between E minor and A major, and briefly moves to B minor "
                   "near the end."},
        {"question": "What instruments carry the groove?",
         "answer": "A bass guitar and drums drive it, with choppy electric guitar and an organ "
                   "filling in between."},
    ]},
    "caption": {"caption": (
        "An upbeat funk and soul groove at about 104 BPM in E minor. A tight bass guitar and "
        "drums lock into a steady 4/4 pocket while an electric guitar plays short, choppy chords "
        "and an organ sustains underneath. The harmony rocks between E minor and A major before "
        "lifting to B minor, which keeps the loop moving and makes it feel made for dancing.")},
    "reasoning": {"qa": [
        {"question": "Why does this groove feel relaxed rather than frantic?",
         "answer": "At about 104 BPM the pulse is brisk enough to move to but leaves space "
                   "between the notes. The bass and drums stay locked together, so nothing "
                   "pushes ahead of the beat, and the two-chord vamp gives the ear a stable "
                   "home."},
        {"question": "How could a keyboard player join in without clashing?",
         "answer": "Staying in E minor and following the move between E minor and A major would "
                   "fit. Short, rhythmic chords on the off-beats would leave room for the guitar "
                   "while adding to the groove."},
    ]},
}


def family_task(family: str, n_pairs: int) -> str:
    if family not in FAMILY_TASKS:
        raise KeyError(f"unknown family {family!r}; known: {sorted(FAMILY_TASKS)}")
    return FAMILY_TASKS[family].format(n=n_pairs)


def system_prompt(family: str, dataset: str, n_pairs: int) -> str:
    note = DATASET_NOTES.get(dataset, DATASET_NOTES["folder"])
    return f"{RULES}\n\n{family_task(family, n_pairs)}\n\nAbout the facts: {note}"


def user_prompt(facts: ClipFacts, min_confidence: float) -> str:
    return "Facts about the excerpt:\n" + render_facts(facts, min_confidence)


def build_messages(facts: ClipFacts, family: str, n_pairs: int, min_confidence: float,
                   few_shot: bool = True) -> list[ChatMessage]:
    """System prompt, optionally one worked example (user facts → assistant JSON), then the
    clip's facts."""
    messages = [ChatMessage("system", system_prompt(family, facts.dataset, n_pairs))]
    if few_shot:
        messages += _example(family, min_confidence)
    messages.append(ChatMessage("user", user_prompt(facts, min_confidence)))
    return messages


@functools.lru_cache(maxsize=64)
def _example(family: str, min_confidence: float) -> tuple[ChatMessage, ChatMessage]:
    return (ChatMessage("user", user_prompt(EXAMPLE_FACTS, min_confidence)),
            ChatMessage("assistant", json.dumps(EXAMPLE_REPLIES[family])))


def repair_messages(messages: list[ChatMessage], previous_reply: str, problem: str
                    ) -> list[ChatMessage]:
    """Ask again after an unusable reply: the reply and what was wrong with it are shown."""
    return messages + [
        ChatMessage("assistant", previous_reply[:4000]),
        ChatMessage("user", f"That reply could not be used: {problem}. Reply again with only "
                            "the JSON object in the requested format, following every rule."),
    ]


def prompt_fingerprint() -> str:
    """sha256 over every prompt text, to catch edits made without bumping PROMPT_VERSION."""
    parts = [RULES, json.dumps(FAMILY_TASKS, sort_keys=True),
             json.dumps(DATASET_NOTES, sort_keys=True), json.dumps(EXAMPLE_REPLIES, sort_keys=True),
             repr(EXAMPLE_FACTS), repair_messages([], "", "")[1].content]
    return hashlib.sha256("\x1e".join(parts).encode()).hexdigest()
