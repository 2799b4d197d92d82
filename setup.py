from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent

setup(
    name="stemboard",
    version="0.1.0",
    description="Neural stem separation as pedalboard-style effects: stream, chain, render.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # The design card's top-level folders are the subpackages of `stemboard`.
    packages=[
        "stemboard",
        "stemboard.dsp",
        "stemboard.plugin",
        "stemboard.models",
        "stemboard.models.train",
        "stemboard.models.convert",
        "stemboard.presets",
    ],
    package_dir={
        "stemboard": "stemboard",
        "stemboard.dsp": "dsp",
        "stemboard.plugin": "plugin",
        "stemboard.models": "models",
        "stemboard.models.train": "models/train",
        "stemboard.models.convert": "models/convert",
        "stemboard.presets": "presets",
    },
    package_data={
        "stemboard.models": ["weights/*.onnx", "weights/*.json", "weights/*.md",
                             "weights/*.txt"],
        "stemboard.presets": ["*.json"],
    },
    install_requires=[
        "numpy>=2.0",
        "numba>=0.60",
        "rocket-fft>=0.2.5",
        "pedalboard>=0.9.16",
        "onnxruntime>=1.17",
        "mido>=1.3",
        "tqdm>=4.60",
    ],
    extras_require={
        "test": ["pytest>=7", "onnx>=1.15", "pyloudnorm>=0.1"],
        "train": [
            "torch==2.13.0",
            "onnx>=1.15",
            "onnxscript",
            "musdb>=0.4",
            "museval>=0.4",
        ],
        # Peers (openunmix, demucs) are a manual `pip install --no-deps` step:
        # their pins would replace torch (see docs/benchmarks.md).
        "bench": ["librosa>=0.10", "matplotlib>=3.7", "musdb>=0.4", "museval>=0.4",
                  "norbert>=0.2", "scipy>=1.10"],
        "midi": ["python-rtmidi>=1.5"],
    },
    entry_points={"console_scripts": ["stemboard=stemboard.cli:main"]},
)
