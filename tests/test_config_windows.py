"""Config dataclasses (unknown keys, coercion, YAML, secrets) and the clip window rule."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from llark.config import add_arguments, doc, from_args, from_dict, to_dict
from llark.errors import ConfigError
from llark.windows import DEFAULT_CLIP_SECONDS, JUKEBOX_CONTEXT_SAMPLES, clip_windows


@dataclass(frozen=True)
class DemoConfig:
    """A config for the tests."""

    steps: int = doc("how many steps", default=3)
    rate: float = doc("a rate", default=0.5)
    name: str = doc("a name", default="x")
    flag: bool = doc("a flag", default=False)
    families: tuple[str, ...] = doc("families", default=("mir",))
    api_key: str = doc("a secret", default="")

    def __post_init__(self):
        if self.steps < 0:
            raise ConfigError(f"steps must be >= 0, got {self.steps}")


def test_unknown_keys_are_errors():
    with pytest.raises(ConfigError, match="unknown key.*stpes"):
        from_dict(DemoConfig, {"stpes": 3})


def test_coercion_and_validation():
    cfg = from_dict(DemoConfig, {"steps": "7", "rate": "1e-3", "flag": "yes",
                                 "families": "mir, caption"})
    assert cfg == DemoConfig(7, 1e-3, "x", True, ("mir", "caption"))
    with pytest.raises(ConfigError, match="steps must be"):
        from_dict(DemoConfig, {"steps": -1})
    with pytest.raises(ConfigError, match="cannot read"):
        from_dict(DemoConfig, {"steps": "many"})


def test_precedence_yaml_flags_overrides(tmp_path):
    yml = tmp_path / "c.yaml"
    yml.write_text("steps: 10\nname: from-yaml\nrate: 0.1\n")
    parser = argparse.ArgumentParser()
    add_arguments(parser, DemoConfig)
    ns = parser.parse_args(["--name", "from-flag", "--flag"])
    cfg = from_args(DemoConfig, ns, str(yml), ["rate=0.2"])
    assert (cfg.steps, cfg.name, cfg.rate, cfg.flag) == (10, "from-flag", 0.2, True)
    yml.write_text("nope: 1\n")
    with pytest.raises(ConfigError, match="unknown key"):
        from_args(DemoConfig, parser.parse_args([]), str(yml))


@dataclass(frozen=True)
class PercentConfig:
    """Help texts and defaults with a literal ``%`` (argparse %-formats help strings)."""

    cost: bool = doc("costs ~30 % more compute", default=False)
    fmt: str = doc("a template", default="{x}%d")


def test_help_with_a_percent_sign_renders():
    parser = argparse.ArgumentParser()
    add_arguments(parser, PercentConfig)
    text = " ".join(parser.format_help().split())
    assert "costs ~30 % more compute (default: False)" in text
    assert "a template (default: {x}%d)" in text


def test_secrets_are_redacted():
    assert to_dict(DemoConfig(api_key="sk-123"))["api_key"] == "<redacted>"


def test_default_window_is_the_jukebox_context():
    assert DEFAULT_CLIP_SECONDS == 23.777
    assert DEFAULT_CLIP_SECONDS * 44100 <= JUKEBOX_CONTEXT_SAMPLES


def test_window_tail_rule():
    w, dropped = clip_windows(60.0, 23.777, 5.0)
    assert w == [(0.0, 23.777), (23.777, 47.554), (47.554, 60.0)] and dropped == 0
    w, dropped = clip_windows(50.0, 23.777, 5.0)   # 2.446 s tail is dropped
    assert w == [(0.0, 23.777), (23.777, 47.554)] and dropped == 1
    w, dropped = clip_windows(10.0, 23.777, 5.0, offset_s=30.0)
    assert w == [(30.0, 40.0)] and dropped == 0
    assert clip_windows(3.0) == ([], 1)
    with pytest.raises(ValueError):
        clip_windows(10.0, 5.0, 6.0)


def test_windows_cover_every_kept_sample():
    for dur in (5.0, 23.777, 29.12, 47.6, 133.4):
        w, dropped = clip_windows(dur)
        covered = sum(e - s for s, e in w)
        assert all(b[0] == a[1] for a, b in zip(w, w[1:]))
        assert covered == pytest.approx(dur if not dropped else w[-1][1], abs=1e-3)
