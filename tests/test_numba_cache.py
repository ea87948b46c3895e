"""No cold-cache numba race (issue 19.9): two processes that start at once on a cold numba
cache both finish, and so does a later one that loads what they cached.

Without the warm-up this very scenario (both calling what
``tests/test_synth.py::test_beat_is_audible_to_a_tracker`` calls) segfaulted here in 3 of 3
rounds: numba writes a GUFunc's two cache files without atomicity (numba issue #10128).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("librosa")

REPO = Path(__file__).resolve().parents[1]
CHILD = (
    "import numpy as np\n"
    "from llark.warm import ensure_warm\n"
    "ensure_warm()\n"
    "import librosa\n"
    "from llark.demo.synth import render_song\n"
    "from tests.test_synth import SR, _spec\n"
    "song = render_song(_spec(duration_s=12.0, tempo_bpm=112.0), SR)\n"
    "tempo, _ = librosa.beat.beat_track(y=song.audio, sr=SR)\n"
    "print('tempo', float(np.atleast_1d(tempo)[0]))\n"
)


@pytest.mark.slow
def test_two_processes_on_a_cold_cache_both_finish(tmp_path: Path) -> None:
    cache = tmp_path / "numba-cache"          # fresh: nothing compiled yet
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", CHILD], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, f"exit {p.returncode}: {out[-3000:]}"
        assert "tempo" in out
    # a later process loads the cache the two left behind
    later = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=600)
    assert later.returncode == 0, f"exit {later.returncode}: {later.stderr[-3000:]}"
    assert any(cache.rglob("*.nbc"))
