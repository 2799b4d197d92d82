"""Stateful graphs: each frame goes through the network once, with the same masks.

A stateful graph carries its layers' input frames between calls (see
``Manifest``).  The band-split fixture exists in both layouts with the same
weights, so everything the engine does with one must equal the other.  No torch.
"""
import json
import shutil

import numpy as np
import pytest

from conftest import SR, dbfs, music_like, stream
from onnx_fixtures import band_split_model
from stemboard.models import MaskModel, ModelError
from stemboard.plugin import StemSeparator

GAINS = {"vocals": -20.0, "bass": 4.0, "other": -3.0}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    pytest.importorskip("onnx")
    root = tmp_path_factory.mktemp("stateful")
    kw = dict(context=4, lookahead=2)
    return (str(band_split_model(root / "plain.onnx", **kw)),
            str(band_split_model(root / "step.onnx", stateful=True, **kw)))


def test_run_equals_stateless(pair):
    plain, step = MaskModel(pair[0]), MaskModel(pair[1])
    assert step.stateful and not plain.stateful
    assert [s.shape for s in step.zero_state(3)] == [(3, 513, 6)]
    x = np.random.default_rng(0).random((2, 513, 40)).astype(np.float32)
    np.testing.assert_allclose(step.run(x), plain.run(x), atol=1e-6)


def test_small_steps_run_on_one_thread_with_the_same_masks(pair):
    """Streaming-sized steps use a single-threaded session (issue 28: no waking of
    worker threads per block); its masks and states equal the main session's."""
    from stemboard.models import runtime

    step = MaskModel(pair[1], num_threads=2)
    assert step._small_session is not None
    assert MaskModel(pair[1], num_threads=1)._small_session is None
    assert MaskModel(pair[0], num_threads=2)._small_session is None   # not stateful
    x = np.random.default_rng(1).random((2, 513, runtime.SMALL_RUN_FRAMES - 1)).astype(
        np.float32)
    small = step.step(x, step.zero_state(2))
    step._small_session = None                                        # main session only
    big = step.step(x, step.zero_state(2))
    np.testing.assert_allclose(small[0], big[0], atol=1e-6)
    for a, b in zip(small[1], big[1]):
        np.testing.assert_allclose(a, b, atol=1e-6)


class _NoHandOff:
    """Stands in for a worker pool or a multi-threaded session: fails if used."""

    def submit(self, *args, **kwargs):
        raise AssertionError("a streaming block was handed to a worker thread")

    def run(self, *args, **kwargs):
        raise AssertionError("a streaming block ran on the multi-threaded session")


@pytest.mark.parametrize("block", [256, 512])
def test_streaming_blocks_stay_on_the_calling_thread(pair, monkeypatch, block):
    """A host calls process() from its real-time audio thread; any part of a block
    handed to another thread would run without that priority, and a busy machine
    would then delay it (issue 28: under two busy processes the p99 block time fell
    from 0.56-0.59 of the budget to 0.22-0.24 with the host thread at real-time
    priority, which needs every step of a block on that thread)."""
    from stemboard.dsp import threads

    model = MaskModel(pair[1], num_threads=2)
    assert model._small_session.get_session_options().intra_op_num_threads == 1
    sep = StemSeparator(model, gains_db=GAINS)
    x = music_like(seconds=1.5, seed=7)
    want = stream(sep, x, block)
    sep.reset()
    head = sep.process(x[:, :block], SR, reset=False)       # the first block may prime
    monkeypatch.setattr(threads, "_pool", _NoHandOff())
    monkeypatch.setattr(threads, "_workers", lambda: 2)       # as on a multi-core host
    monkeypatch.setattr(model, "session", _NoHandOff())
    got = stream(sep, x[:, block:], block, flush=False)
    np.testing.assert_array_equal(np.concatenate([head, got], axis=1),
                                  want[:, :head.shape[1] + got.shape[1]])


def test_one_frame_steps_run_on_a_fixed_shape_session(pair, monkeypatch):
    """A one-frame step (a host's block of up to hop samples) runs on a session built
    for its batch with the batch and time fixed (issue 28: ONNX Runtime folds the
    shape arithmetic, and a 512-sample block of offline took about a tenth less;
    bench/step_sessions.py); its masks and states are the dynamic session's."""
    model = MaskModel(pair[1], num_threads=2)
    rng = np.random.default_rng(3)
    x = rng.random((2, 513, 1)).astype(np.float32)
    state = [rng.random(s.shape).astype(np.float32) for s in model.zero_state(2)]
    small = model._small_session
    monkeypatch.setattr(model, "session", _NoHandOff())
    monkeypatch.setattr(model, "_small_session", _NoHandOff())
    masks, states = model.step(x, state)                    # neither session is touched
    assert list(model._frame_sessions) == [2]
    opts = model._frame_sessions[2].get_session_options()
    assert opts.intra_op_num_threads == 1
    with pytest.raises(AssertionError):                     # two frames: the small session
        model.step(np.repeat(x, 2, axis=2), state)
    monkeypatch.setattr(model, "_small_session", small)
    monkeypatch.setattr(model, "_free_dims", None)          # the dynamic session, as before
    want, want_states = model.step(x, state)
    np.testing.assert_allclose(masks, want, atol=1e-6)
    for a, b in zip(states, want_states):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_fixed_shape_sessions_are_bounded(pair, monkeypatch):
    """Past MAX_FRAME_SESSIONS batch sizes, one-frame steps use the small session."""
    from stemboard.models import runtime

    monkeypatch.setattr(runtime, "MAX_FRAME_SESSIONS", 1)
    model = MaskModel(pair[1], num_threads=2)
    rng = np.random.default_rng(4)
    for batch in (1, 3, 1):
        x = rng.random((batch, 513, 1)).astype(np.float32)
        masks, _ = model.step(x, model.zero_state(batch))
        assert masks.shape == (batch, 4, 513, 1)
    assert list(model._frame_sessions) == [1]
    monkeypatch.setattr(model, "_small_session", _NoHandOff())
    with pytest.raises(AssertionError):
        model.step(x[:1].repeat(3, axis=0), model.zero_state(3))


def test_a_fixed_shape_session_that_fails_to_build_falls_back(pair, monkeypatch):
    """The fixed shapes are a speed-up, never a condition: if ONNX Runtime cannot build
    such a session, one-frame steps run on the small session, with the same masks."""
    from stemboard.models import runtime

    model = MaskModel(pair[1], num_threads=2)
    build = runtime._session

    def refuse_fixed(path, providers, num_threads, *, fixed_dims=None):
        if fixed_dims:
            raise RuntimeError("cannot fix the shapes")
        return build(path, providers, num_threads)

    monkeypatch.setattr(runtime, "_session", refuse_fixed)
    x = np.random.default_rng(5).random((2, 513, 1)).astype(np.float32)
    got, _ = model.step(x, model.zero_state(2))
    assert model._frame_sessions == {2: False}
    monkeypatch.setattr(model, "_free_dims", None)
    want, _ = model.step(x, model.zero_state(2))
    np.testing.assert_array_equal(got, want)


def test_prepared_stream_runs_only_on_the_fixed_shape_session(pair, monkeypatch):
    """After prepare(), a stream of hop-sized blocks touches neither the main nor the
    small session, and gives exactly a fresh separator's output."""
    x = music_like(seconds=1.5, seed=9)
    want = stream(StemSeparator(pair[1], gains_db=GAINS), x, 512)
    model = MaskModel(pair[1], num_threads=2)
    assert model.manifest.hop == 512
    sep = StemSeparator(model, gains_db=GAINS)
    sep.prepare(SR, 2, buffer_size=512)
    monkeypatch.setattr(model, "session", _NoHandOff())
    monkeypatch.setattr(model, "_small_session", _NoHandOff())
    got = stream(sep, x, 512, flush=False)
    np.testing.assert_array_equal(got, want[:, :got.shape[1]])


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """A stateful model whose receptive field (19 frames) is past SMALL_RUN_FRAMES, as
    the shipped ones are (24): its silent start runs on the main session."""
    pytest.importorskip("onnx")
    from stemboard.models import runtime

    path = band_split_model(tmp_path_factory.mktemp("wide") / "wide.onnx", stateful=True,
                            context=16, lookahead=2)
    assert MaskModel(path).manifest.receptive_field > runtime.SMALL_RUN_FRAMES
    return str(path)


def test_prepare_moves_the_set_up_out_of_the_first_block(wide, monkeypatch):
    """After prepare(), even the first block stays on the calling thread (no renderer
    to build, no receptive field of silence on the multi-threaded session), and the
    stream is exactly what a fresh separator gives."""
    from stemboard.dsp import threads

    x = music_like(seconds=1.5, seed=8)
    want = stream(StemSeparator(wide, gains_db=GAINS), x, 512)
    fresh = MaskModel(wide, num_threads=2)
    monkeypatch.setattr(fresh, "session", _NoHandOff())
    with pytest.raises(AssertionError, match="multi-threaded session"):
        StemSeparator(fresh, gains_db=GAINS).process(x[:, :512], SR, reset=False)

    model = MaskModel(wide, num_threads=2)
    sep = StemSeparator(model, gains_db=GAINS)
    sep.prepare(SR, 2, buffer_size=512)
    monkeypatch.setattr(threads, "_pool", _NoHandOff())
    monkeypatch.setattr(threads, "_workers", lambda: 2)
    monkeypatch.setattr(model, "session", _NoHandOff())
    got = stream(sep, x, 512, flush=False)
    np.testing.assert_array_equal(got, want[:, :got.shape[1]])


def test_prepare_leaves_every_kind_of_processor_unchanged(pair):
    import pedalboard as pb

    from stemboard.plugin import Chain

    x = music_like(seconds=1.0, seed=9)
    from stemboard.plugin import StemSplit
    from stemboard.plugin.ab import ABSwitch

    for make in (lambda: StemSeparator(pair[0], gains_db=GAINS),
                 lambda: Chain([pb.Gain(-3.0), StemSeparator(pair[1], gains_db=GAINS)]),
                 lambda: ABSwitch(None, StemSeparator(pair[1], gains_db=GAINS)),
                 lambda: StemSplit({"vocals": [pb.Gain(-6.0)], "bass": None}, model=pair[1])):
        want_stream, want_offline = stream(make(), x, 300), make().process(x, SR)
        p = make()
        p.prepare(48000, 1, buffer_size=64)           # another rate and layout first
        p.prepare(SR, 2, buffer_size=300)
        np.testing.assert_array_equal(stream(p, x, 300), want_stream)
        np.testing.assert_array_equal(p.process(x, SR), want_offline)


@pytest.mark.parametrize("bad, match", [
    (dict(sample_rate=0), "sample_rate"), (dict(sample_rate=float("nan")), "sample_rate"),
    (dict(num_channels=0), "num_channels"), (dict(num_channels=2.5), "num_channels"),
    (dict(num_channels=True), "num_channels"), (dict(buffer_size=0), "buffer_size must be"),
    (dict(buffer_size="512"), "buffer_size must be"),
    (dict(buffer_size=None), "buffer_size must be"),
])
def test_prepare_checks_its_arguments_before_touching_the_stream(pair, bad, match):
    x = music_like(seconds=1.0, seed=10)
    want = stream(StemSeparator(pair[1], gains_db=GAINS), x, 512)
    sep = StemSeparator(pair[1], gains_db=GAINS)
    head = sep.process(x[:, :1024], SR, reset=False)
    with pytest.raises(ValueError, match=match):
        sep.prepare(**{"sample_rate": SR, "num_channels": 2, "buffer_size": 512, **bad})
    rest = stream(sep, x[:, 1024:], 512)
    np.testing.assert_array_equal(np.concatenate([head, rest], axis=1), want)


def test_step_needs_a_stateful_graph(pair):
    with pytest.raises(ModelError, match="stateful"):
        MaskModel(pair[0]).step(np.zeros((1, 513, 5), np.float32), [])


@pytest.mark.parametrize("block", [1, 2, 300, 512, 513, 1024, 5000])
def test_streaming_stateful_equals_stateless_offline(pair, block):
    x = music_like(seconds=1.5)
    offline = StemSeparator(pair[0], gains_db=GAINS).process(x, SR)
    assert dbfs(offline - x) > -40          # the gains really change the signal
    sep = StemSeparator(pair[1], gains_db=GAINS)
    # 1- and 2-sample blocks of stereo are ambiguous layouts: announce it first.
    sep.process(x[:, :0] if block > 2 else x[:, :4], SR, reset=True)
    got = stream(sep, x, block)
    assert got.shape == x.shape
    np.testing.assert_allclose(got, offline, atol=1e-5)


def test_separate_stateful_equals_stateless(pair):
    x = music_like(seconds=1.0, seed=3)
    a = StemSeparator(pair[0]).separate(x, SR)
    b = StemSeparator(pair[1]).separate(x, SR)
    for name in a:
        np.testing.assert_allclose(b[name], a[name], atol=1e-5)
    assert dbfs(sum(b.values()) - x) <= -80


def test_reset_restores_the_silent_state(pair):
    x = music_like(seconds=1.0, seed=5)
    sep = StemSeparator(pair[1], gains_db=GAINS)
    first = stream(sep, x, 700)
    sep.reset()
    np.testing.assert_array_equal(stream(sep, x, 700), first)


def _variant(src, tmp_path, manifest_change=None, graph_from=None):
    """A copy of model ``src`` (its manifest changed, or another graph beside it)."""
    dst = tmp_path / "m.onnx"
    shutil.copyfile(graph_from or src, dst)
    man = json.loads(open(src[:-len(".onnx")] + ".json").read())
    man.update(manifest_change or {})
    dst.with_suffix(".json").write_text(json.dumps(man))
    return dst


def test_stateful_manifest_needs_state_inputs(pair, tmp_path):
    p = _variant(pair[0], tmp_path, {"stateful": True, "version": 2})
    with pytest.raises(ModelError, match="no state inputs"):
        MaskModel(p)


def test_state_inputs_need_a_stateful_manifest(pair, tmp_path):
    p = _variant(pair[0], tmp_path, graph_from=pair[1])
    with pytest.raises(ModelError, match="not stateful"):
        MaskModel(p)


def test_stateful_flag_must_be_boolean(pair, tmp_path):
    p = _variant(pair[1], tmp_path, {"stateful": "yes"})
    with pytest.raises(ModelError, match="stateful must be true or false"):
        MaskModel(p)
