"""Training-path tests: feature parity with the runtime and ONNX export fidelity.

Need the ``[train]`` extra (torch, onnx); skipped cleanly without it.  No dataset
is needed: all signals are synthesized.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from stemboard.dsp import StftGrid, stft  # noqa: E402
from stemboard.models import Manifest, MaskModel  # noqa: E402
from stemboard.models.train.data import STEMS, RemixSampler, stem_spectra  # noqa: E402
from stemboard.models.train.export import export_onnx  # noqa: E402
from stemboard.models.train.model import MaskNet  # noqa: E402
from stemboard.models.train.train import log1p_features, normalization_stats  # noqa: E402

GRID = StftGrid(2048, 512)
BINS = 513


def _stems(seconds=1.0, seed=0):
    rng = np.random.default_rng(seed)
    n = int(44100 * seconds)
    t = np.arange(n) / 44100
    voice = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 5 * t))
    drums = 0.2 * rng.standard_normal(n) * (np.sin(2 * np.pi * 2 * t) > 0.9)
    bass = 0.4 * np.sin(2 * np.pi * 55 * t)
    other = 0.1 * rng.standard_normal(n)
    mono = np.stack([voice, drums, bass, other])
    stereo = np.stack([mono, 0.7 * mono + 0.01 * rng.standard_normal(mono.shape)], axis=1)
    return stereo.astype(np.float32)  # (4, 2, n)


def _manifest(norm, context=2, lookahead=1):
    return Manifest(sample_rate=44100, n_fft=2048, hop=512, model_bins=BINS, stems=STEMS,
                    context_frames=context, lookahead_frames=lookahead,
                    input_normalization=norm)


def test_feature_parity_with_runtime():
    stems = _stems()
    spectra, lengths = stem_spectra([{"stems": stems}], GRID, BINS)
    norm = normalization_stats(spectra, lengths)
    assert len(norm["mean"]) == BINS and len(norm["std"]) == BINS
    # training path: the mixture STFT is the sum of the stems' STFTs, then torch features
    mix_mag = np.abs(spectra[0].sum(axis=0)).transpose(0, 2, 1)       # (2, bins, frames)
    train_feats = log1p_features(torch.from_numpy(np.ascontiguousarray(mix_mag)), norm).numpy()
    # runtime path: STFT of the summed signal, then the manifest normalisation
    mix = stems.sum(axis=0)
    runtime_mag = np.abs(stft(mix, GRID)[:, :, :BINS]).transpose(0, 2, 1)
    runtime_feats = _manifest(norm).normalize(np.ascontiguousarray(runtime_mag))
    assert train_feats.shape == runtime_feats.shape
    np.testing.assert_allclose(train_feats, runtime_feats, atol=1e-4, rtol=0)


def test_remix_sampler_shapes_and_linearity():
    stems = _stems()
    spectra, lengths = stem_spectra([{"stems": stems}, {"stems": stems[:, ::-1]}], GRID, BINS)
    sampler = RemixSampler(spectra, lengths, frames=30, p_remix=1.0, seed=1)
    mix, tgt = sampler.batch(3)
    assert mix.shape == (3, BINS, 30) and tgt.shape == (3, 4, BINS, 30)
    # the mixture magnitude never exceeds the sum of stem magnitudes (triangle inequality)
    assert np.all(mix <= tgt.sum(axis=1) + 1e-4)


def test_onnx_export_matches_torch(tmp_path):
    torch.manual_seed(0)
    model = MaskNet(bins=BINS, stems=4, hidden=16, dilations=(1, 2), kernel=3)
    for m in model.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    model.eval()
    path = export_onnx(model, tmp_path / "tiny.onnx", frames=16)
    x = torch.randn(2, BINS, 40)
    with torch.no_grad():
        ref = model(x).numpy()
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["masks"], {"magnitude": x.numpy()})[0]
    assert got.shape == ref.shape == (2, 4, BINS, 40 - model.receptive_field + 1)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    # dynamic time and batch axes
    other = sess.run(["masks"], {"magnitude": x.numpy()[:1, :, :25]})[0]
    assert other.shape == (1, 4, BINS, 25 - model.receptive_field + 1)
    # and the runtime accepts it with a manifest whose context matches the receptive field
    _manifest({"type": "none"}, context=3, lookahead=3).save(tmp_path / "tiny.json")
    mm = MaskModel(tmp_path / "tiny.onnx")
    masks = mm.masks(x.numpy())
    np.testing.assert_allclose(masks.sum(axis=1), 1.0, atol=1e-5)
