"""The offline ``template`` writer: deterministic MIR Q&A and captions written straight from a
clip's annotations and metadata, no LLM involved.

Every record it produces says ``backend="template"`` and ``prompt_version=TEMPLATE_VERSION``.
Wording varies between clips (a phrasing is picked from a small pool by a hash of the clip ID
and the question slot), never between runs. Keys and chords are spelled as musicians write them
(``Bb major``; chords in the clip's key). A key, tempo, meter or chord timeline below
``min_confidence`` is never stated: the key question is answered "no clear key" when the
annotator offered an unsure key (unless the metadata names the work's key), the others are left
out. The reasoning
family needs an LLM; this writer does not support it (the caller skips it, counted).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from annotate.instruct.facts import DEFAULT_MIN_CONFIDENCE, ClipFacts
from annotate.instruct.grounding import metadata_keys
from annotate.instruct.music import NEGATIVE_TAG, canonical_instrument, readable_chord
from annotate.instruct.render import chord_timeline
from annotate.instruct.validate import Draft, QAPair, Repair, pick
from llark.music import spell_key

TEMPLATE_VERSION = "template-2"      # 2: musicians' spelling, "no clear key" below the threshold

MOOD_WORDS = frozenset({
    "slow", "fast", "loud", "quiet", "soft", "weird", "heavy", "dark", "calm", "happy", "sad",
    "mellow", "upbeat", "dreamy", "spacey", "melodic", "hard", "eerie", "strange", "funky",
    "energetic", "relaxing", "relaxed", "peaceful", "aggressive", "gentle", "sparse", "busy",
    "epic", "romantic", "playful", "tense", "bright", "warm", "catchy", "groovy", "noisy",
    "harsh", "smooth", "light", "dramatic", "somber", "sombre", "uplifting", "chill", "repetitive",
})
GENRE_WORDS = frozenset({
    "classical", "classic", "techno", "rock", "pop", "electronic", "electronica", "new age",
    "dance", "metal", "country", "indian", "opera", "jazz", "folk", "ambient", "blues", "hip hop",
    "hip-hop", "rap", "punk", "house", "trance", "reggae", "funk", "soul", "disco", "baroque",
    "orchestral", "world", "latin", "industrial", "hard rock", "soft rock", "instrumental pop",
    "medieval", "choral", "celtic", "experimental",
})
_NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven",
                 8: "eight", 9: "nine", 12: "twelve"}

Q_TEMPO = ("What is the tempo of this music?", "How fast is this piece, in beats per minute?",
           "Roughly how many beats per minute does this track move at?",
           "What tempo does this excerpt have?")
Q_KEY = ("What key is this music in?", "What is the key of this piece?",
         "Which key does this excerpt sound like it is in?")
A_NO_KEY = ("There is no clear key in this excerpt.", "It has no clear key.",
            "No clear key comes through in this excerpt.")
Q_METER = ("How many beats are there in each bar?", "What is the meter of this music?",
           "How are the beats grouped into bars in this excerpt?")
Q_CHORDS = ("Which chords can you hear in this excerpt?",
            "What chord progression does this music use?",
            "What chords does the harmony move through?")
Q_GENRE = ("What genre is this music?", "How would you classify the style of this track?",
           "What style of music is this?")
Q_INSTRUMENTS = ("Which instruments can you hear?", "What instruments are playing in this excerpt?",
                 "What is the instrumentation of this piece?")
Q_VOCALS = ("Does this music have vocals?", "Is anyone singing in this excerpt?",
            "Are there vocals in this track?")
Q_MOOD = ("How would you describe the character of this music?",
          "What is the mood of this excerpt?", "What kind of feeling does this music give off?")
Q_ASPECTS = ("What stands out when you listen to this recording?",
             "What are the most noticeable qualities of this music?",
             "Which features of this excerpt catch your ear?")
Q_COMPOSER = ("Who composed this piece?", "Who wrote this music?",
              "Which composer is this piece by?")
Q_WORK = ("What piece is this?", "Which work is being played here?",
          "Can you name the composition in this excerpt?")
Q_ENSEMBLE = ("What kind of ensemble is playing?", "What group of musicians performs this piece?",
              "How large is the ensemble, and what is it?")
Q_RANGE = ("What range of pitches does this excerpt cover?",
           "How low and how high do the notes go in this excerpt?",
           "What is the pitch range of the music here?")
Q_DENSITY = ("How busy is the music in this excerpt?", "How many notes are being played?",
             "Is the texture sparse or dense?")


def join_words(items: list[str]) -> str:
    """``["a", "b", "c"]`` → ``"a, b and c"``."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def pace_word(bpm: float) -> str:
    if bpm < 70:
        return "a slow pace"
    if bpm < 100:
        return "a moderate pace"
    if bpm < 130:
        return "a lively pace"
    return "a fast pace"


def meter_phrase(meter: int) -> str:
    beats = _NUMBER_WORDS.get(meter, str(meter))
    feel = {2: ", a duple meter", 3: ", a triple meter", 4: ", a common quadruple meter"}
    return f"{beats} beats per bar{feel.get(meter, '')}"


@dataclass(frozen=True)
class _TagView:
    instruments: list[str]       # canonical, in tag order
    absent: list[str]
    vocal_gender: str            # "female", "male" or ""
    moods: list[str]
    genres: list[str]


def _tag_view(facts: ClipFacts) -> _TagView:
    instruments: list[str] = []
    absent: list[str] = []
    moods: list[str] = []
    genres: list[str] = []
    gender = ""
    for raw in facts.tags:
        tag = raw.strip().lower()
        neg = NEGATIVE_TAG.match(tag)
        if neg:
            canon = canonical_instrument(neg.group(1))
            if canon and canon not in absent:
                absent.append(canon)
            continue
        if tag in ("female", "woman", "female vocal", "female vocals", "female voice",
                   "female singer"):
            gender = gender or "female"
        elif tag in ("male", "man", "male vocal", "male vocals", "male voice", "male singer"):
            gender = gender or "male"
        canon = canonical_instrument(tag)
        if canon:
            if canon not in instruments:
                instruments.append(canon)
        elif tag in MOOD_WORDS:
            moods.append(tag)
        elif tag in GENRE_WORDS:
            genres.append(tag)
    return _TagView(instruments, absent, gender, moods, genres)


class TemplateWriter:
    """``write(facts, family)`` → Q&A pairs (mir) or a caption (caption)."""

    name = "template"
    model = "template"
    prompt_version = TEMPLATE_VERSION
    retryable = False

    def __init__(self, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> None:
        self.min_confidence = min_confidence

    def supports(self, family: str) -> bool:
        return family in ("mir", "caption")

    def draft(self, facts: ClipFacts, family: str, tally: Counter, repair: Repair | None = None
              ) -> Draft:
        """The :class:`~annotate.instruct.generate.Writer` interface (``tally`` and ``repair``
        are unused: nothing is requested, and asking again gives the same answer)."""
        if family == "caption":
            return Draft(caption=self.caption(facts))
        if family == "mir":
            return Draft(pairs=tuple(self.mir_pairs(facts)))
        raise ValueError(f"the template writes mir and caption, not {family!r}")

    # ------------------------------------------------------------------ facts we trust

    def _tempo(self, f: ClipFacts) -> int | None:
        tempo = f.clear_tempo(self.min_confidence)
        return round(tempo) if tempo else None

    def _key(self, f: ClipFacts) -> str:
        return f.clear_key(self.min_confidence)

    def _meter(self, f: ClipFacts) -> int:
        return f.clear_meter(self.min_confidence)

    def _chords(self, f: ClipFacts) -> list[str]:
        if not f.clear_chords(self.min_confidence):
            return []
        spelling = spell_key(f.key) or None
        names: list[str] = []
        for span in chord_timeline(f.chords):
            if span.label in ("N", "X"):
                continue
            name = readable_chord(span.label, spelling)
            if name not in names:
                names.append(name)
        return names[:6]

    def _instruments(self, f: ClipFacts, tags: _TagView) -> list[str]:
        if f.instruments:
            return [i.strip().lower() for i in f.instruments if i.strip()]
        return [i for i in tags.instruments if i != "vocals"]

    def _genres(self, f: ClipFacts, tags: _TagView) -> list[str]:
        return [g.strip().lower() for g in f.genres if g.strip()] or tags.genres

    # ------------------------------------------------------------------ families

    def mir_pairs(self, f: ClipFacts) -> list[QAPair]:
        cid = f.clip_id
        tags = _tag_view(f)
        out: list[QAPair] = []
        tempo = self._tempo(f)
        if tempo is not None:
            out.append(QAPair(pick(Q_TEMPO, cid, "tempo"),
                              f"The tempo is about {tempo} BPM, {pace_word(tempo)}."))
        key = self._key(f)
        if key:
            out.append(QAPair(pick(Q_KEY, cid, "key"), f"It is in {key}."))
        elif f.key and not f.is_silent and not metadata_keys(f):   # unsure, and no work key
            out.append(QAPair(pick(Q_KEY, cid, "key"), pick(A_NO_KEY, cid, "no_key")))
        meter = self._meter(f)
        if meter:
            out.append(QAPair(pick(Q_METER, cid, "meter"), f"It has {meter_phrase(meter)}."))
        chords = self._chords(f)
        if len(chords) == 1:
            out.append(QAPair(pick(Q_CHORDS, cid, "chords"),
                              f"The harmony stays on {chords[0]} throughout."))
        elif chords:
            out.append(QAPair(pick(Q_CHORDS, cid, "chords"),
                              f"The harmony moves through {join_words(chords)}."))
        genres = self._genres(f, tags)
        if genres:
            answer = f"It sounds like {genres[0]}" + ("" if genres[0].endswith("music") else " music")
            answer += f", with elements of {join_words(genres[1:4])}." if len(genres) > 1 else "."
            out.append(QAPair(pick(Q_GENRE, cid, "genre"), answer))
        instruments = self._instruments(f, tags)
        if instruments:
            lead = "The excerpt is played by" if f.instruments_complete else "I can hear"
            out.append(QAPair(pick(Q_INSTRUMENTS, cid, "instruments"),
                              f"{lead} {join_words(instruments[:6])}."))
        if "vocals" in tags.absent:
            out.append(QAPair(pick(Q_VOCALS, cid, "vocals"),
                              "No, there are no vocals; the music is purely instrumental."))
        elif "vocals" in tags.instruments or tags.vocal_gender:
            who = f"a {tags.vocal_gender} vocalist" if tags.vocal_gender else "vocals"
            out.append(QAPair(pick(Q_VOCALS, cid, "vocals"), f"Yes, there is {who}."
                              if tags.vocal_gender else "Yes, it features vocals."))
        if tags.moods:
            out.append(QAPair(pick(Q_MOOD, cid, "mood"),
                              f"It comes across as {join_words(tags.moods[:4])}."))
        if f.aspects:
            out.append(QAPair(pick(Q_ASPECTS, cid, "aspects"),
                              f"What stands out: {join_words([a.strip() for a in f.aspects[:6]])}."))
        if f.composer:
            out.append(QAPair(pick(Q_COMPOSER, cid, "composer"),
                              f"This is music by {f.composer}."))
        if f.composition:
            work = f.composition + (f", {f.movement}" if f.movement else "")
            out.append(QAPair(pick(Q_WORK, cid, "work"), f"It is {work}."))
        if f.ensemble:
            out.append(QAPair(pick(Q_ENSEMBLE, cid, "ensemble"),
                              f"It is played by {article(f.ensemble.strip().lower())}."))
        if f.notes is not None:
            n = f.notes
            out.append(QAPair(pick(Q_RANGE, cid, "range"),
                              f"The notes span from {n.lowest} up to {n.highest}."))
            density = ("sparse" if n.notes_per_s < 3 else "moderately busy"
                       if n.notes_per_s < 8 else "dense")
            out.append(QAPair(pick(Q_DENSITY, cid, "density"),
                              f"The texture is {density}, with about {n.notes_per_s:.1f} notes "
                              "per second."))
        return out

    def caption(self, f: ClipFacts) -> str:
        """A musician's caption if the clip has one, else sentences built from the facts."""
        if f.caption.strip():
            return " ".join(f.caption.split())
        tags = _tag_view(f)
        genres = self._genres(f, tags)
        instruments = self._instruments(f, tags)
        moods = tags.moods[:2]
        head = " ".join(moods[:1] + genres[:1])
        noun = f"{head} piece" if head else "piece"
        first = article(noun)
        if f.ensemble:
            first += f" for {f.ensemble.strip().lower()}"
        if instruments:
            first += f" featuring {join_words(instruments[:4])}"
        if f.composer:
            first += f" by {f.composer}"
        sentences = [first[0].upper() + first[1:] + "."]
        details = []
        tempo = self._tempo(f)
        if tempo is not None:
            details.append(f"moves at about {tempo} BPM")
        meter = self._meter(f)
        if meter:
            details.append(f"has {_NUMBER_WORDS.get(meter, str(meter))} beats per bar")
        key = self._key(f)
        if key:
            details.append(f"is in {key}")
        if details:
            sentences.append(f"It {join_words(details)}.")
        chords = self._chords(f)
        if len(chords) > 1:
            sentences.append(f"The harmony moves through {join_words(chords[:4])}.")
        if "vocals" in tags.absent:
            sentences.append("There are no vocals.")
        if len(sentences) == 1 and not (instruments or genres or f.composer):
            return ""          # nothing worth saying: the caller skips the clip's caption
        return " ".join(sentences)
