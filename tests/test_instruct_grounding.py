"""Grounding: claims in generated text checked against the clip's annotations and metadata."""

from __future__ import annotations

import pytest

from annotate.instruct.facts import ChordSegment, ClipFacts
from annotate.instruct.grounding import GroundingSettings, check_text

FACTS = ClipFacts(
    clip_id="fma:000002:0-23777", dataset="fma", duration_s=23.777,
    tags=("guitar", "drums", "no vocals"), tempo_bpm=140.0, tempo_confidence=0.9, meter=4,
    meter_confidence=0.8, key="F# minor", key_confidence=0.7,
    chords=(ChordSegment(0, 2, "F#:min"), ChordSegment(2, 4, "D:maj"), ChordSegment(4, 6, "A:maj"),
            ChordSegment(6, 8, "E:7")),
    chords_confidence=0.6)


def kinds(text, facts=FACTS, settings=GroundingSettings()):
    r = check_text(text, facts, settings)
    return [c.kind for c in r.contradictions], list(r.grounded)


# --------------------------------------------------------------------------- key

@pytest.mark.parametrize("text", [
    "It is in F# minor.", "The key of this piece is F# minor.", "It sits in the key of F#m.",
    "An F# minor key gives it a dark colour.", "It is in G-flat minor.",   # enharmonic
    "It is in Gb minor.", "The music is in a minor key.", "The key is F#.",
])
def test_key_claims_that_agree(text):
    contra, grounded = kinds(text)
    assert contra == [] and "key" in grounded


@pytest.mark.parametrize("text", [
    "It is in D major.", "The key of the song is D major.", "It has a major key feel.",
    "It is in F# major.",                                   # parallel major
    "It is in A major.",                                    # relative major: not accepted
])
def test_key_claims_that_contradict(text):
    contra, _ = kinds(text)
    assert contra == ["key"]


def test_relative_key_accepted_when_enabled():
    contra, _ = kinds("It is in A major.", settings=GroundingSettings(relative_key_ok=True))
    assert contra == []


def test_key_claim_without_detected_key_is_ungrounded():
    facts = ClipFacts(clip_id="x:1:0-1000", dataset="folder", duration_s=1.0)
    assert kinds("It is in C major.", facts)[0] == ["key"]


def test_key_named_in_metadata_counts():
    facts = ClipFacts(clip_id="musicnet:1727:0-1000", dataset="musicnet", duration_s=1.0,
                      composition="Piano Sonata No. 8 in C minor", key="")
    assert kinds("The sonata is in C minor.", facts)[0] == []


def test_a_minor_chord_mention_is_not_a_key_claim():
    contra, grounded = kinds("The D major chord brightens the second bar.")
    assert contra == [] and grounded == ["chord"]


# --------------------------------------------------------------------------- tempo

@pytest.mark.parametrize("text", ["It moves at about 140 BPM.", "Around 135 bpm.",
                                  "Between 130 and 150 beats per minute.",
                                  "It runs at roughly 148 beats per minute."])
def test_tempo_claims_that_agree(text):
    contra, grounded = kinds(text)
    assert contra == [] and grounded == ["tempo"]


@pytest.mark.parametrize("text", ["It moves along at around 90 BPM.", "About 120 BPM.",
                                  "It is 70 BPM, half time.", "From 100 to 120 BPM."])
def test_tempo_claims_that_contradict(text):
    assert kinds(text)[0] == ["tempo"]


def test_octave_tempo_only_when_enabled():
    assert kinds("It feels like 70 BPM.")[0] == ["tempo"]
    assert kinds("It feels like 70 BPM.", settings=GroundingSettings(tempo_octave_ok=True))[0] == []


def test_tempo_claim_without_detected_tempo():
    facts = ClipFacts(clip_id="x:1:0-1000", dataset="folder", duration_s=1.0)
    assert kinds("It is about 120 BPM.", facts)[0] == ["tempo"]


def test_numbers_that_are_not_tempo():
    assert kinds("It lasts 24 seconds and was recorded in 1997.") == ([], [])


# --------------------------------------------------------------------------- meter

@pytest.mark.parametrize("text", ["It is in 4/4.", "Four beats per bar.", "4 beats to the bar.",
                                  "A steady common time pulse."])
def test_meter_agrees(text):
    contra, grounded = kinds(text)
    assert contra == [] and grounded == ["meter"]


@pytest.mark.parametrize("text", ["It is in 3/4.", "A lilting waltz time.",
                                  "Three beats per measure.", "It is in 7/8."])
def test_meter_contradicts(text):
    assert kinds(text)[0] == ["meter"]


def test_compound_meter():
    facts = ClipFacts(clip_id="x:1:0-1000", dataset="folder", duration_s=1.0, meter=2,
                      meter_confidence=0.9)
    assert kinds("It swings in 6/8.", facts)[0] == []


# --------------------------------------------------------------------------- chords

@pytest.mark.parametrize("text", [
    "The progression moves from F# minor to D major.",
    "The chords are F#m, D, A and E7.",
    "Its harmony leans on the E dominant chord.",
])
def test_chords_agree(text):
    contra, grounded = kinds(text)
    assert contra == [] and "chord" in grounded


@pytest.mark.parametrize("text", [
    "The chord progression is C, G, Am and F.",
    "The harmony moves from B minor to G major.",
    "A D minor chord closes the phrase.",
])
def test_chords_contradict(text):
    assert "chord" in kinds(text)[0]


def test_section_letters_are_not_chords():
    assert kinds("The A and B sections share the same chords.") == ([], [])


def test_chords_without_annotation():
    facts = ClipFacts(clip_id="x:1:0-1000", dataset="folder", duration_s=1.0,
                      chords=(ChordSegment(0, 1, "N"),))
    assert kinds("The chords move from C major to G major.", facts)[0] == ["chord", "chord"]


# --------------------------------------------------------------------------- instruments

def test_negative_tag_contradicts_a_mention():
    assert kinds("A soaring female vocal leads the song.")[0] == ["instrument"]


def test_negated_listed_instrument_contradicts():
    assert kinds("There are no drums at all.")[0] == ["instrument"]
    assert kinds("It does not feature any guitar.")[0] == ["instrument"]


def test_consistent_instrument_statements():
    contra, grounded = kinds("Guitar and drums drive it; there are no vocals, it is instrumental.")
    assert contra == [] and grounded == ["instrument"]


def test_unlisted_instruments_are_allowed_when_the_list_is_not_complete():
    assert kinds("A piano joins in the background.")[0] == []


def test_complete_instrument_list():
    facts = ClipFacts(clip_id="musicnet:1:0-1000", dataset="musicnet", duration_s=1.0,
                      instruments=("Violin", "Viola", "Cello"), instruments_complete=True)
    assert kinds("The cello carries the melody over the violins.", facts)[0] == []
    assert kinds("The strings play softly.", facts)[0] == []
    assert kinds("A piano accompanies the strings.", facts)[0] == ["instrument"]
    assert kinds("A soprano voice sings above.", facts)[0] == ["instrument"]


def test_several_contradictions_are_all_reported():
    contra, _ = kinds("It is in D major at 90 BPM in 3/4.")
    assert sorted(contra) == ["key", "meter", "tempo"]


# --------------------------------------------------------------------------- confidence threshold

UNSURE = ClipFacts(
    clip_id="folder:whale:0-23777", dataset="folder", duration_s=23.777, tempo_bpm=96.0,
    tempo_confidence=0.3, meter=4, meter_confidence=0.2, key="A# minor", key_confidence=0.42,
    chords=(ChordSegment(0, 20, "A#:min"),), chords_confidence=0.1)


@pytest.mark.parametrize("text,kind", [
    ("It is in Bb minor.", "key"), ("The tempo is about 96 BPM.", "tempo"),
    ("It is in 4/4.", "meter"), ("The harmony rests on a Bb minor chord.", "chord"),
])
def test_claims_below_the_confidence_threshold_are_ungrounded(text, kind):
    """What the writers would not state (below min_confidence), grounding does not accept:
    the annotation says there is no clear key, tempo, meter or chords."""
    r = check_text(text, UNSURE)
    assert [c.kind for c in r.contradictions] == [kind]
    assert "no clear" in r.contradictions[0].expected
    # the same claim is grounded once the threshold is below the annotation's confidence
    assert check_text(text, UNSURE, min_confidence=0.05).ok


def test_no_clear_key_is_not_a_key_claim():
    assert check_text("It has no clear key.", UNSURE).ok
    assert check_text("No clear key comes through in this excerpt.", UNSURE).ok


def test_spelling_does_not_matter_to_grounding():
    facts = ClipFacts(clip_id="x:1:0-1000", dataset="folder", duration_s=1.0, key="A# major",
                      key_confidence=0.9, chords=(ChordSegment(0, 1, "D#:maj"),),
                      chords_confidence=0.9)
    assert check_text("It is in Bb major, and the harmony moves to an Eb major chord.", facts).ok
    assert check_text("It is in A# major, and the harmony moves to D# major.", facts).ok
