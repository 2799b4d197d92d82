"""Frame-major mask graphs (manifest ``mask_layout: "frames"``, issue 28): the
converter's rewrite keeps the masks, and the runtime and engine give the same
stems from either layout, offline and streamed."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the fixture graphs are torch exports ([train])")
pytest.importorskip("onnx")

from conftest import copy_model, read_manifest  # noqa: E402
from stemboard import StemSeparator  # noqa: E402
from stemboard.models import Manifest, MaskModel, ModelError  # noqa: E402
from stemboard.models.convert.frame_major import ConvertError, convert  # noqa: E402
from stemboard.train.data import STEMS  # noqa: E402
from stemboard.train.export import export_onnx  # noqa: E402
from stemboard.train.model import MaskNet  # noqa: E402
from stemboard.train.pipeline import GRID, MODEL_BINS  # noqa: E402


def _export(tmp_path, name, *, stateful):
    torch.manual_seed(3)
    net = MaskNet(bins=MODEL_BINS, stems=len(STEMS), hidden=16, dilations=(1, 2, 1), kernel=3,
                  front="freqconv", front_channels=4).eval()       # receptive field 9
    path = export_onnx(net, tmp_path / f"{name}.onnx", frames=16, stateful=stateful)
    Manifest(sample_rate=44100, n_fft=GRID.n_fft, hop=GRID.hop, model_bins=MODEL_BINS,
             stems=STEMS, context_frames=6, lookahead_frames=2, stateful=stateful,
             stereo_mode="mid_side").save(path.with_suffix(".json"))
    return path


@pytest.fixture(scope="module", params=[True, False], ids=["stateful", "stateless"])
def pair(request, tmp_path_factory):
    """(bin-major graph, its frame-major conversion)."""
    root = tmp_path_factory.mktemp("fm")
    bins = _export(root, "bins", stateful=request.param)
    frames = copy_model(bins, root, "frames")
    manifest = convert(frames)
    assert manifest["mask_layout"] == "frames" and manifest["version"] == 5
    return bins, frames


def test_converted_graph_gives_the_same_masks(pair):
    a, b = MaskModel(pair[0]), MaskModel(pair[1])
    x = np.abs(np.random.default_rng(0).standard_normal((3, MODEL_BINS, 40))).astype(np.float32)
    ya, yb = a.raw_masks(x), b.raw_masks(x)
    assert ya.shape == yb.shape == (3, 4, MODEL_BINS, 32)
    # A (batch, stems, bins, time) view of frame-major values, not a copy.
    assert yb.strides[3] > yb.strides[1] > yb.strides[2]
    np.testing.assert_allclose(yb, ya, rtol=0, atol=1e-5)


@pytest.mark.parametrize("block", [None, 1, 512, 1000])
def test_stems_equal_whatever_the_layout(pair, block, monkeypatch):
    from stemboard.plugin import engine

    layouts = []
    real = engine.masked_overlap_add_into

    def spy(spec, raw, *args):
        layouts.append(args[-4])                    # frame_major (before out, c0, start)
        return real(spec, raw, *args)

    monkeypatch.setattr(engine, "masked_overlap_add_into", spy)
    x = np.random.default_rng(1).uniform(-0.5, 0.5, (2, 20000)).astype(np.float32)
    seps = [StemSeparator(MaskModel(p)) for p in pair]
    outs = []
    for s in seps:
        layouts.clear()
        outs.append(s.separate(x, 44100) if block is None
                    else s.separate(x, 44100, buffer_size=block))
        # the engine hands the kernel the graph's own layout, every call
        assert set(layouts) == {s is seps[1]}
    for stem in STEMS:
        np.testing.assert_allclose(outs[1][stem], outs[0][stem], rtol=0, atol=1e-6)
    # ... and the frame-major model streamed equals it offline.
    if block is not None:
        whole = seps[1].separate(x, 44100)
        for stem in STEMS:
            np.testing.assert_allclose(outs[1][stem], whole[stem], rtol=0, atol=1e-5)


def test_a_layout_the_graph_does_not_have_is_refused(pair, tmp_path):
    bins = copy_model(pair[0], tmp_path, "lying")
    d = read_manifest(bins)
    bins.with_suffix(".json").write_text(json.dumps({**d, "mask_layout": "frames",
                                                     "version": 5}))
    with pytest.raises(ModelError, match="mask_layout 'frames'"):
        MaskModel(bins)


def test_converter_refuses_what_it_cannot_rewrite_and_writes_nothing(pair, tmp_path,
                                                                      model_path, seg_paths):
    frames = copy_model(pair[1], tmp_path, "again")
    before = frames.read_bytes()
    with pytest.raises(ConvertError, match="already 'frames'"):
        convert(frames)
    for path, match in ((model_path, "softmax"), (seg_paths["context"], "segmented")):
        other = copy_model(path, tmp_path, "other")
        graph, manifest = other.read_bytes(), other.with_suffix(".json").read_bytes()
        with pytest.raises(ConvertError, match=match):
            convert(other)
        assert other.read_bytes() == graph
        assert other.with_suffix(".json").read_bytes() == manifest
    assert frames.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
