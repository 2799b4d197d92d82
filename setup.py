from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
REPO = "https://github.com/stemboard/stemboard"

setup(
    name="stemboard",
    version="0.1.0",
    description="Neural stem separation as pedalboard-style effects: stream, chain, render.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    author="The stemboard maintainers",
    # No public address is recorded anywhere in the repository yet: this host is a
    # placeholder to replace when it is published. Each URL names a file that exists
    # here (tested), so only the host part needs changing.
    url=REPO,
    project_urls={
        "Documentation": f"{REPO}/blob/main/README.md",
        "Architecture": f"{REPO}/blob/main/docs/architecture.md",
        "Benchmarks": f"{REPO}/blob/main/docs/benchmarks.md",
        "Source": REPO,
        "Issues": f"{REPO}/issues",
        # There is no CHANGELOG file: the history is the commit log.
        "Changelog": f"{REPO}/commits/main",
    },
    # The code's license; the converted Spleeter weights keep theirs (MIT, Deezer),
    # shipped beside them in models/weights/LICENSE-spleeter.txt.
    license="MIT",
    license_files=["LICENSE"],
    keywords=["source separation", "stems", "audio", "pedalboard", "onnx", "music"],
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Environment :: Console",
        "Intended Audience :: Developers",
        "Intended Audience :: End Users/Desktop",
        "Intended Audience :: Science/Research",
        "Operating System :: POSIX :: Linux",
        "Operating System :: MacOS",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Multimedia :: Sound/Audio :: Analysis",
        "Topic :: Multimedia :: Sound/Audio :: Conversion",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    python_requires=">=3.10",
    # The design card's top-level folders are the subpackages of `stemboard`.
    packages=[
        "stemboard",
        "stemboard.dsp",
        "stemboard.plugin",
        "stemboard.models",
        "stemboard.train",
        "stemboard.models.convert",
        "stemboard.presets",
    ],
    package_dir={
        "stemboard": "stemboard",
        "stemboard.dsp": "dsp",
        "stemboard.plugin": "plugin",
        "stemboard.models": "models",
        "stemboard.train": "train",
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
        # `stemboard ab` and ABSwitch measure loudness with it (ITU-R BS.1770).
        "pyloudnorm>=0.1",
    ],
    extras_require={
        # Everything the tests import. Only the training and converter tests need
        # more (the [train] extra: torch), and a few need system packages or data
        # (ffmpeg, a soundfont, MUSDB18); each of those says why it skips.
        "test": ["pytest>=7", "onnx>=1.15", "hypothesis>=6", "museval>=0.4", "musdb>=0.4",
                 "librosa>=0.10", "matplotlib>=3.7", "norbert>=0.2", "scipy>=1.10"],
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
        # `stemboard batch --engine ray` (issue 26); the local engine needs nothing more.
        "ray": ["ray>=2.9"],
    },
    entry_points={"console_scripts": ["stemboard=stemboard.cli:main"]},
)
