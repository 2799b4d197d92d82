"""plugin/engine.py: the renderer interface, the residual output, make_renderer."""
import json

import numpy as np
import pytest

from stemboard.models import MaskModel, load_model
from stemboard.plugin.engine import (CascadeRenderer, MaskStream, Renderer, ResampledRenderer,
                                     StemRenderer, make_renderer, segment_weights)

SR = 44100


def _noise(n=30000, seed=11):
    rng = np.random.default_rng(seed)
    return (0.2 * rng.standard_normal((2, n))).astype(np.float32)


def _render(r, x, gains, block):
    ys = [r.push(x[:, i:i + block], gains) for i in range(0, x.shape[1], block)]
    ys.append(r.flush(gains))
    return np.concatenate(ys, axis=2)


@pytest.fixture(scope="module")
def model(model_factory):
    return MaskModel(model_factory())


@pytest.fixture(scope="module")
def cascade(model_factory, tmp_path_factory):
    """A cascade of two fixture models: the first's "other" split into the second's
    "lead" and "pad" (its "keys" left out)."""
    root = tmp_path_factory.mktemp("cascade")
    second = model_factory(stems=("lead", "keys", "pad"))
    path = root / "c.json"
    path.write_text(json.dumps({"format": "stemboard-cascade", "version": 1, "name": "c",
                                "first": model_factory(), "split": "other",
                                "second": second, "keep": ["lead", "pad"]}))
    return load_model(path)


@pytest.mark.parametrize("length,overlap", [(64, 8), (64, 0), (512, 64), (9, 4)])
def test_segment_weights_sum_to_one(length, overlap):
    step = length - overlap
    n = 5 * length
    total = np.zeros(n + length)
    for k, start in enumerate(range(0, n, step)):
        total[start:start + length] += segment_weights(length, overlap, first=k == 0)
    np.testing.assert_allclose(total[:n], 1.0, atol=1e-6)


def test_residual_output_equals_direct_rendering(model):
    """The last stem as the input minus the others equals rendering it directly."""
    x = _noise()
    eye = np.eye(len(model.stems), dtype=np.float32)
    for block in (512, 4099, 30000):
        direct = _render(Renderer(model, 2, len(eye)), x, eye, block)
        residual = _render(Renderer(model, 2, len(eye), residual=True), x, eye[:-1], block)
        assert direct.shape == residual.shape == (len(eye), 2, x.shape[1])
        np.testing.assert_array_equal(residual[:-1], direct[:-1])
        np.testing.assert_allclose(residual[-1], direct[-1], atol=2e-6, rtol=0)


def test_residual_output_is_input_minus_the_others_for_any_gains(model):
    """Valid for every renderer and gains, changing within a stream too."""
    x = _noise()
    r = Renderer(model, 2, 3, residual=True)
    g1 = np.array([[1.0, 0.5, 0, 0], [0, 0, 2.0, 0]], np.float32)
    g2 = np.array([[0.1, 0, 0, 1.0], [0, 1.0, 0, 0]], np.float32)
    y = np.concatenate([r.push(x[:, :10000], g1), r.push(x[:, 10000:], g2), r.flush(g2)],
                       axis=2)
    assert y.shape == (3, 2, x.shape[1])
    np.testing.assert_allclose(y.sum(axis=0), x, atol=1e-5, rtol=0)
    # one output, all residual: the input itself
    r = Renderer(model, 2, 1, residual=True)
    y = _render(r, x, np.zeros((0, 4), np.float32), 4096)
    np.testing.assert_allclose(y[0], x, atol=1e-6, rtol=0)


def test_gains_of_the_wrong_shape_are_refused_before_any_state_changes(model, cascade):
    x = _noise(5000)
    for r in (Renderer(model, 2, 4, residual=True),
              ResampledRenderer(model, 2, 2, 48000),
              CascadeRenderer(cascade, 2, 2, residual=True)):
        with pytest.raises(ValueError, match="shape"):
            r.push(x, np.ones((r.n_outputs + 1, len(r.stems)), np.float32))
        assert r.samples_in == 0


@pytest.mark.parametrize("rate", [SR, 48000])
def test_every_renderer_has_the_one_interface(model, cascade, rate):
    x = _noise(20000)
    for m, cls in ((model, Renderer), (cascade, CascadeRenderer)):
        r = make_renderer(m, 2, 3, sample_rate=rate, mask_mode="binary", residual=True)
        assert isinstance(r, StemRenderer)
        assert isinstance(r, cls if rate == SR else ResampledRenderer)
        assert (r.num_channels, r.n_outputs, r.n_gains, r.residual) == (2, 3, 2, True)
        assert r.sample_rate == rate and r.stems == tuple(m.stems)
        assert r.mask_mode == "binary" and r.latency_samples >= m.latency_samples
        gains = np.eye(2, len(m.stems), dtype=np.float32)
        y = r.push(x, gains)
        assert r.samples_in == x.shape[1]
        tail = r.flush(gains)
        assert y.shape[2] + tail.shape[2] == x.shape[1] and r.samples_in == 0
        r.mask_mode = "soft"
        with pytest.raises(ValueError, match="mask_mode"):
            r.mask_mode = "hard"
        assert r.mask_mode == "soft"


@pytest.mark.parametrize("stereo_mode", ["left_right", "mid_side"])
@pytest.mark.parametrize("residual", [False, True])
def test_push_into_writes_what_push_returns(model_factory, stereo_mode, residual):
    """The offline render writes each block straight into the whole output
    (decoding mid/side and the residual there): the same bits as :meth:`push`,
    the first block (whose first samples are cut) and a strided output included,
    and nothing outside the block's samples touched.  Blocks of 70000 samples
    are over ``MIN_FRAMES`` frames: the channels are rendered in two threads."""
    m = MaskModel(model_factory(manifest_overrides={"stereo_mode": stereo_mode}))
    x = _noise(150000, seed=3)
    gains = np.array([[1, 0, 0, 0], [0, 0.5, 2, 0]], np.float32)[:2 - residual]
    n_out = 2
    want = _render(Renderer(m, 2, n_out, residual=residual), x, gains, 70000)
    for out in (np.full((n_out, 2, x.shape[1]), np.nan, np.float32),
                np.full((n_out, 2, 2 * x.shape[1]), np.nan, np.float32)[:, :, ::2]):
        r = Renderer(m, 2, n_out, residual=residual)
        pos = 0
        for i in range(0, x.shape[1], 70000):
            n = r.push_into(x[:, i:i + 70000], gains, out, pos)
            assert np.isnan(out[:, :, pos + n:]).all()
            pos += n
        tail = r.flush(gains)
        out[:, :, pos:] = tail
        np.testing.assert_array_equal(out, want)


def test_push_into_refuses_an_output_without_room(model):
    r = Renderer(model, 2, 1)
    gains = np.ones((1, len(model.stems)), np.float32)
    out = np.zeros((1, 2, 100000), np.float32)
    pos = r.push_into(_noise(40000), gains, out, 0)
    pos += r.push_into(_noise(40000, seed=4), gains, out, pos)
    small = np.zeros((1, 2, pos + 10), np.float32)
    with pytest.raises(RuntimeError, match="room for 10 samples"):
        r.push_into(_noise(40000, seed=5), gains, small, pos)
    assert not small.any()


def test_mask_mode_reaches_every_stage(cascade, model):
    r = make_renderer(cascade, 2, 2, sample_rate=48000)
    r.mask_mode = "binary"
    assert (r.inner.first.mask_mode, r.inner.second.mask_mode) == ("binary", "binary")


def test_cascade_residual_is_the_remaining_stem(cascade):
    """With one-hot gains the cascade's residual output equals that stem rendered."""
    x = _noise()
    n = len(cascade.stems)
    eye = np.eye(n, dtype=np.float32)
    direct = _render(CascadeRenderer(cascade, 2, n), x, eye, 4096)
    residual = _render(CascadeRenderer(cascade, 2, n, residual=True), x, eye[:-1], 4096)
    np.testing.assert_array_equal(residual, direct)
    np.testing.assert_allclose(direct.sum(axis=0), x, atol=1e-5, rtol=0)


def test_mask_mode_is_keyword_only(model):
    with pytest.raises(TypeError):
        Renderer(model, 2, 1, "soft")
    with pytest.raises(TypeError):
        MaskStream(model, 2, "soft")
    with pytest.raises(ValueError, match="mask_mode"):
        Renderer(model, 2, 1, mask_mode="hard")


def test_min_offline_block_is_the_deprecated_name_of_min_offline_buffer_size():
    from stemboard.plugin import base

    with pytest.warns(DeprecationWarning, match="MIN_OFFLINE_BUFFER_SIZE"):
        assert base.MIN_OFFLINE_BLOCK == base.MIN_OFFLINE_BUFFER_SIZE
    with pytest.raises(AttributeError):
        base.NO_SUCH_NAME
