import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from onnx_fixtures import band_split_model, segment_model  # noqa: E402

SR = 44100


@pytest.fixture(scope="session")
def model_factory(tmp_path_factory):
    """Build (and cache) band-split fixture models: ``model_factory(context=3, lookahead=2)``."""
    pytest.importorskip("onnx")
    cache = {}
    root = tmp_path_factory.mktemp("models")

    def make(**kw):
        key = tuple(sorted((k, repr(v)) for k, v in kw.items()))
        if key not in cache:
            path = root / f"fixture{len(cache)}.onnx"
            cache[key] = str(band_split_model(path, **kw))
        return cache[key]

    return make


@pytest.fixture(scope="session")
def model_path(model_factory):
    return model_factory()

@pytest.fixture
def buffer_sizes_seen(monkeypatch):
    """The set of ``buffer_size`` values every ``StemSeparator`` run receives from now on."""
    from stemboard.plugin.separator import StemSeparator

    seen = set()
    real = StemSeparator._run

    def spy(self, renderer, x, gains, buffer_size, reset):
        seen.add(buffer_size)
        return real(self, renderer, x, gains, buffer_size, reset)

    monkeypatch.setattr(StemSeparator, "_run", spy)
    return seen


@pytest.fixture(scope="session")
def seg_paths(tmp_path_factory):
    """Segmented stereo-joint fixture graphs: ``"framewise"`` masks and ``"context"``
    masks that depend on the whole segment."""
    pytest.importorskip("onnx")
    root = tmp_path_factory.mktemp("segmented")
    return {"framewise": str(segment_model(root / "framewise.onnx", context=False)),
            "context": str(segment_model(root / "context.onnx", context=True))}


def copy_model(model_path, tmp_path, name="m"):
    """Copy a model's .onnx and .json to ``tmp_path/name.*``; returns the .onnx path."""
    onnx_path = tmp_path / f"{name}.onnx"
    shutil.copy(model_path, onnx_path)
    shutil.copy(str(model_path).replace(".onnx", ".json"), onnx_path.with_suffix(".json"))
    return onnx_path


def read_manifest(path):
    """The manifest dict beside ``path`` (.onnx or .json)."""
    return json.loads(open(str(path).replace(".onnx", ".json")).read())


def noise(channels=2, seconds=1.0, seed=0, sr=SR, scale=0.2):
    rng = np.random.default_rng(seed)
    return (scale * rng.standard_normal((channels, int(seconds * sr)))).astype(np.float32)


def music_like(channels=2, seconds=1.0, sr=SR, seed=0):
    """Harmonic tones plus decaying noise bursts: content in every stem's band."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = np.zeros((channels, t.size))
    for f0 in (110.0, 220.0, 440.0, 1320.0, 5000.0):
        x += 0.08 * np.sin(2 * np.pi * f0 * t + rng.uniform(0, 6, (channels, 1)))
    env = np.exp(-((t * 4) % 1.0) * 20)
    x += 0.1 * env * rng.standard_normal((channels, t.size))
    return x.astype(np.float32)


def stream(proc, x, block, sr=SR, flush=True):
    """Feed (channels, n) ``x`` in blocks with reset=False; returns concatenated output."""
    outs = [proc.process(x[:, i:i + block], sr, reset=False) for i in range(0, x.shape[1], block)]
    if flush:
        outs.append(proc.flush())
    return np.concatenate(outs, axis=1)


def dbfs(residual):
    peak = float(np.max(np.abs(residual))) if residual.size else 0.0
    return 20 * np.log10(peak) if peak > 0 else -np.inf
