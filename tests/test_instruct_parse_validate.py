"""Tolerant JSON extraction and the validation rules of generated instruction data."""

from __future__ import annotations

import pytest

from annotate.instruct.facts import ClipFacts
from annotate.instruct.parse import ReplyParseError, extract_json
from annotate.instruct.validate import (
    CAPTION_INSTRUCTIONS,
    Limits,
    QAPair,
    ReplySchemaError,
    caption_instruction,
    caption_text,
    is_near_duplicate,
    length_problem,
    normalize_question,
    phrase_problems,
    qa_items,
)
from llark.errors import InvalidReplyError

FACTS = ClipFacts(clip_id="fma:000123:0-23777", dataset="fma", duration_s=23.777,
                  source_id="000123", audio_uri="/data/fma_small/000/000123.mp3")


# --------------------------------------------------------------------------- parse

def test_plain_json():
    r = extract_json('{"qa": [{"question": "Q?", "answer": "A."}]}')
    assert r.value == {"qa": [{"question": "Q?", "answer": "A."}]}
    assert r.notes == ()


def test_code_fence_with_chatter():
    reply = 'Sure, here it is:\n```json\n{"caption": "A calm piece."}\n```\nEnjoy!'
    r = extract_json(reply)
    assert r.value == {"caption": "A calm piece."}
    assert "code_fence" in r.notes


def test_unclosed_fence():
    r = extract_json('```json\n{"caption": "x"}')
    assert r.value == {"caption": "x"}


def test_trailing_text_after_object():
    r = extract_json('{"caption": "A calm piece."} I hope this helps {not json}')
    assert r.value == {"caption": "A calm piece."}
    assert "trailing_text" in r.notes


def test_leading_text_and_trailing_commas():
    r = extract_json('Here: {"qa": [{"question": "Q?", "answer": "A.",},],}')
    assert r.value == {"qa": [{"question": "Q?", "answer": "A."}]}
    assert "trailing_comma" in r.notes and "leading_text" in r.notes


def test_comma_inside_string_is_kept():
    r = extract_json('{"caption": "slow, then fast,]"}')
    assert r.value == {"caption": "slow, then fast,]"}


def test_truncated_list_keeps_complete_items_only():
    reply = ('{"qa": [{"question": "One?", "answer": "First."}, '
             '{"question": "Two?", "answer": "Second \\"quoted\\" {x}."}, '
             '{"question": "Three?", "ans')
    r = extract_json(reply)
    assert r.value == {"qa": [{"question": "One?", "answer": "First."},
                              {"question": "Two?", "answer": 'Second "quoted" {x}.'}]}
    assert "truncated" in r.notes


def test_truncated_before_any_item_gives_empty_list():
    r = extract_json('{"qa": [{"question": "On')
    assert r.value == {"qa": []}


def test_truncated_string_value_is_not_half_kept():
    with pytest.raises(ReplyParseError, match="cannot be repaired"):
        extract_json('{"caption": "A warm piece that')


@pytest.mark.parametrize("reply", ["", "   ", "Sure! It is a lovely calm piece.",
                                   "The answer is yes."])
def test_prose_is_a_typed_error(reply):
    with pytest.raises(ReplyParseError) as info:
        extract_json(reply)
    assert isinstance(info.value, InvalidReplyError)


# --------------------------------------------------------------------------- schema

def test_qa_items_accepts_common_shapes():
    assert qa_items({"qa": [{"question": " Q? ", "answer": "A."}]}) == [QAPair("Q?", "A.")]
    assert qa_items([{"q": "Q?", "a": "A."}]) == [QAPair("Q?", "A.")]
    assert qa_items({"questions": [{"question": "Q?", "answer": "A."}, "junk"]}) == \
        [QAPair("Q?", "A."), QAPair("", "")]


@pytest.mark.parametrize("value", [{"answer": "x"}, {"qa": []}, "text", 3])
def test_qa_items_rejects_other_shapes(value):
    with pytest.raises(ReplySchemaError):
        qa_items(value)


def test_caption_text_shapes():
    assert caption_text({"caption": " A piece. "}) == "A piece."
    assert caption_text("A piece.") == "A piece."
    with pytest.raises(ReplySchemaError):
        caption_text({"qa": []})


# --------------------------------------------------------------------------- phrases, lengths

@pytest.mark.parametrize("text,reason", [
    ("The metadata says it is rock.", "disallowed_phrase"),
    ("Based on the annotations, the tempo is fast.", "disallowed_phrase"),
    ("As an AI, I cannot hear music.", "disallowed_phrase"),
    ("Here is the JSON you asked for.", "disallowed_phrase"),
    ("According to the tags, it is ambient.", "disallowed_phrase"),
    ("The file 000123.mp3 is a rock song.", "file_name"),
    ("You can find it at https://example.com/x.", "file_name"),
    ("Track 000123 is loud.", "identifier"),
    ("This is fma:000123:0-23777.", "identifier"),
])
def test_phrase_problems(text, reason):
    problems = phrase_problems(text, FACTS)
    assert problems and problems[0].reason == reason


@pytest.mark.parametrize("text", [
    "It is a calm rock piece with a steady beat.",
    "A tagline-worthy hook opens the piece.",                  # 'tag' inside a word
    "The song was written in 1230 style.",                      # number other than the id
])
def test_clean_text_passes(text):
    assert phrase_problems(text, FACTS) == []


def test_short_alphabetic_ids_do_not_match_words():
    facts = ClipFacts(clip_id="folder:rock:0-1000", dataset="folder", duration_s=1.0,
                      source_id="rock")
    assert phrase_problems("It is a rock piece.", facts) == []


def test_length_limits():
    limits = Limits()
    assert length_problem(QAPair("What key is it?", "It is in C major."), limits) is None
    assert length_problem(QAPair("", "x"), limits).reason == "empty"
    assert length_problem(QAPair("Key?", "C."), limits).reason == "too_short"
    assert length_problem(QAPair("What key is it?", "x" * 1201), limits).reason == "too_long"


def test_near_duplicates():
    seen = [normalize_question("What is the tempo of this track?")]
    assert is_near_duplicate("What's the tempo of the song?", seen, 0.85)
    assert is_near_duplicate("what is the TEMPO of this track", seen, 0.85)
    assert not is_near_duplicate("Which instruments can you hear?", seen, 0.85)


def test_caption_instruction_is_deterministic_and_varied():
    a = caption_instruction("fma:1:0-1000")
    assert a == caption_instruction("fma:1:0-1000")
    assert a in CAPTION_INSTRUCTIONS
    picked = {caption_instruction(f"fma:{i}:0-1000") for i in range(60)}
    assert len(picked) >= 8
