"""The ``llark`` command: one entry point, one subcommand per stage.

Each subcommand is a module with ``run(argv: list[str] | None) -> int``; modules are imported
only when their subcommand runs, so ``llark inspect`` does not pay for torch or Beam.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "demo-data": ("llark.demo.corpus", "synthesize the demo corpus (all four dataset layouts)"),
    "ingest": ("pipelines.ingest", "Beam: dataset files -> clip records"),
    "analyze": ("pipelines.analyze", "tempo/beats/key/chords of audio files, JSON lines"),
    "annotate": ("pipelines.annotate", "Beam: clip records -> annotated clip records"),
    "instruct": ("pipelines.instruct", "Beam: annotated clips -> instruction data (LLM/template)"),
    "embed": ("pipelines.embed", "Beam: clip records -> audio embeddings (features/jukebox)"),
    "shards": ("pipelines.shards", "join clips, annotations, instructions, embeddings -> shards"),
    "inspect": ("pipelines.inspect", "summarize any stage's output; --report for HTML"),
    "train": ("model.train", "train the LLaVA-style music LM on shards"),
    "infer": ("model.infer", "generate answers from a checkpoint"),
    "eval": ("model.evaluate", "score answers with the paper's metrics"),
    "benchmark": ("model.benchmark", "the paper's benchmarks, from their files"),
    "run": ("dags.local", "run the whole stage graph locally"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: llark <command> [options]   (llark <command> --help for its options)", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"llark: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    from llark.errors import LlarkError

    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.run(rest) or 0)
    except LlarkError as exc:
        # Expected failures (bad config, missing input set, too many dead letters): one clear
        # line, no traceback.
        print(f"llark {name}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
