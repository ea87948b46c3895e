"""Instruct: annotated clips → instruction data (MIR Q&A, captions, reasoning Q&A).

    llark instruct --input ANNOTATED[,ANNOTATED...] --output DIR [--llm template|openai]
                   [--base-url URL] [--model NAME] [--families mir,caption,reasoning]
                   [--concurrency N] [--cache-dir DIR] [Beam flags]
    python -m pipelines.instruct ...   (the same)

Pipeline::

    annotated_clip rows ─► Reshuffle ─► ToFactsFn ─► GenerateFn ─────► SplitCountsFn ─► Parquet
                           (over the     (typed       (each clip's units      │
                            workers)      ClipFacts)   go to the process's    └► counts ─► index
                                                       pool of --concurrency
                                                       threads as it arrives)

* ``--llm template`` (default, offline): deterministic MIR Q&A and captions from the annotations
  and metadata (``annotate.instruct.template``); the reasoning family needs an LLM and is skipped
  with the counted reason ``reasoning_needs_llm``.
* ``--llm openai``: any OpenAI-compatible server (``--base-url``: OpenAI, vLLM, llama.cpp,
  Ollama). The key is read from the environment variable named by ``--api-key-env`` (default
  ``OPENAI_API_KEY``) inside each worker; the config stores only the variable's name. Requests
  are cached under ``--cache-dir`` (default ``<output's parent>/.llark-cache/llm``) so a rerun
  sends none and writes the same records.

The unit of work is a (clip, family) pair. Each unit is written (one ``Instruction`` per kept
conversation, id ``{clip_id}:{family}:{n}``), skipped with a counted reason (``silent_clip``,
``reasoning_needs_llm``, ``template_nothing_to_say``), or dead-lettered with id
``{clip_id}:{family}`` (an LLM that fails after its retries, replies that stay unusable, or an
unexpected error in that unit alone: the other units of the clip and of the bundle go on); a row
that cannot be read at all dead-letters under its clip id. The index ``counts`` hold
``inputs`` (clips), ``units``, ``units_written``, ``dropped:<reason>`` for every pair validation
or grounding removed, and the LLM usage: ``llm_requests``, ``llm_cache_hits``, ``llm_retries``,
``tokens_in``, ``tokens_out``, ``cost_usd``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import sys
import traceback
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils import shared

from annotate.instruct.cache import LocalCacheStore, RequestCache
from annotate.instruct.facts import DEFAULT_MIN_CONFIDENCE, ChordSegment, ClipFacts, NoteSummary
from annotate.instruct.generate import (
    FAMILIES,
    GenerationSettings,
    InstructionGenerator,
    LLMWriter,
    UnitResult,
)
from annotate.instruct.grounding import GroundingSettings
from annotate.instruct.llm import JSON_MODES, LLMSettings, OpenAIChatBackend, api_key_from_env
from annotate.instruct.template import TemplateWriter
from llark.config import doc
from llark.errors import ConfigError, LlarkError
from pipelines.schema import (
    INSTRUCTION_SCHEMA,
    AnnotatedClip,
    DeadLetter,
    Instruction,
    Turn,
)
from pipelines.stage import (
    DEAD_TAG,
    SKIP_TAG,
    count_input_rows,
    parse_stage_args,
    read_input_rows,
    run_stage,
    skipped_json,
    unexpected_error_message,
    with_dead_letters,
    write_records,
)

log = logging.getLogger("llark.instruct")

STAGE = "instruct"
LLMS = ("template", "openai")
COUNTS_TAG = "counts"
CACHE_SUBDIR = ".llark-cache/llm"
# units a GenerateFn instance keeps unfinished (submitted, not yet emitted), per unit of
# --concurrency: enough that the pool always has the next units queued while finished ones are
# written out, few enough that a worker holds only a bounded number of clips in memory
PENDING_PER_CONCURRENCY = 2
USAGE_COUNTS = ("llm_calls", "llm_requests", "llm_cache_hits", "llm_retries", "tokens_in",
                "tokens_out", "cost_usd")


class InvalidInputRowError(LlarkError):
    """An annotated_clip row that cannot be read (missing field, bad value)."""


# --------------------------------------------------------------------------- config

@dataclass(frozen=True)
class InstructConfig:
    """Configuration of ``llark instruct`` (flags, or keys of a ``--config`` YAML file).

    Holds no secret: only the NAME of the variable that holds the API key."""

    input: str = doc("annotated clips: one or more folders (comma-separated) written by "
                     "llark annotate", default="")
    output: str = doc("folder for the instruction records: part-*.parquet, _index.json, "
                      "_dead_letter/", default="")
    llm: str = doc("template (offline, deterministic; no reasoning family) or openai (any "
                   "OpenAI-compatible server)", default="template")
    base_url: str = doc("OpenAI-compatible server, e.g. http://localhost:8000/v1 (vLLM), "
                        "http://localhost:11434/v1 (Ollama); empty = api.openai.com", default="")
    model: str = doc("model name for --llm openai", default="gpt-4o-mini")
    api_key_env: str = doc("NAME of the environment variable holding the API key (the key "
                           "itself never goes in a config or on the command line)",
                           default="OPENAI_API_KEY")
    families: tuple[str, ...] = doc("families to write: mir, caption, reasoning",
                                    default=FAMILIES)
    concurrency: int = doc("LLM requests in flight per worker process (its pool has a few "
                           "more threads, which build prompts and check replies meanwhile)",
                           default=16)
    temperature: float = doc("sampling temperature", default=0.7)
    max_completion: int = doc("most tokens per reply (the request's max_tokens)", default=1024)
    json_mode: str = doc("ask for JSON output (response_format): auto (fall back when the "
                         "server rejects it), on, off", default="auto")
    timeout_s: float = doc("seconds before a request times out (then it is retried)",
                           default=60.0)
    max_retries: int = doc("retries of a request after 429, 5xx, timeouts, connection errors",
                           default=5)
    backoff_initial_s: float = doc("first retry delay (doubles each retry, with jitter; a "
                                   "server's Retry-After wins)", default=1.0)
    backoff_max_s: float = doc("longest retry delay", default=60.0)
    reply_retries: int = doc("times to ask again when a reply is unusable or nothing in it "
                             "passes validation", default=2)
    cache: bool = doc("cache LLM replies on disk (a rerun sends no request)", default=True)
    cache_dir: str = doc("reply cache folder (local or gs://); empty = "
                         "<output's parent>/.llark-cache/llm", default="")
    few_shot: bool = doc("show the model one worked example per family", default=True)
    mir_pairs: int = doc("question-answer pairs to ask for per clip (mir family)", default=5)
    reasoning_pairs: int = doc("question-answer pairs to ask for per clip (reasoning family)",
                               default=3)
    min_confidence: float = doc("a key, tempo, meter or chord annotation is stated as a fact "
                                "only at this confidence or above (a calibrated probability); "
                                "below it the template says 'no clear key', the LLM prompt "
                                "marks it 'do not state' and grounding rejects any such claim",
                                default=DEFAULT_MIN_CONFIDENCE)
    tempo_tolerance: float = doc("grounding: a stated tempo may differ this much (relative) "
                                 "from the annotation", default=0.08)
    tempo_octave_ok: bool = doc("grounding: accept half/double the annotated tempo",
                                default=False)
    relative_mode_ok: bool = doc("grounding: accept the relative major/minor of the annotated "
                                 "key", default=False)
    price_in_per_mtok: float = doc("USD per million prompt tokens, for the cost estimate",
                                   default=0.0)
    price_out_per_mtok: float = doc("USD per million completion tokens, for the cost estimate",
                                    default=0.0)

    def __post_init__(self) -> None:
        if not self.input or not self.output:
            raise ConfigError("instruct needs --input and --output")
        if self.llm not in LLMS:
            raise ConfigError(f"llm must be one of {LLMS}, got {self.llm!r}")
        bad = [f for f in self.families if f not in FAMILIES]
        if bad or not self.families:
            raise ConfigError(f"families must be a non-empty subset of {FAMILIES}, got "
                              f"{list(self.families)}")
        if len(set(self.families)) != len(self.families):
            raise ConfigError(f"families repeat: {list(self.families)}")
        if self.llm == "openai" and not self.model:
            raise ConfigError("--llm openai needs --model")
        if self.json_mode not in JSON_MODES:
            raise ConfigError(f"json_mode must be one of {JSON_MODES}, got {self.json_mode!r}")
        if not 1 <= self.concurrency <= 1024:
            raise ConfigError(f"concurrency must be in 1..1024, got {self.concurrency}")
        if self.mir_pairs < 1 or self.reasoning_pairs < 1 or self.reply_retries < 0:
            raise ConfigError("mir_pairs and reasoning_pairs must be >= 1, reply_retries >= 0")
        if not 0 <= self.min_confidence <= 1 or not 0 <= self.tempo_tolerance < 1:
            raise ConfigError("min_confidence must be in [0, 1] and tempo_tolerance in [0, 1)")
        if self.price_in_per_mtok < 0 or self.price_out_per_mtok < 0:
            raise ConfigError("prices must be >= 0")
        if self.cache_dir.startswith(("http://", "https://")):
            raise ConfigError(f"cache_dir must be a folder (local or gs://), got {self.cache_dir}")
        if re.match(r"^[a-z][a-z0-9+.-]*://[^/]*@", self.base_url, re.I):
            raise ConfigError("base_url must not hold credentials (user:password@); put the key "
                              "in the environment variable named by --api-key-env")
        if self.llm != "template":
            self.llm_settings()    # validates the LLM fields (name of the key variable...)

    def llm_settings(self) -> LLMSettings:
        return LLMSettings(model=self.model, base_url=self.base_url, api_key_env=self.api_key_env,
                           temperature=self.temperature, max_tokens=self.max_completion,
                           json_mode=self.json_mode, timeout_s=self.timeout_s,
                           max_retries=self.max_retries, backoff_initial_s=self.backoff_initial_s,
                           backoff_max_s=self.backoff_max_s,
                           price_in_per_mtok=self.price_in_per_mtok,
                           price_out_per_mtok=self.price_out_per_mtok)

    def generation_settings(self) -> GenerationSettings:
        return GenerationSettings(
            mir_pairs=self.mir_pairs, reasoning_pairs=self.reasoning_pairs,
            min_confidence=self.min_confidence, few_shot=self.few_shot,
            reply_retries=self.reply_retries,
            grounding=GroundingSettings(self.tempo_tolerance, self.tempo_octave_ok,
                                        self.relative_mode_ok))

    def cache_root(self) -> str:
        """Where replies are cached: ``cache_dir`` or ``<output's parent>/.llark-cache/llm``."""
        if self.cache_dir:
            return self.cache_dir.rstrip("/")
        out = self.output.rstrip("/")
        parent = out.rsplit("/", 1)[0] if "/" in out else "."
        if "://" in out and parent.endswith(":/"):      # gs://bucket itself
            parent = out
        return f"{parent}/{CACHE_SUBDIR}"


# --------------------------------------------------------------------------- records → facts

def facts_from_annotated(ac: AnnotatedClip) -> ClipFacts:
    """The typed view the instruction writers read (annotate/ never sees schema records)."""
    c, a = ac.clip, ac.annotation
    notes = NoteSummary.from_notes(((n.start_s, n.end_s, n.program, n.pitch_midi)
                                    for n in c.notes), c.duration_s)
    return ClipFacts(
        clip_id=c.id, dataset=c.dataset, duration_s=c.duration_s, source_id=c.source_id,
        audio_uri=c.audio_uri, title=c.title, artist=c.artist, album=c.album, tags=c.tags,
        genres=c.genres, caption=c.caption, aspects=c.aspects, instruments=c.instruments,
        instruments_complete=c.dataset == "musicnet" and bool(c.notes),
        composer=c.composer, composition=c.composition, movement=c.movement,
        ensemble=c.ensemble, tempo_bpm=a.tempo_bpm, tempo_confidence=a.tempo_confidence,
        meter=a.meter, meter_confidence=a.meter_confidence, key=a.key,
        key_confidence=a.key_confidence,
        chords=tuple(ChordSegment(s.start_s, s.end_s, s.label) for s in a.chords),
        chords_confidence=a.chords_confidence, notes=notes, is_silent=a.is_silent)


def to_instructions(result: UnitResult, facts: ClipFacts, backend: str, model: str,
                    prompt_version: str) -> list[Instruction]:
    return [Instruction(
        id=f"{facts.clip_id}:{conv.family}:{conv.n}", clip_id=facts.clip_id,
        dataset=facts.dataset, family=conv.family,
        turns=tuple(Turn(m.role, m.content) for m in conv.turns), backend=backend, model=model,
        prompt_version=prompt_version, validation_notes=conv.notes)
        for conv in result.conversations]


class ToFactsFn(beam.DoFn):
    """annotated_clip row → :class:`ClipFacts`; unreadable rows raise a typed error (dead letter
    under the row's id)."""

    def process(self, row: dict) -> Iterable[ClipFacts]:
        try:
            ac = AnnotatedClip.from_row(row)
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidInputRowError(
                f"annotated_clip row {row.get('id')!r} cannot be read: {type(exc).__name__}: "
                f"{exc}; rerun llark annotate for it") from None
        yield facts_from_annotated(ac)


# --------------------------------------------------------------------------- generation

class FileSystemsCacheStore:
    """Reply cache over Beam's FileSystems, for ``gs://`` (object writes are atomic there)."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")

    def _path(self, key: str) -> str:
        return f"{self.root}/{key[:2]}/{key}.json"

    def read(self, key: str) -> bytes | None:
        path = self._path(key)
        if not FileSystems.exists(path):
            return None
        with FileSystems.open(path) as f:
            return f.read()

    def write(self, key: str, data: bytes) -> None:
        with FileSystems.create(self._path(key)) as f:
            f.write(data)


def build_generator(cfg: InstructConfig, cache_root: str = "") -> InstructionGenerator:
    """The generator a worker uses (the LLM client and its key are made here, in the worker)."""
    settings = cfg.generation_settings()
    if cfg.llm == "template":
        return InstructionGenerator(TemplateWriter(cfg.min_confidence), settings)
    llm = cfg.llm_settings()
    cache = None
    if cfg.cache:
        root = cache_root or cfg.cache_root()
        store = FileSystemsCacheStore(root) if "://" in root else LocalCacheStore(root)
        cache = RequestCache(store)
    chat = OpenAIChatBackend(llm, api_key_from_env(llm), cache=cache,
                             max_in_flight=cfg.concurrency)
    return InstructionGenerator(LLMWriter(chat, settings), settings)


@dataclass(frozen=True)
class _Outcome:
    """What one (clip, family) unit came to: a result, or the error that dead-letters it."""

    facts: ClipFacts
    family: str
    result: UnitResult | None
    error_type: str       # "" when there is a result
    error_message: str
    tally: Counter

    @property
    def unit_id(self) -> str:
        return f"{self.facts.clip_id}:{self.family}"


@dataclass(frozen=True)
class UnitCounts:
    """Tallies of one bundle of one worker, passed on to the index (not a record)."""

    values: dict[str, float]


def run_unit(generator: InstructionGenerator, facts: ClipFacts, family: str) -> _Outcome:
    """One (clip, family); never raises: an expected failure (a ``LlarkError``) or an unexpected
    one (a bug, e.g. a ``KeyError`` in a writer) becomes the error of this unit alone."""
    tally: Counter = Counter()
    try:
        result = generator.generate(facts, family, tally)
    except LlarkError as exc:
        return _Outcome(facts, family, None, type(exc).__name__, str(exc), tally)
    except Exception as exc:     # noqa: BLE001 -- one unit's bug must not fail the other units
        tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
        return _Outcome(facts, family, None, type(exc).__name__,
                        unexpected_error_message(repr(exc), tb), tally)
    return _Outcome(facts, family, result, "", "", tally)


def pool_threads(concurrency: int) -> int:
    """Threads of a worker's pool: ``concurrency`` requests in flight (the client's cap) plus a
    few threads that build the next prompts and check the last replies meanwhile, so that a
    request slot never waits for that work."""
    return concurrency + concurrency // 4 + 2


class UnitPool:
    """One per worker process, shared by all its ``GenerateFn`` instances (harness threads)
    through :class:`apache_beam.utils.shared.Shared`: the generator (its HTTP client, keep-alive
    connections and reply cache) and, with an LLM, :func:`pool_threads` threads that run units,
    of which ``concurrency`` at most have a request out.

    The threads outlive bundles: a unit submitted at the end of one bundle and those of the
    next bundle share the same connections, and nothing is rebuilt per bundle."""

    def __init__(self, cfg: InstructConfig, cache_root: str) -> None:
        self.generator = build_generator(cfg, cache_root)
        self.executor: ThreadPoolExecutor | None = None
        if cfg.llm != "template":
            self.executor = ThreadPoolExecutor(max_workers=pool_threads(cfg.concurrency),
                                               thread_name_prefix="llark-llm")

    def submit(self, facts: ClipFacts, family: str) -> "Future[_Outcome]":
        assert self.executor is not None
        return self.executor.submit(run_unit, self.generator, facts, family)


class MakeUnitPool:
    """``Shared.acquire`` constructor (a module-level callable object, not a closure)."""

    def __init__(self, cfg: InstructConfig, cache_root: str) -> None:
        self.cfg = cfg
        self.cache_root = cache_root

    def __call__(self) -> UnitPool:
        return UnitPool(self.cfg, self.cache_root)


class GenerateFn(beam.DoFn):
    """Clips → instructions, skip notes, dead letters and one :class:`UnitCounts` per bundle.

    With an LLM, each clip's units go to the worker process's :class:`UnitPool` as the clip
    arrives, and ``process`` emits whatever units have finished by then (of this clip or of
    earlier ones): requests stay in flight from one clip to the next, and the pool keeps
    ``concurrency`` requests out. ``process`` waits only when this instance has
    ``PENDING_PER_CONCURRENCY x concurrency`` units unfinished (so a worker never holds more
    than that in memory); ``finish_bundle`` drains the rest. The template runs each unit inline.

    Every unit is written, skipped or dead-lettered on its own (``{clip_id}:{family}``), also
    when it raises something other than a ``LlarkError``. Outputs are in the global window
    (the stage reads record sets)."""

    def __init__(self, cfg: InstructConfig, cache_root: str) -> None:
        self._cfg = cfg
        self._cache_root = cache_root
        self._shared = shared.Shared()
        self._pool: UnitPool | None = None
        self._done: queue.SimpleQueue | None = None
        self._pending = 0
        self._counts: Counter = Counter()

    def setup(self) -> None:
        self._pool = self._shared.acquire(MakeUnitPool(self._cfg, self._cache_root))

    def start_bundle(self) -> None:
        self._done = queue.SimpleQueue()
        self._pending = 0
        self._counts = Counter(clips=0, units=0, units_written=0, units_skipped=0, units_dead=0)
        if self._pool.generator.backend != "template":   # usage figures even when they are 0
            self._counts.update(dict.fromkeys(USAGE_COUNTS, 0))

    def process(self, facts: ClipFacts) -> Iterable[Any]:
        pool = self._pool
        self._counts["clips"] += 1
        if pool.executor is None:
            for family in self._cfg.families:
                yield from self._outputs(run_unit(pool.generator, facts, family))
            return
        for family in self._cfg.families:
            pool.submit(facts, family).add_done_callback(self._done.put)
            self._pending += 1
        limit = PENDING_PER_CONCURRENCY * self._cfg.concurrency
        while self._pending >= limit:
            yield from self._outputs(self._done.get().result())
        while self._pending:
            try:
                future = self._done.get_nowait()
            except queue.Empty:
                break
            yield from self._outputs(future.result())

    def finish_bundle(self) -> Iterable[Any]:
        while self._pending:
            for out in self._outputs(self._done.get().result()):
                if isinstance(out, beam.pvalue.TaggedOutput):
                    yield beam.pvalue.TaggedOutput(out.tag, GlobalWindows.windowed_value(out.value))
                else:
                    yield GlobalWindows.windowed_value(out)
        yield GlobalWindows.windowed_value(UnitCounts(dict(self._counts)))

    def _outputs(self, o: _Outcome) -> list[Any]:
        """One finished unit → its outputs; adds to the bundle's counts. Never raises: a unit
        whose result cannot be made into records dead-letters alone (``process`` emits other
        clips' units too, which an exception would take with it)."""
        if self._pool.executor is not None:
            self._pending -= 1
        counts, gen = self._counts, self._pool.generator
        counts["units"] += 1
        counts.update(o.tally)
        error_type, message = o.error_type, o.error_message
        if not error_type:
            try:
                if o.result.skip_reason:
                    counts["units_skipped"] += 1
                    return [beam.pvalue.TaggedOutput(
                        SKIP_TAG, skipped_json(STAGE, o.unit_id, o.result.skip_reason))]
                records = to_instructions(o.result, o.facts, gen.backend, gen.model,
                                          gen.prompt_version)
            except Exception as exc:     # noqa: BLE001 -- a bug in one unit's records
                tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
                error_type, message = type(exc).__name__, unexpected_error_message(repr(exc), tb)
            else:
                counts["units_written"] += 1
                counts[f"instructions:{o.family}"] += len(o.result.conversations)
                return records
        counts["units_dead"] += 1
        return [beam.pvalue.TaggedOutput(DEAD_TAG, DeadLetter(
            STAGE, o.unit_id, error_type, message, o.facts.audio_uri).to_json())]


class SplitCountsFn(beam.DoFn):
    """Instructions to the main output, ``(name, value)`` count pairs to ``counts``."""

    def process(self, item: Any) -> Iterable[Any]:
        if isinstance(item, UnitCounts):
            for name, value in item.values.items():
                yield beam.pvalue.TaggedOutput(COUNTS_TAG, (name, value))
        else:
            yield item


def count_line(item: tuple[str, float]) -> str:
    return json.dumps({item[0]: item[1]})


class ReadCounts:
    """Called by run_stage after the pipeline: the summed counts from ``{staging}/counts``."""

    def __init__(self, staging: str, fixed: dict[str, Any]) -> None:
        self.staging = staging
        self.fixed = fixed

    def __call__(self) -> dict[str, Any]:
        counts: dict[str, Any] = dict(self.fixed)
        pattern = f"{self.staging}/counts/*"
        for meta in FileSystems.match([pattern])[0].metadata_list:
            with FileSystems.open(meta.path) as f:
                for line in f.read().decode("utf-8").splitlines():
                    if line.strip():
                        for name, value in json.loads(line).items():
                            counts[name] = counts.get(name, 0) + value
        if "cost_usd" in counts:
            counts["cost_usd"] = round(float(counts["cost_usd"]), 6)
        return dict(sorted(counts.items()))


def build_instruct(pipeline: beam.Pipeline, cfg: InstructConfig, staging: str,
                   cache_root: str) -> Callable[[], dict[str, Any]]:
    rows = read_input_rows(pipeline, cfg.input, "annotated_clip")
    # spread the rows over the workers: a record set is often one file, which one worker
    # would otherwise read and generate alone
    spread = rows | "Spread" >> beam.Reshuffle()
    facts = with_dead_letters(spread, "ToFacts", ToFactsFn(), STAGE, staging)
    generated = with_dead_letters(facts, "Generate", GenerateFn(cfg, cache_root), STAGE,
                                  staging)
    split = generated | "SplitCounts" >> beam.ParDo(SplitCountsFn()).with_outputs(
        COUNTS_TAG, main="instructions")
    write_records(split.instructions, INSTRUCTION_SCHEMA, staging)
    (split[COUNTS_TAG] | "SumCounts" >> beam.CombinePerKey(sum)
     | "CountLines" >> beam.Map(count_line)
     | "WriteCounts" >> beam.io.WriteToText(f"{staging}/counts/part", file_name_suffix=".jsonl"))
    n_inputs = count_input_rows(cfg.input)
    fixed = {"inputs": n_inputs, "backend": cfg.llm,
             "model": cfg.model if cfg.llm != "template" else "template",
             "families": ",".join(cfg.families)}
    return ReadCounts(staging, fixed)


class InstructBuild:
    """``build(pipeline, staging)`` for :func:`pipelines.stage.run_stage` (no closures)."""

    def __init__(self, cfg: InstructConfig, cache_root: str) -> None:
        self.cfg = cfg
        self.cache_root = cache_root

    def __call__(self, pipeline: beam.Pipeline, staging: str) -> Callable[[], dict[str, Any]]:
        return build_instruct(pipeline, self.cfg, staging, self.cache_root)


def preflight(cfg: InstructConfig) -> str:
    """Checks in the driver before any worker starts; returns the cache folder.

    An LLM run needs its key variable set (for api.openai.com) and a writable cache folder."""
    cache_root = cfg.cache_root() if (cfg.llm != "template" and cfg.cache) else ""
    if cfg.llm != "template":
        api_key_from_env(cfg.llm_settings())          # raises ConfigError naming the variable
        if cache_root and "://" not in cache_root:
            os.makedirs(cache_root, exist_ok=True)
            cache_root = os.path.abspath(cache_root)
        print(f"[{STAGE}] {cfg.llm} model {cfg.model!r} at {cfg.base_url or 'api.openai.com'}; "
              f"{cfg.concurrency} requests in flight per worker; reply cache: "
              f"{cache_root or 'off'}", file=sys.stderr)
    return cache_root


def run(argv: list[str] | None = None) -> int:
    """``llark instruct``; returns 0 on success, 1 on a config error or a failed run."""
    try:
        cfg, args = parse_stage_args(InstructConfig, argv, "llark instruct",
                                     "Write instruction data (MIR Q&A, captions, reasoning) from "
                                     "annotated clips with a template or an LLM.")
        cache_root = preflight(cfg)
        units = count_input_rows(cfg.input) * len(cfg.families)
        run_stage(STAGE, "instruction", cfg.output, cfg, args.beam_args,
                  InstructBuild(cfg, cache_root), force=args.force,
                  max_error_rate=args.max_error_rate, inputs_count=units or None,
                  job_file=args.job_file)
    except LlarkError as exc:
        print(f"llark instruct: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # Run the importable module, not __main__: Beam pickles this module's DoFns by module path.
    from pipelines.instruct import run as _run

    raise SystemExit(_run())
