"""`llark inspect` summaries and the HTML report (rendered in headless Chromium when present)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from pipelines import schema as s
from pipelines.inspect import run as inspect_run
from tests import setfactory as f


@pytest.fixture()
def work(tmp_path):
    clips = [f.clip(i, ds) for i, ds in enumerate(["fma", "fma", "musiccaps", "musicnet"])]
    dead = [s.DeadLetter("ingest", "fma:000099", "AudioNotFoundError", "audio file not found: x",
                         "/data/x.mp3")]
    f.write_set(tmp_path / "clips" / "all", clips, "clip", "ingest", dead, {"inputs": 5})
    ann = [s.AnnotatedClip(c, f.annotation(c, key, tempo)) for c, key, tempo in
           zip(clips, ["A minor", "C major", "F# minor", "C major"], [90.0, 120.0, 140.0, 120.0])]
    f.write_set(tmp_path / "annotations", ann, "annotated_clip", "annotate")
    inst = [f.instruction(c, fam) for c in clips for fam in ("mir", "caption")]
    f.write_set(tmp_path / "instructions", inst, "instruction", "instruct",
                counts={"dropped:grounding_key": 2}, skipped={"reasoning_needs_llm": 4})
    f.write_set(tmp_path / "embeddings", [f.embedding(c) for c in clips], "embedding", "embed")
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text('{"key": {"mirex": 0.41}, "tempo": {"acc1": 0.2}}')
    return tmp_path


def test_inspect_prints_counts_and_dead_letters(work, capsys):
    assert inspect_run([str(work)]) == 0
    out = capsys.readouterr().out
    assert "by dataset: fma=2, musiccaps=1, musicnet=1" in out
    assert "dead letters AudioNotFoundError: 1" in out
    assert "by family: caption=4, mir=4" in out
    assert "skipped (reasoning_needs_llm): 4" in out
    assert re.search(r"4 set\(s\), 20 rows, 1 dead letters, 0 incomplete", out)


def test_inspect_flags_incomplete_sets(work, capsys):
    (work / "embeddings" / s.INDEX_FILE).unlink()
    assert inspect_run([str(work)]) == 1
    assert "incomplete" in capsys.readouterr().out


def test_report_has_every_plot_and_table(work, capsys):
    out = work / "report.html"
    assert inspect_run([str(work), "--report", str(out)]) == 0
    page = out.read_text()
    for title in ("Tempo (BPM)", "Keys", "Mode", "Chord vocabulary", "Meter",
                  "Annotation confidences", "Clip durations",
                  "Q&amp;A per family", "Q&amp;A per dataset", "Validation drops by reason",
                  "Embedding norms", "Dead letters by error type"):
        assert f"<h3>{title}</h3><img class='plot'" in page, title
    assert page.count("data:image/png;base64,") == 12
    assert "no data for this plot" not in page
    assert "metrics.json" in page and "0.41" in page
    assert "It is in A minor." in page and "A minor, 90 BPM, 4/4" in page


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="no headless Chromium (Debian package chromium)")
def test_report_renders_in_headless_chromium(work, tmp_path):
    out = work / "report.html"
    inspect_run([str(work), "--report", str(out)])
    profile = tmp_path / "chrome-profile"
    proc = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
         "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r'data-plots="(\d+)" data-plots-rendered="(\d+)"', proc.stdout)
    assert m, "the report's load script did not run"
    assert m.group(1) == m.group(2) == "12"


def test_inspect_on_a_rejected_set_says_what_went_wrong_and_what_to_do(tmp_path, capsys):
    """A real ingest of a partial MusicCaps download: 1 of 5 videos present."""
    from pipelines.ingest import run as ingest
    from tests.dataset_fixtures import musiccaps_row, write_musiccaps, write_tone

    rows = [musiccaps_row(y, 0, 3, "['calm']", "calm", False)
            for y in ("have", "gone1", "gone2", "gone3", "gone4")]
    data = write_musiccaps(tmp_path / "musiccaps", rows)
    write_tone(data / "audio" / "have.flac", 3.0, sr=8000)
    out = tmp_path / "clips"
    beam = ["--direct_running_mode", "in_memory", "--direct_num_workers", "1",
            "--clip-seconds", "10", "--min-clip-seconds", "2"]
    args = ["--dataset", "musiccaps", "--data-dir", str(data), "--output", str(out), *beam]
    assert ingest(args) == 1
    err = capsys.readouterr().err
    assert "4 of 5 inputs failed (80.0%), above --max-error-rate 0.5 (50.0%)" in err
    assert "AudioNotFoundError=4" in err and "--max-error-rate 1" in err
    assert not (out / s.INDEX_FILE).exists() and (out / "_index.rejected.json").exists()

    assert inspect_run([str(out)]) == 1
    shown = capsys.readouterr().out
    assert "REJECTED" in shown and "incomplete (the stage did not finish)" not in shown
    assert "4 of 5 inputs failed (80.0%)" in shown
    assert "dead letters AudioNotFoundError: 4" in shown
    assert "MusicCaps" in shown and "llark ingest ... --max-error-rate 1" in shown
    assert "inputs: 5" in shown and "tracks_ok: 1" in shown
    assert "1 incomplete (1 rejected)" in shown

    # doing what it says commits the set, and the rerun says what it removed
    assert ingest(args + ["--max-error-rate", "1"]) == 0
    err = capsys.readouterr().err
    assert "of an earlier run whose output was rejected (_index.rejected.json)" in err
    assert inspect_run([str(out)]) == 0
    assert "REJECTED" not in capsys.readouterr().out
    # --force on a complete set says it removed a complete output, not "an incomplete run"
    assert ingest(args + ["--max-error-rate", "1", "--force"]) == 0
    err = capsys.readouterr().err
    assert "--force: removed the complete output of an earlier run (1 rows" in err
    assert "incomplete" not in err


def test_report_plots_confidences_against_the_instruct_threshold(tmp_path):
    """The confidence histograms and the table of clips below the threshold (the instruction
    set's min_confidence); keys are shown in musicians' spelling whatever was stored."""
    import dataclasses

    from pipelines.inspect import find_sets, summarize
    from pipelines.report import collect, write_report

    clips = [f.clip(i) for i in range(4)]
    ann = [s.AnnotatedClip(c, dataclasses.replace(f.annotation(c, "A# minor"), key_confidence=k,
                                                  tempo_confidence=t))
           for c, k, t in zip(clips, [0.1, 0.3, 0.45, 0.95], [0.9, 0.9, 0.9, 0.2])]
    f.write_set(tmp_path / "annotations", ann, "annotated_clip", "annotate")
    inst = [f.instruction(c, "mir") for c in clips]
    s.write_record_set(tmp_path / "instructions", [r.to_row() for r in inst], "instruction",
                       "instruct", config={"min_confidence": 0.4})
    summaries = [summarize(p) for p in find_sets(tmp_path)]
    data = collect(tmp_path, summaries)
    assert data["confidence"]["key"] == [0.1, 0.3, 0.45, 0.95] and data["threshold"] == 0.4
    assert data["keys"] == {"Bb minor": 4}
    page = write_report(tmp_path, summaries, tmp_path / "r.html").read_text()
    assert "<h3>Annotation confidences</h3><img class='plot'" in page
    assert "Below 0.40 (the instruct threshold)" in page
    assert "<tr><td>key</td><td>4</td><td>2 (50.0%)</td><td>0.38</td></tr>" in page
    assert "<tr><td>tempo</td><td>4</td><td>1 (25.0%)</td><td>0.90</td></tr>" in page
    assert "Bb minor, 120 BPM" in page and "A# minor" not in page


def test_a_rejected_set_of_another_dataset_gets_the_rate_that_would_commit_it(tmp_path, capsys):
    index = s.ShardIndex(schema_version=s.SCHEMA_VERSION, record="clip", stage="ingest",
                         shards=(), total_rows=2, dead_letters={"EmptyAudioError": 2,
                                                                "UndecodableAudioError": 1},
                         counts={"inputs": 7, "tracks_ok": 4, "unaccounted": 0},
                         config={"dataset": "fma"})
    out = tmp_path / "fma-clips"
    out.mkdir()
    (out / "_index.rejected.json").write_text(index.to_json())
    assert inspect_run([str(out)]) == 1
    shown = capsys.readouterr().out
    assert "3 of 7 inputs failed (42.9%)" in shown and "most are EmptyAudioError" in shown
    # 3/7 = 0.4286: the flag value printed must be enough to commit (> is what fails)
    assert "any rate of at least 0.429 commits this run" in shown
    assert "MusicCaps" not in shown
