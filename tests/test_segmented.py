"""Segmented, stereo-joint graphs (the hq models' engine path) and cascades."""
import json

import numpy as np
import pytest

from conftest import SR, music_like, read_manifest
from onnx_fixtures import segment_reference_masks
from stemboard.dsp import StftGrid, istft, stft
from stemboard.models import CascadeModel, MaskModel, ModelError, load_model
from stemboard.plugin.separator import StemSeparator


def stream_stems(sep, x, block):
    parts = [sep.separate(x[..., i:i + block], SR, reset=False)
             for i in range(0, x.shape[-1], block)]
    parts.append(sep.flush_stems())
    return {s: np.concatenate([p[s] for p in parts], axis=-1) for s in sep.stems}


@pytest.mark.parametrize("channels", [1, 2])
def test_framewise_segments_equal_whole_file_masking(seg_paths, channels):
    # A frame-wise graph gives each frame the same mask whatever segment it is
    # in, so any seam left by the crossfades would show here.
    sep = StemSeparator(seg_paths["framewise"])
    m = sep.model.manifest
    x = music_like(channels, 2.0, seed=3)
    out = sep.separate(x, SR)
    grid = StftGrid(m.n_fft, m.hop)
    spec = stft(x, grid)                                  # (ch, frames, bins)
    mag = np.abs(spec[:, :, :m.model_bins]).transpose(0, 2, 1)
    masks = segment_reference_masks(mag, m.model_bins)    # (ch, 2, model_bins, frames)
    high = np.zeros((channels, 2, grid.n_bins - m.model_bins, masks.shape[3]))
    high[:, 1] = 1.0                                      # high_band_stem: accompaniment
    masks = np.concatenate([masks, high], axis=2)
    for i, s in enumerate(m.stems):
        ref = istft(spec * masks[:, i].transpose(0, 2, 1), x.shape[1], grid)
        np.testing.assert_allclose(out[s], ref, atol=2e-5)
    np.testing.assert_allclose(out["vocals"] + out["accompaniment"], x, atol=1e-5)


@pytest.mark.parametrize("block", [257, 4096, 65536])
def test_segmented_streaming_equals_offline(seg_paths, block):
    sep = StemSeparator(seg_paths["context"])
    x = music_like(2, 3.0, seed=1)
    offline = sep.separate(x, SR)
    streamed = stream_stems(sep, x, block)
    for s in sep.stems:
        np.testing.assert_allclose(streamed[s], offline[s], atol=1e-5)


def test_segmented_latency_is_reported_and_exact(seg_paths):
    sep = StemSeparator(seg_paths["context"])
    m = sep.model.manifest
    assert sep.latency_samples == m.n_fft - m.hop + (m.segment_frames - 1) * m.hop
    n = 40 * m.hop + 2 * sep.latency_samples
    x = music_like(2, n / SR, seed=2)[:, :n]
    y = sep.process(x, SR, reset=False)
    # Streaming trims the start: exactly `latency` samples are still inside.
    assert y.shape[1] == n - sep.latency_samples
    tail = sep.flush()
    np.testing.assert_allclose(np.concatenate([y, tail], axis=1), x, atol=1e-5)


def test_segment_context_changes_masks(seg_paths):
    # The context fixture really depends on the segment (else the streaming
    # test above would prove nothing about segment bookkeeping).
    a = StemSeparator(seg_paths["context"]).separate(music_like(2, 2.0), SR)["vocals"]
    b = StemSeparator(seg_paths["framewise"]).separate(music_like(2, 2.0), SR)["vocals"]
    assert np.max(np.abs(a - b)) > 1e-3


def test_segmented_graph_of_wrong_length_is_refused(seg_paths, tmp_path):
    # The manifest claims segments the graph cannot keep: a probe catches it.
    import shutil
    onnx_path = tmp_path / "m.onnx"
    shutil.copy(seg_paths["context"], onnx_path)
    d = read_manifest(seg_paths["context"])
    d.update(stems=["vocals", "accompaniment", "other"])
    (tmp_path / "m.json").write_text(json.dumps(d))
    with pytest.raises(ModelError, match="graph returns"):
        MaskModel(onnx_path)


# -- the bundled hq models ---------------------------------------------------------
def test_hq_vocals_streaming_equals_offline_and_sums_to_mix():
    sep = StemSeparator("hq-vocals")
    assert sep.stems == ("vocals", "accompaniment")
    x = music_like(2, 3.0, seed=4)
    offline = sep.separate(x, SR)
    np.testing.assert_allclose(offline["vocals"] + offline["accompaniment"], x, atol=1e-5)
    for block in (3000, 44100):
        streamed = stream_stems(sep, x, block)
        for s in sep.stems:
            np.testing.assert_allclose(streamed[s], offline[s], atol=1e-5)


def test_hq_cascade_stems_sum_stream_and_latency():
    sep = StemSeparator("hq")
    model = sep.model
    assert isinstance(model, CascadeModel)
    assert sep.stems == ("vocals", "drums", "bass", "other")
    assert sep.latency_samples == (model.first.latency_samples
                                   + model.second.latency_samples)
    x = music_like(2, 3.0, seed=5)
    offline = sep.separate(x, SR)
    np.testing.assert_allclose(sum(offline.values()), x, atol=1e-5)
    streamed = stream_stems(sep, x, 5000)
    for s in sep.stems:
        np.testing.assert_allclose(streamed[s], offline[s], atol=1e-5)
    # The vocals are the first model's; the rest split its accompaniment.
    vocals = StemSeparator(model.first).separate(x, SR)
    np.testing.assert_allclose(offline["vocals"], vocals["vocals"], atol=1e-6)
    np.testing.assert_allclose(offline["drums"] + offline["bass"] + offline["other"],
                               vocals["accompaniment"], atol=1e-5)
    # Karaoke through process() is the same as the sum of the kept stems.
    sep.mute("vocals")
    np.testing.assert_allclose(sep.process(x, SR), vocals["accompaniment"], atol=1e-5)


def _cascade(tmp_path, **change):
    d = {"format": "stemboard-cascade", "version": 1, "name": "t", "first": "hq-vocals",
         "split": "accompaniment", "second": "offline", "keep": ["drums", "bass", "other"]}
    d.update(change)
    p = tmp_path / "c.json"
    p.write_text(json.dumps(d))
    return p


@pytest.mark.parametrize("change,message", [
    ({"split": "drums"}, "split stem 'drums'"),
    ({"keep": ["drums", "guitar"]}, r"keep stems \['guitar'\]"),
    ({"keep": ["vocals", "drums"]}, "not unique"),
    ({"first": "nonexistent"}, "no such model"),
    ({"version": 9}, "newer"),
    ({"keep": []}, "keep must be"),
])
def test_bad_cascades_are_refused(tmp_path, change, message):
    with pytest.raises(ModelError, match=message):
        load_model(_cascade(tmp_path, **change))


def test_cascade_missing_key_is_refused(tmp_path):
    p = _cascade(tmp_path)
    d = json.loads(p.read_text())
    del d["second"]
    p.write_text(json.dumps(d))
    with pytest.raises(ModelError, match="missing key 'second'"):
        load_model(p)


def test_corrupt_hq_weights_are_refused(tmp_path):
    import shutil

    from stemboard.models import resolve_model_path

    src = resolve_model_path("hq-vocals")
    dst = tmp_path / "hq-vocals.onnx"
    data = bytearray(src.read_bytes())
    data[len(data) // 3] ^= 0x01
    dst.write_bytes(bytes(data))
    shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))
    with pytest.raises(ModelError, match="sha256 .* does not match"):
        MaskModel(dst)
