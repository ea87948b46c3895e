"""The offline template writer: golden outputs (exact text for fixed clips), the readable
rendering of facts, and the prompts (version fingerprint, few-shot examples that pass our own
checks, nothing identifying in a prompt)."""

from __future__ import annotations

from collections import Counter

import pytest

from annotate.instruct.facts import ChordSegment, ClipFacts, NoteSummary
from annotate.instruct.generate import FAMILIES, GenerationSettings, InstructionGenerator, Draft
from annotate.instruct.prompts import (
    EXAMPLE_FACTS,
    EXAMPLE_REPLIES,
    PROMPT_VERSION,
    build_messages,
    prompt_fingerprint,
)
from annotate.instruct.render import render_facts
from annotate.instruct.template import TEMPLATE_VERSION, TemplateWriter
from annotate.instruct.validate import qa_items

# The fingerprint of the prompt texts of every released PROMPT_VERSION, oldest first.
# Append-only: when a prompt text changes, bump PROMPT_VERSION and ADD its entry here (say so in
# the commit); never edit an existing entry, records made with that version carry its name.
PROMPT_FINGERPRINTS = {
    "instruct-prompts-1": "fe5fa3a3d1da739843c19a88cfefa0f9b0e0a3bc58bb7aed76cfe4986bca30ea",
    "instruct-prompts-2": "473c00c1e98bb60157da33e5c67972cbd869f1ccd097e9dc51dc88f1ea31aa20",
}

ROCK = ClipFacts(
    clip_id="fma:000002:0-23777", dataset="fma", duration_s=23.777, source_id="000002",
    audio_uri="/data/fma_small/000/000002.mp3", title="Food", artist="AWOL",
    genres=("Rock", "Punk"), tags=("guitar", "loud", "no vocals"), tempo_bpm=140.2,
    tempo_confidence=0.9, meter=4, meter_confidence=0.8, key="F# minor", key_confidence=0.7,
    chords=(ChordSegment(0, 2, "F#:min"), ChordSegment(2, 4, "D:maj"), ChordSegment(4, 4.1, "G:maj"),
            ChordSegment(4.1, 6, "A:maj"), ChordSegment(6, 8, "E:maj"), ChordSegment(8, 10, "F#:min")),
    chords_confidence=0.6)
QUARTET = ClipFacts(
    clip_id="musicnet:2494:0-23777", dataset="musicnet", duration_s=23.777, source_id="2494",
    audio_uri="/data/train_data/2494.wav", composer="Beethoven",
    composition="String Quartet No 11 in F minor", movement="2. Allegretto ma non troppo",
    ensemble="String Quartet", instruments=("Violin", "Viola", "Cello"),
    instruments_complete=True, tempo_bpm=96.0, tempo_confidence=0.55, meter=3,
    meter_confidence=0.4, key="F minor", key_confidence=0.2,          # key, meter below 0.5
    chords=(ChordSegment(0, 3, "F:min"), ChordSegment(3, 6, "C:7")), chords_confidence=0.25,
    notes=NoteSummary.from_notes([(0.0, 0.5, 41, 72), (0.5, 1.0, 41, 74), (0.0, 1.0, 42, 60),
                                  (0.0, 2.0, 43, 48)], 23.777))
MTAT = ClipFacts(
    clip_id="magnatagatune:12345:0-23777", dataset="magnatagatune", duration_s=23.777,
    source_id="12345", audio_uri="/data/mtat/f/some-artist-track-30-59.mp3",
    tags=("classical", "harpsichord", "slow", "quiet", "no vocals", "solo"), tempo_bpm=72.4,
    tempo_confidence=0.7, meter=3, meter_confidence=0.6, key="D minor", key_confidence=0.5,
    chords=(ChordSegment(0, 5, "D:min"),), chords_confidence=0.5)
CAPS = ClipFacts(
    clip_id="musiccaps:-0Gj8-vB1q4:30000-40000", dataset="musiccaps", duration_s=10.0,
    source_id="-0Gj8-vB1q4", audio_uri="/data/musiccaps/-0Gj8-vB1q4.wav",
    caption="A female singer performs a soulful melody over a mellow electric piano and soft "
            "drums.  The mood is warm.",
    aspects=("female vocals", "mellow electric piano", "soft drums", "soul"), tempo_bpm=88.0,
    tempo_confidence=0.8, meter=4, meter_confidence=0.7, key="D# major", key_confidence=0.6,
    # stored the way annotations were spelled before llark.music (sharps only): instruction
    # text still reads "Eb major", "Ab major"
    chords=(ChordSegment(0, 5, "D#:maj7"), ChordSegment(5, 10, "G#:maj")), chords_confidence=0.5)
#: a folder clip whose annotations are too unsure to state: no tempo claim, "no clear key"
UNSURE = ClipFacts(
    clip_id="folder:whale:0-23777", dataset="folder", duration_s=23.777, title="Humpback song",
    tags=("calm", "field recording"), genres=("ambient",), instruments=("organ", "flute"),
    tempo_bpm=103.0, tempo_confidence=0.3,
    meter=4, meter_confidence=0.2, key="A# minor", key_confidence=0.42,
    chords=(ChordSegment(0, 23.777, "A#:min"),), chords_confidence=0.1)

GOLDEN_ROCK = [
    ('mir', 'How fast is this piece, in beats per minute?',
     'The tempo is about 140 BPM, a fast pace.'),
    ('mir', 'What key is this music in?',
     'It is in F# minor.'),
    ('mir', 'What is the meter of this music?',
     'It has four beats per bar, a common quadruple meter.'),
    ('mir', 'Which chords can you hear in this excerpt?',
     'The harmony moves through F# minor, D major, A major and E major.'),
    ('mir', 'How would you classify the style of this track?',
     'It sounds like rock music, with elements of punk.'),
    ('mir', 'What instruments are playing in this excerpt?',
     'I can hear guitar.'),
    ('mir', 'Does this music have vocals?',
     'No, there are no vocals; the music is purely instrumental.'),
    ('mir', 'What is the mood of this excerpt?',
     'It comes across as loud.'),
    ('caption', 'Give a detailed description of this recording.',
     ('A loud rock piece featuring guitar. It moves at about 140 BPM, has four '
      'beats per bar and is in F# minor. The harmony moves through F# minor, D '
      'major, A major and E major. There are no vocals.')),
]
GOLDEN_QUARTET = [
    ('mir', 'How fast is this piece, in beats per minute?',
     'The tempo is about 96 BPM, a moderate pace.'),
    ('mir', 'Which instruments can you hear?',
     'The excerpt is played by violin, viola and cello.'),
    ('mir', 'Who composed this piece?',
     'This is music by Beethoven.'),
    ('mir', 'Which work is being played here?',
     'It is String Quartet No 11 in F minor, 2. Allegretto ma non troppo.'),
    ('mir', 'What group of musicians performs this piece?',
     'It is played by a string quartet.'),
    ('mir', 'How low and how high do the notes go in this excerpt?',
     'The notes span from C3 up to D5.'),
    ('mir', 'How many notes are being played?',
     'The texture is sparse, with about 0.2 notes per second.'),
    ('caption', 'Paint a picture of this music in words.',
     ('A piece for string quartet featuring violin, viola and cello by Beethoven. '
      'It moves at about 96 BPM.')),
]
GOLDEN_MTAT = [
    ('mir', 'What is the tempo of this music?',
     'The tempo is about 72 BPM, a moderate pace.'),
    ('mir', 'Which key does this excerpt sound like it is in?',
     'It is in D minor.'),
    ('mir', 'How are the beats grouped into bars in this excerpt?',
     'It has three beats per bar, a triple meter.'),
    ('mir', 'What chord progression does this music use?',
     'The harmony stays on D minor throughout.'),
    ('mir', 'What genre is this music?',
     'It sounds like classical music.'),
    ('mir', 'What is the instrumentation of this piece?',
     'I can hear harpsichord.'),
    ('mir', 'Is anyone singing in this excerpt?',
     'No, there are no vocals; the music is purely instrumental.'),
    ('mir', 'How would you describe the character of this music?',
     'It comes across as slow and quiet.'),
    ('caption', 'Write a caption for this music.',
     ('A slow classical piece featuring harpsichord. It moves at about 72 BPM, has'
      ' three beats per bar and is in D minor. There are no vocals.')),
]
GOLDEN_CAPS = [
    ('mir', 'What tempo does this excerpt have?',
     'The tempo is about 88 BPM, a moderate pace.'),
    ('mir', 'What key is this music in?',
     'It is in Eb major.'),
    ('mir', 'What is the meter of this music?',
     'It has four beats per bar, a common quadruple meter.'),
    ('mir', 'What chord progression does this music use?',
     'The harmony moves through Eb major seventh and Ab major.'),
    ('mir', 'What are the most noticeable qualities of this music?',
     'What stands out: female vocals, mellow electric piano, soft drums and soul.'),
    ('caption', 'What does this music sound like?',
     ('A female singer performs a soulful melody over a mellow electric piano and '
      'soft drums. The mood is warm.')),
]
GOLDEN_UNSURE = [
    ('mir', 'What key is this music in?',
     'It has no clear key.'),
    ('mir', 'What genre is this music?',
     'It sounds like ambient music.'),
    ('mir', 'Which instruments can you hear?',
     'I can hear organ and flute.'),
    ('mir', 'What is the mood of this excerpt?',
     'It comes across as calm.'),
    ('caption', 'Write a short description of what you hear in this track.',
     'A calm ambient piece featuring organ and flute.'),
]
RENDER_ROCK = """\
Excerpt length: 24 seconds
Title: Food
Artist: AWOL
Genres: Rock, Punk
Tags: guitar, loud, no vocals
Tempo: about 140 BPM (confidence 0.90)
Meter: 4 beats per bar (confidence 0.80)
Key: F# minor (confidence 0.70)
Chords (seconds from the start; confidence 0.60):
  0.0-2.0 F# minor
  2.0-4.1 D major
  4.1-6.0 A major
  6.0-8.0 E major
  8.0-10.0 F# minor"""
RENDER_QUARTET = """\
Excerpt length: 24 seconds
Composer: Beethoven
Composition: String Quartet No 11 in F minor, 2. Allegretto ma non troppo
Ensemble: String Quartet
Instruments: Violin, Viola, Cello (complete list of what plays)
Tempo: about 96 BPM (confidence 0.55)
Meter: no clear meter (confidence 0.40: LOW, do not state one)
Key: no clear key (confidence 0.20: LOW, do not state one)
Chords: unclear (confidence 0.25: LOW, do not name any)
Notes from the score: 4 notes from C3 to D5, about 0.17 per second; notes per instrument: violin 2, cello 1, viola 1"""


def written(facts: ClipFacts) -> list[tuple[str, str, str]]:
    gen = InstructionGenerator(TemplateWriter(), GenerationSettings())
    out = []
    for family in ("mir", "caption"):
        result = gen.generate(facts, family, Counter())
        assert result.skip_reason == ""
        out += [(c.family, c.turns[0].content, c.turns[1].content) for c in result.conversations]
    return out


@pytest.mark.parametrize("facts,golden", [(ROCK, GOLDEN_ROCK), (QUARTET, GOLDEN_QUARTET),
                                          (MTAT, GOLDEN_MTAT), (CAPS, GOLDEN_CAPS),
                                          (UNSURE, GOLDEN_UNSURE)],
                         ids=["fma", "musicnet", "magnatagatune", "musiccaps", "unsure"])
def test_template_golden_output(facts, golden):
    assert written(facts) == golden


def test_template_is_deterministic_and_labelled():
    gen = InstructionGenerator(TemplateWriter(), GenerationSettings())
    a = gen.generate(ROCK, "mir", Counter())
    b = InstructionGenerator(TemplateWriter(), GenerationSettings()).generate(ROCK, "mir", Counter())
    assert a == b
    assert (gen.backend, gen.model, gen.prompt_version) == ("template", "template",
                                                            TEMPLATE_VERSION)
    assert [c.n for c in a.conversations] == list(range(len(a.conversations)))


def test_low_confidence_facts_are_left_out():
    text = " ".join(a for _f, _q, a in written(QUARTET) if "Quartet No 11" not in a)
    assert "F minor" not in text and "seventh" not in text        # key 0.2, chords 0.25
    assert "three beats" not in text                               # meter 0.4
    assert "96 BPM" in text                                        # tempo 0.55
    # the work's key is in the metadata: the template does not claim "no clear key" for it
    assert "no clear key" not in text.lower()
    unsure = " ".join(a for _f, _q, a in written(UNSURE))
    assert "no clear key" in unsure.lower() and "BPM" not in unsure and "beats" not in unsure
    assert "minor" not in unsure                                   # neither key nor chord


def test_the_threshold_is_a_setting():
    """At threshold 0.4 the same clip's key (0.42) is stated, spelled as musicians do."""
    gen = InstructionGenerator(TemplateWriter(0.4), GenerationSettings(min_confidence=0.4))
    answers = [c.turns[1].content for c in gen.generate(UNSURE, "mir", Counter()).conversations]
    assert "It is in Bb minor." in answers
    assert not any("no clear key" in a.lower() for a in answers)


def test_spelling_follows_the_key_whatever_the_stored_spelling():
    text = " ".join(a for _f, _q, a in written(CAPS)) + render_facts(CAPS)
    assert "Eb major" in text and "Ab major" in text
    assert "#" not in text


def test_reasoning_and_silent_clips_are_skipped_with_reasons():
    gen = InstructionGenerator(TemplateWriter(), GenerationSettings())
    assert gen.generate(ROCK, "reasoning", Counter()).skip_reason == "reasoning_needs_llm"
    silent = ClipFacts(clip_id="folder:q:0-5000", dataset="folder", duration_s=5.0,
                       is_silent=True)
    assert {gen.generate(silent, f, Counter()).skip_reason for f in FAMILIES} == {"silent_clip"}
    bare = ClipFacts(clip_id="folder:b:0-5000", dataset="folder", duration_s=5.0)
    assert gen.generate(bare, "mir", Counter()).skip_reason == "template_nothing_to_say"


def test_template_output_passes_its_own_grounding():
    tally = Counter()
    gen = InstructionGenerator(TemplateWriter(), GenerationSettings())
    for facts in (ROCK, QUARTET, MTAT, CAPS, UNSURE):
        for family in ("mir", "caption"):
            gen.generate(facts, family, tally)
    assert not [k for k in tally if k.startswith("dropped:")], tally


# --------------------------------------------------------------------------- rendering

def test_render_golden():
    assert render_facts(ROCK) == RENDER_ROCK
    assert render_facts(QUARTET) == RENDER_QUARTET


def test_render_never_shows_identifiers():
    text = render_facts(CAPS)
    for ident in (CAPS.clip_id, CAPS.source_id, CAPS.audio_uri, CAPS.audio_name):
        assert ident not in text


def test_long_chord_timelines_are_capped():
    chords = tuple(ChordSegment(i, i + 1, "C:maj" if i % 2 else "G:maj") for i in range(40))
    facts = ClipFacts(clip_id="x:1:0-40000", dataset="folder", duration_s=40.0, chords=chords,
                      chords_confidence=0.9)
    lines = render_facts(facts).splitlines()
    assert sum(1 for line in lines if line.startswith("  ") and "major" in line) == 24
    assert lines[-1] == "  ... and 16 more chord changes"


# --------------------------------------------------------------------------- prompts

def test_prompt_version_matches_the_prompt_texts():
    """A changed prompt text fails until PROMPT_VERSION is bumped to a new entry appended to
    PROMPT_FINGERPRINTS. (No test can stop someone rewriting an existing entry instead; the
    table is append-only so that such an edit shows in review as a changed released line.)"""
    versions = list(PROMPT_FINGERPRINTS)
    assert versions == [f"instruct-prompts-{n}" for n in range(1, len(versions) + 1)]
    assert len(set(PROMPT_FINGERPRINTS.values())) == len(versions), (
        "two versions with the same prompt texts: a version was bumped without a text change, "
        "or an old entry was edited")
    assert PROMPT_VERSION == versions[-1], (
        f"PROMPT_VERSION {PROMPT_VERSION!r} is not the newest entry of PROMPT_FINGERPRINTS; "
        "add it (append-only)")
    fingerprint = prompt_fingerprint()
    released = [v for v, f in PROMPT_FINGERPRINTS.items() if f == fingerprint]
    assert fingerprint == PROMPT_FINGERPRINTS[PROMPT_VERSION], (
        f"a prompt text changed ({fingerprint}) but PROMPT_VERSION is still {PROMPT_VERSION!r}: "
        "bump it and append the new fingerprint to PROMPT_FINGERPRINTS"
        + (f" (these texts are those of {released[0]})" if released else ""))


@pytest.mark.parametrize("family", FAMILIES)
def test_few_shot_examples_pass_our_own_checks(family):
    gen = InstructionGenerator(TemplateWriter(), GenerationSettings())
    value = EXAMPLE_REPLIES[family]
    draft = Draft(caption=value["caption"]) if family == "caption" else \
        Draft(pairs=tuple(qa_items(value)))
    kept, drops = gen.validate(EXAMPLE_FACTS, family, draft)
    assert drops == []
    assert len(kept) == (1 if family == "caption" else len(value["qa"]))


@pytest.mark.parametrize("family", FAMILIES)
def test_messages(family):
    messages = build_messages(ROCK, family, 5, 0.3, few_shot=True)
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert f"Task family: {family}" in messages[0].content
    assert "Genres were chosen by the artist" in messages[0].content.replace("The genres", "Genres")
    assert messages[-1].content.endswith(render_facts(ROCK))
    everything = "\n".join(m.content for m in messages)
    for ident in (ROCK.clip_id, ROCK.audio_uri, ROCK.audio_name):
        assert ident not in everything
    plain = build_messages(ROCK, family, 5, 0.3, few_shot=False)
    assert [m.role for m in plain] == ["system", "user"]
