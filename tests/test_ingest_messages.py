"""What ``llark ingest`` says when it redoes or refuses work: percentages with one decimal,
``--force`` on a complete output, reruns after an unfinished run (real runs, DirectRunner)."""

from __future__ import annotations

from pathlib import Path

from pipelines.ingest import run as ingest
from pipelines.schema import INDEX_FILE
from pipelines.stage import percent
from tests.dataset_fixtures import musiccaps_row, write_musiccaps, write_tone

BEAM = ["--direct_running_mode", "in_memory", "--direct_num_workers", "1",
        "--clip-seconds", "10", "--min-clip-seconds", "2"]


def test_percent_has_one_decimal_and_never_rounds_a_share_away() -> None:
    assert percent(5495, 5521) == "99.5%"      # the MusicCaps run that used to say "100%"
    assert percent(5520, 5521) == ">99.9%" and percent(1, 5521) == "<0.1%"
    assert percent(0, 7) == "0.0%" and percent(7, 7) == "100.0%" and percent(1, 3) == "33.3%"
    assert percent(1, 0) == "n/a"


def test_force_and_reruns_say_what_they_removed(tmp_path: Path, capsys) -> None:
    data = write_musiccaps(tmp_path / "mc", [musiccaps_row("a", 0, 3, "[]", "calm", False),
                                             musiccaps_row("b", 0, 3, "[]", "calm", False)])
    write_tone(data / "audio" / "a.flac", 3.0, sr=8000)
    write_tone(data / "audio" / "b.flac", 3.0, sr=8000)
    out = tmp_path / "clips"
    args = ["--dataset", "musiccaps", "--data-dir", str(data), "--output", str(out), *BEAM]
    assert ingest(args) == 0
    capsys.readouterr()
    assert ingest(args) == 0
    assert "is complete (2 rows); nothing to do" in capsys.readouterr().err

    # a run that never finished left a part behind: the rerun says so
    (out / INDEX_FILE).unlink()
    assert ingest(args) == 0
    err = capsys.readouterr().err
    assert "files of an earlier run that did not finish" in err

    # --force on a complete set: the index goes first, so a forced run that dies (here: the
    # metadata is gone) leaves no index naming parts it already deleted
    (data / "musiccaps-public.csv").rename(data / "moved.csv")
    assert ingest(args + ["--force"]) == 1
    err = capsys.readouterr().err
    assert "--force: removed the complete output of an earlier run (2 rows;" in err
    assert "incomplete run" not in err
    assert not (out / INDEX_FILE).exists() and not list(out.glob("part-*.parquet"))
    (data / "moved.csv").rename(data / "musiccaps-public.csv")
    assert ingest(args) == 0 and (out / INDEX_FILE).exists()
