"""The Beam stage ``llark instruct``: the DoFns under TestPipeline, and end-to-end runs on tmp
folders with the template and against a real chat-completions server on 127.0.0.1 (retries,
dead letters, grounding drops, every clip accounted for, zero requests on a rerun, a server
that dies mid-run, and the API key in no output file, cache file or log line)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from annotate.instruct.generate import LLMWriter
from annotate.instruct.prompts import PROMPT_VERSION
from annotate.instruct.template import TEMPLATE_VERSION
from llark.config import to_dict
from llark.errors import ConfigError
from pipelines import instruct as instruct_stage
from pipelines import schema as s
from pipelines.instruct import (
    DEAD_TAG,
    SKIP_TAG,
    FileSystemsCacheStore,
    GenerateFn,
    InstructConfig,
    ToFactsFn,
    UnitCounts,
    facts_from_annotated,
    pool_threads,
    run,
)
from tests.llm_server import LLMServer

KEY = "sk-llark-FAKE-e2e-5f0c3a9e81d2-never-print"
FAST = ["--direct_num_workers", "1", "--direct_running_mode", "in_memory"]


def clip(i: int, title: str = "", dataset: str = "fma") -> s.Clip:
    sid = f"{i:06d}"
    return s.Clip(id=s.clip_id(dataset, sid, 0, 10.0), dataset=dataset, source_id=sid,
                  split="train", audio_uri=f"/data/{sid}.mp3", start_s=0.0, end_s=10.0,
                  sample_rate_hz=44100, title=title or f"Song {i}", genres=("Rock",),
                  tags=("guitar", "loud"))


def annotation(c: s.Clip, tempo: float = 140.0, silent: bool = False) -> s.Annotation:
    return s.Annotation(clip_id=c.id, backend="consensus", tempo_bpm=tempo, tempo_confidence=0.9,
                        beats=(), downbeats_s=(), meter=4, meter_confidence=0.8, key="F# minor",
                        key_confidence=0.7,
                        chords=(s.ChordSegment(0.0, 4.0, "F#:min"),
                                s.ChordSegment(4.0, 8.0, "D:maj")),
                        chords_confidence=0.6, is_silent=silent)


def write_input(folder: Path, rows: list[dict]) -> None:
    s.write_record_set(folder, rows, "annotated_clip", "annotate")


def rows_of(clips_and_annotations) -> list[dict]:
    return [s.AnnotatedClip(c, a).to_row() for c, a in clips_and_annotations]


def read_output(out: Path) -> tuple[s.ShardIndex, list[s.Instruction], list[s.DeadLetter]]:
    index = s.verify_shards(out, s.read_index(out, "instruction"))
    records = [s.Instruction.from_row(r) for e in index.shards
               for r in pq.read_table(out / e.path).to_pylist()]
    dead_file = out / s.DEAD_LETTER_DIR / "instruct" / "part-00000.jsonl"
    dead = [s.DeadLetter.from_json(line) for line in dead_file.read_text().splitlines()] \
        if dead_file.exists() else []
    return index, records, dead


def assert_every_unit_accounted(index, records, dead, clip_ids, families):
    """Each (clip, family) is written, skipped or dead-lettered; a dead clip covers all."""
    written = {r.id.rsplit(":", 2)[0] + ":" + r.family for r in records}
    dead_ids = {d.id for d in dead}
    n_units = len(clip_ids) * len(families)
    n_skipped = sum(index.skipped.values())
    accounted = 0
    for cid in clip_ids:
        for fam in families:
            unit = f"{cid}:{fam}"
            if cid in dead_ids or unit in dead_ids or unit in written:
                accounted += 1
    assert accounted + n_skipped == n_units
    assert len(written) == index.counts.get("units_written", 0)
    assert written.isdisjoint(dead_ids)


def scan_for(secret: str, *folders: Path) -> list[Path]:
    hits = []
    for folder in folders:
        for p in folder.rglob("*"):
            if p.is_file() and secret.encode() in p.read_bytes():
                hits.append(p)
    return hits


# --------------------------------------------------------------------------- config

def test_config_holds_no_secret_and_validates():
    cfg = InstructConfig(input="in", output="out/instr", llm="openai", api_key_env="MY_KEY")
    assert to_dict(cfg)["api_key_env"] == "MY_KEY"       # a name, not redacted, not a key
    assert cfg.cache_root() == "out/.llark-cache/llm"
    assert InstructConfig(input="i", output="gs://b/run/instr").cache_root() == \
        "gs://b/run/.llark-cache/llm"
    with pytest.raises(ConfigError, match="families"):
        InstructConfig(input="i", output="o", families=("mir", "poetry"))
    with pytest.raises(ConfigError, match="llm"):
        InstructConfig(input="i", output="o", llm="gpt")
    with pytest.raises(ConfigError, match="environment variable"):
        InstructConfig(input="i", output="o", llm="openai", api_key_env=KEY)
    with pytest.raises(ConfigError, match="credentials"):
        InstructConfig(input="i", output="o", llm="openai",
                       base_url="https://me:secret@llm.example.com/v1")


def test_filesystems_cache_store_round_trip(tmp_path):
    """The store used for gs:// cache folders, exercised through Beam's local filesystem."""
    from annotate.instruct.cache import CachedReply, RequestCache, request_key

    cache = RequestCache(FileSystemsCacheStore(str(tmp_path / "remote")))
    key = request_key("m", {"temperature": 0.5}, [{"role": "user", "content": "x"}])
    assert cache.get(key) is None
    cache.put(key, "m", {"temperature": 0.5}, [], CachedReply("reply", 3, 4, "stop"))
    assert cache.get(key) == CachedReply("reply", 3, 4, "stop")
    assert (tmp_path / "remote" / key[:2] / f"{key}.json").exists()


# --------------------------------------------------------------------------- DoFns

def test_dofns_under_test_pipeline():
    good = [(clip(i), annotation(clip(i))) for i in range(3)]
    silent = (clip(7), annotation(clip(7), silent=True))
    rows = rows_of(good + [silent])
    bad = dict(rows[0], id="fma:bad:0-10000", split="bogus")       # Clip() refuses the split
    cfg = InstructConfig(input="unused", output="unused", families=("mir", "caption",
                                                                    "reasoning"))
    with TestPipeline() as p:
        facts = (p | beam.Create(rows + [bad])
                 | beam.ParDo(ToFactsFn()).with_exception_handling(use_subprocess=False))
        out = (facts["good"]
               | beam.ParDo(GenerateFn(cfg, "")).with_outputs(SKIP_TAG, DEAD_TAG, main="main"))
        ids = out.main | beam.Filter(lambda x: isinstance(x, s.Instruction)) | beam.Map(
            lambda r: (r.id.rsplit(":", 1)[0], r.backend, r.prompt_version))
        expected = sorted({(f"{c.id}:{fam}", "template", TEMPLATE_VERSION)
                           for c, _a in good for fam in ("mir", "caption")})
        assert_that(ids | beam.Distinct(), equal_to(expected), label="instructions")
        counts = (out.main | beam.Filter(lambda x: isinstance(x, UnitCounts))   # one per bundle
                  | beam.FlatMap(lambda c: [(k, c.values[k]) for k in
                                            ("clips", "units", "units_written", "units_skipped")])
                  | beam.CombinePerKey(sum))
        assert_that(counts, equal_to([("clips", 4), ("units", 12), ("units_written", 6),
                                      ("units_skipped", 6)]), label="counts")
        skipped = out[SKIP_TAG] | beam.Map(lambda line: json.loads(line)["reason"])
        assert_that(skipped, equal_to(["reasoning_needs_llm"] * 3 + ["silent_clip"] * 3),
                    label="skipped")
        failed = facts["bad"] | beam.Map(lambda bad: bad[0]["id"])
        assert_that(failed, equal_to(["fma:bad:0-10000"]), label="bad row")


def test_facts_from_annotated_musicnet_notes():
    c = dataclasses.replace(clip(1, dataset="musicnet"), instruments=("Violin", "Cello"),
                            notes=(s.NoteEvent(0.0, 0.5, 41, 72, 0, 1, "Quarter"),
                                   s.NoteEvent(0.5, 1.0, 43, 48, 1, 2, "Quarter")))
    f = facts_from_annotated(s.AnnotatedClip(c, annotation(c)))
    assert f.instruments_complete and f.notes.n_notes == 2
    assert (f.notes.lowest, f.notes.highest) == ("C3", "C5")
    assert f.audio_name == "000001.mp3" and f.key == "F# minor"


# --------------------------------------------------------------------------- end to end

def test_template_end_to_end_with_bad_records(tmp_path):
    pairs = [(clip(i), annotation(clip(i))) for i in range(4)]
    pairs.append((clip(5), annotation(clip(5), silent=True)))
    nan_clip = clip(6)
    pairs.append((nan_clip, annotation(nan_clip, tempo=math.nan)))         # bad record
    write_input(tmp_path / "ann", rows_of(pairs))
    out = tmp_path / "instr"
    assert run(["--input", str(tmp_path / "ann"), "--output", str(out), *FAST]) == 0
    index, records, dead = read_output(out)
    assert [d.id for d in dead] == [nan_clip.id]
    assert dead[0].error_type == "FactsError" and "tempo_bpm" in dead[0].message
    assert nan_clip.id not in {r.clip_id for r in records}
    assert index.skipped == {"reasoning_needs_llm": 4, "silent_clip": 3}
    assert index.counts["inputs"] == 6 and index.counts["units"] == 15
    assert index.counts["units_written"] == 8 and index.counts["units_skipped"] == 7
    assert_every_unit_accounted(index, records, dead, [c.id for c, _ in pairs],
                                ("mir", "caption", "reasoning"))
    assert {(r.backend, r.model, r.prompt_version) for r in records} == \
        {("template", "template", TEMPLATE_VERSION)}
    assert len({r.id for r in records}) == len(records) == index.total_rows
    assert not (tmp_path / ".llark-cache").exists()        # the template needs no cache


@pytest.mark.slow
def test_openai_end_to_end_retries_dead_letters_grounding_and_rerun(tmp_path, monkeypatch,
                                                                    capfd):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    titles = ["[valid]", "[fenced]", "[truncated]", "[prose]", "[ungrounded]", "[429]", "[500]",
              "[auth]"]
    pairs = [(clip(i, t), annotation(clip(i, t))) for i, t in enumerate(titles)]
    pairs.append((clip(8), annotation(clip(8), silent=True)))
    nan_clip = clip(9)
    pairs.append((nan_clip, annotation(nan_clip, tempo=math.nan)))
    write_input(tmp_path / "ann", rows_of(pairs))
    out, cache = tmp_path / "instr", tmp_path / "cache"
    with LLMServer(retry_after="1") as server:
        (server.script("[fenced]", "fenced").script("[truncated]", "truncated")
         .script("[prose]", "prose").script("[ungrounded]", "ungrounded_key")
         .script("[429]", "429", "valid").script("[500]", "500").script("[auth]", "auth"))
        argv = ["--input", str(tmp_path / "ann"), "--output", str(out), "--llm", "openai",
                "--base-url", server.url, "--model", "test-model", "--concurrency", "8",
                "--max-retries", "1", "--backoff-initial-s", "0.01", "--backoff-max-s", "0.05",
                "--cache-dir", str(cache), "--max-error-rate", "0.9",
                "--direct_num_workers", "2"]                 # multi-process workers
        assert run(argv) == 0
        first_requests = server.requests
        assert set(server.auth_headers) == {f"Bearer {KEY}"}  # workers read the env variable
        index, records, dead = read_output(out)

        fams = ("mir", "caption", "reasoning")
        ids = [c.id for c, _ in pairs]
        dead_by_id = {d.id: d for d in dead}
        expect_dead = {f"{ids[2]}:caption": "InvalidReplyError",       # truncated caption
                       **{f"{ids[3]}:{f}": "InvalidReplyError" for f in fams},   # prose
                       f"{ids[4]}:caption": "InvalidReplyError",       # ungrounded caption
                       **{f"{ids[6]}:{f}": "LLMError" for f in fams},  # 500
                       **{f"{ids[7]}:{f}": "LLMError" for f in fams},  # 401
                       ids[9]: "FactsError"}                           # NaN tempo
        assert {k: d.error_type for k, d in dead_by_id.items()} == expect_dead
        assert "gave up after 2 attempts" in dead_by_id[f"{ids[6]}:mir"].message
        assert "<redacted>" in dead_by_id[f"{ids[7]}:mir"].message
        assert "no usable reply after 3 attempt" in dead_by_id[f"{ids[3]}:mir"].message
        assert index.dead_letters == {"FactsError": 1, "InvalidReplyError": 5, "LLMError": 6}
        assert index.skipped == {"silent_clip": 3}
        c = index.counts
        assert c["dropped:grounding_key"] == 2 + 3      # mir + reasoning, 3 caption attempts
        assert c["llm_retry:429"] == 1 and c["llm_retry:500"] == 3
        assert c["units_written"] == 13 and c["inputs"] == 10
        assert_every_unit_accounted(index, records, dead, ids, fams)
        written = {(r.clip_id, r.family) for r in records}
        assert (ids[2], "mir") in written and (ids[4], "mir") in written
        assert not any("D major" in t.content for r in records for t in r.turns)
        assert {(r.backend, r.model, r.prompt_version) for r in records} == \
            {("openai", "test-model", PROMPT_VERSION)}
        truncated = [r for r in records if r.clip_id == ids[2] and r.family == "mir"]
        assert len(truncated) == 2 and all("reply:truncated" in r.validation_notes
                                           for r in truncated)

        # rerun: every HTTP-200 reply comes from the cache; only the 500s and 401s are re-sent
        assert run(argv + ["--force"]) == 0
        index2, records2, dead2 = read_output(out)
        assert server.requests - first_requests == 3 * 2 + 3 * 1
        assert index2.counts["llm_cache_hits"] > 0
        assert sorted(r.to_row().__repr__() for r in records2) == \
            sorted(r.to_row().__repr__() for r in records)
        assert sorted(d.to_json() for d in dead2) == sorted(d.to_json() for d in dead)

    captured = capfd.readouterr()
    assert KEY not in captured.out and KEY not in captured.err
    assert scan_for(KEY, out, cache) == []
    assert KEY not in (out / s.INDEX_FILE).read_text()


def test_rerun_makes_zero_requests_and_server_dying_mid_run(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("LLARK_E2E_KEY", KEY)
    pairs = [(clip(i), annotation(clip(i))) for i in range(6)]
    write_input(tmp_path / "ann", rows_of(pairs))
    out, cache = tmp_path / "instr", tmp_path / "cache"
    server = LLMServer(stop_after=3).start()
    port = server.port
    argv = ["--input", str(tmp_path / "ann"), "--output", str(out), "--llm", "openai",
            "--base-url", server.url, "--model", "m", "--api-key-env", "LLARK_E2E_KEY",
            "--families", "mir", "--concurrency", "2", "--max-retries", "1",
            "--backoff-initial-s", "0.01", "--backoff-max-s", "0.02", "--cache-dir", str(cache),
            "--max-error-rate", "1.0", *FAST]
    try:
        assert run(argv) == 0
        index, records, dead = read_output(out)
        cached = len(list(cache.rglob("*.json")))
        assert cached == 3                           # the server died after 3 replies
        assert len(dead) == 6 - cached and {d.error_type for d in dead} == {"LLMError"}
        assert {r.clip_id for r in records}.isdisjoint({d.id.rsplit(":", 1)[0] for d in dead})
    finally:
        server.stop()

    with LLMServer(port=port) as again:              # the server is back
        assert run(argv + ["--force"]) == 0
        assert again.requests == 6 - cached           # cached replies were not asked again
        index2, records2, dead2 = read_output(out)
        assert dead2 == [] and index2.counts["units_written"] == 6
        assert index2.counts["llm_cache_hits"] == cached
        before = {r.id: r for r in records}
        assert all(before[r.id] == r for r in records2 if r.id in before)

        assert run(argv + ["--force"]) == 0           # a complete rerun sends nothing at all
        assert again.requests == 6 - cached
        index3, records3, _ = read_output(out)
        assert index3.counts["llm_requests"] == 0 and index3.counts["llm_cache_hits"] == 6
        assert sorted(map(repr, records3)) == sorted(map(repr, records2))
    captured = capfd.readouterr()
    assert KEY not in captured.out + captured.err
    assert scan_for(KEY, out, cache) == []


# --------------------------------------------------------------------------- one unit, one fate

_real_draft = LLMWriter.draft


def _draft_or_raise(self, facts, family, tally, repair):
    """``LLMWriter.draft`` with a bug in one unit: the caption of a clip titled ``[boom]``."""
    if "[boom]" in facts.title and family == "caption":
        raise KeyError("boom")
    return _real_draft(self, facts, family, tally, repair)


_real_to_instructions = instruct_stage.to_instructions


def _to_instructions_or_raise(result, facts, backend, model, prompt_version):
    """``to_instructions`` with a bug for the mir unit of a clip titled ``[records]``."""
    if "[records]" in facts.title and result.family == "mir":
        raise ValueError("bad record")
    return _real_to_instructions(result, facts, backend, model, prompt_version)


def test_unexpected_error_dead_letters_that_unit_alone(tmp_path, monkeypatch):
    """A bug (not a LlarkError) in one (clip, family), while generating it or while making its
    records, dead-letters that unit, under its own id, with the error and where it happened;
    the clip's other family and every other clip are written (before: the whole batch became
    one dead letter named by all its clip ids)."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setattr(LLMWriter, "draft", _draft_or_raise)   # in-process runner: it applies
    monkeypatch.setattr(instruct_stage, "to_instructions", _to_instructions_or_raise)
    titles = {2: "[boom]", 4: "[records]"}
    pairs = [(clip(i, titles.get(i, "")), annotation(clip(i))) for i in range(6)]
    write_input(tmp_path / "ann", rows_of(pairs))
    out = tmp_path / "instr"
    with LLMServer() as server:
        assert run(["--input", str(tmp_path / "ann"), "--output", str(out), "--llm", "openai",
                    "--base-url", server.url, "--model", "m", "--families", "mir,caption",
                    "--concurrency", "4", "--cache-dir", str(tmp_path / "cache"),
                    "--max-error-rate", "0.5", *FAST]) == 0
    index, records, dead = read_output(out)
    boom, bad_records = pairs[2][0].id, pairs[4][0].id
    dead = sorted(dead, key=lambda d: d.id)
    assert [(d.id, d.error_type) for d in dead] == [(f"{boom}:caption", "KeyError"),
                                                    (f"{bad_records}:mir", "ValueError")]
    assert "KeyError('boom')" in dead[0].message and "unexpected" in dead[0].message
    assert "_draft_or_raise" in dead[0].message and dead[0].input_uri == pairs[2][0].audio_uri
    assert "ValueError('bad record')" in dead[1].message and "_to_instructions_or_raise" in \
        dead[1].message
    assert index.dead_letters == {"KeyError": 1, "ValueError": 1}
    written = {(r.clip_id, r.family) for r in records}
    assert written == {(c.id, f) for c, _ in pairs for f in ("mir", "caption")} - \
        {(boom, "caption"), (bad_records, "mir")}
    assert index.counts["units_written"] == 10 and index.counts["units_dead"] == 2
    assert_every_unit_accounted(index, records, dead, [c.id for c, _ in pairs],
                                ("mir", "caption"))


def test_requests_stay_in_flight_past_a_slow_one(tmp_path, monkeypatch):
    """The first request takes 4 s; with 2 requests in flight the other 23 units go through the
    second one meanwhile (a worker that waited for whole batches held them back)."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    pairs = [(clip(i), annotation(clip(i))) for i in range(24)]
    write_input(tmp_path / "ann", rows_of(pairs))
    out = tmp_path / "instr"
    with LLMServer(slow_requests=frozenset({1}), slow_s=4.0) as server:
        assert run(["--input", str(tmp_path / "ann"), "--output", str(out), "--llm", "openai",
                    "--base-url", server.url, "--model", "m", "--families", "mir",
                    "--concurrency", "2", "--no-cache", *FAST]) == 0
        timings = sorted(server.timings, key=lambda t: t[1] - t[0])
    assert server.by_behaviour["slow"] == 1 and len(timings) == 24
    # the slow one is the longest (not always the first to arrive: two requests that arrive
    # together are numbered in the order they take the server's lock)
    slow_arrival, slow_reply = timings[-1]
    assert slow_reply - slow_arrival >= 4.0
    assert all(replied - arrived < 4.0 for arrived, replied in timings[:-1])
    assert sum(1 for arrived, replied in timings[:-1] if replied < slow_reply) == 23
    assert server.max_in_flight == 2
    index, records, dead = read_output(out)
    assert dead == [] and index.counts["units_written"] == 24


def test_one_unit_pool_per_worker_process():
    """Every copy of a GenerateFn in one process (one per harness thread) shares one pool: one
    client, one set of connections and threads."""
    import pickle

    cfg = InstructConfig(input="i", output="o", llm="openai", base_url="http://127.0.0.1:9/v1",
                         concurrency=3, cache=False)
    fn = GenerateFn(cfg, "")
    a, b = pickle.loads(pickle.dumps(fn)), pickle.loads(pickle.dumps(fn))
    a.setup()
    b.setup()
    assert a._pool is b._pool and a._pool.executor._max_workers == pool_threads(3) == 5
    other = pickle.loads(pickle.dumps(GenerateFn(cfg, "")))    # another transform: its own
    other.setup()
    assert other._pool is not a._pool
