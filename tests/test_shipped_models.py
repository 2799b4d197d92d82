"""The bundled models load through the runtime and behave as their manifests say.

Needs only numpy and onnxruntime (no torch).
"""
import numpy as np
import pytest

from stemboard.dsp import StftGrid, stft
from stemboard.models import MaskModel, bundled_models, resolve_model_path

SHIPPED = ("offline", "live", "hq-split", "offline-fp32", "live-fp32")


def _audio(seconds=2.0, seed=0):
    rng = np.random.default_rng(seed)
    n = int(44100 * seconds)
    t = np.arange(n) / 44100
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 55 * t)
    x = x + 0.05 * rng.standard_normal(n)
    return np.stack([x, 0.8 * x]).astype(np.float32)


def test_own_models_are_bundled_and_hq_is_default():
    models = bundled_models()
    for name in SHIPPED:
        assert name in models
        assert models[name].stat().st_size <= 10 * 1024 * 1024
    assert resolve_model_path(None) == models["hq"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_runs(name):
    model = MaskModel(name, num_threads=1)
    m = model.manifest
    assert list(m.stems) == ["vocals", "drums", "bass", "other"]
    assert (m.sample_rate, m.n_fft, m.hop, m.model_bins) == (44100, 2048, 512, 513)
    assert m.input_normalization["type"] == "log1p"
    assert "metrics" in m.extra
    grid = StftGrid(m.n_fft, m.hop)
    spec = stft(_audio(), grid)
    mag = np.abs(spec[:, :, : m.model_bins]).transpose(0, 2, 1)
    mag = np.pad(mag, ((0, 0), (0, 0), (m.context_frames, m.lookahead_frames)))
    raw = model.raw_masks(np.ascontiguousarray(mag))
    assert raw.shape == (2, 4, m.model_bins, spec.shape[1])
    assert np.all(np.isfinite(raw))
    assert raw.min() >= 0.0 and raw.max() <= 1.0 + 1e-6
    # the graph itself ends in a softmax across stems
    np.testing.assert_allclose(raw.sum(axis=1), 1.0, atol=1e-4)
    # channel independence: each channel is one batch item
    single = model.raw_masks(np.ascontiguousarray(mag[1:]))
    np.testing.assert_allclose(single[0], raw[1], atol=1e-5)


def test_live_latency_within_60ms():
    m = MaskModel("live", num_threads=1).manifest
    assert m.lookahead_frames <= 2
    latency = m.n_fft - m.hop + m.lookahead_frames * m.hop
    assert latency / m.sample_rate <= 0.060


def test_offline_context_is_centred():
    m = MaskModel("offline", num_threads=1).manifest
    assert m.context_frames == m.lookahead_frames


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_models_are_stateful_and_stream_exactly(name):
    # Streaming feeds each frame through the network once (carried states);
    # the result must equal the offline render, which runs the same graph in one call.
    from stemboard.plugin import StemSeparator

    model = MaskModel(name, num_threads=1)
    assert model.stateful
    x = _audio(seconds=1.5)
    sep = StemSeparator(model, gains_db={"vocals": -30.0, "drums": 3.0})
    offline = sep.process(x, 44100)
    assert np.max(np.abs(offline - x)) > 1e-3
    streamed = [sep.process(x[:, i:i + 256], 44100, reset=False)
                for i in range(0, x.shape[1], 256)]
    got = np.concatenate(streamed + [sep.flush()], axis=1)
    np.testing.assert_allclose(got, offline, atol=1e-5)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_models_run_stereo_as_mid_side(name, capsys):
    # Measured better than left/right on valid (model card); the CLI says so.
    from stemboard.cli import main

    assert MaskModel(name, num_threads=1).manifest.stereo_mode == "mid_side"
    assert main(["models"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(name))
    assert "stereo=mid/side" in line
