"""Training-path tests: feature parity with the runtime and ONNX export fidelity.

Need the ``[train]`` extra (torch, onnx); skipped cleanly without it.  No dataset
is needed: all signals are synthesized.
"""
import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the [train] extra (torch)")
pytest.importorskip("onnx")

from stemboard.dsp import StftGrid, stft  # noqa: E402
from stemboard.models import Manifest, MaskModel  # noqa: E402
from stemboard.train.data import STEMS, RemixSampler, stem_spectra  # noqa: E402
from stemboard.train.export import export_onnx  # noqa: E402
from stemboard.train.model import MaskNet  # noqa: E402
from stemboard.train.train import log1p_features, normalization_stats  # noqa: E402

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


@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_feature_parity_with_runtime(scale):
    stems = _stems()
    spectra, lengths = stem_spectra([{"stems": stems}], GRID, BINS)
    norm = normalization_stats(spectra, lengths, scale=scale)
    assert norm["scale"] == scale
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


def test_phase_sensitive_targets():
    stems = _stems()
    spectra, lengths = stem_spectra([{"stems": stems}, {"stems": stems[:, ::-1]}], GRID, BINS)
    mag_mix, mag_tgt = RemixSampler(spectra, lengths, frames=30, seed=4).batch(6)
    mix, tgt = RemixSampler(spectra, lengths, frames=30, seed=4, phase_sensitive=True).batch(6)
    # same draws, same mixture; each target is |S| cos(phase difference) <= |S|
    np.testing.assert_array_equal(mix, mag_mix)
    tol = 1e-5 * mag_tgt + 1e-6
    assert np.all(np.abs(tgt) <= mag_tgt + tol)
    # the projections of the stems on the mixture's phase sum to the mixture magnitude,
    # so masks that sum to one can reach the target exactly where all are >= 0
    np.testing.assert_allclose(tgt.sum(axis=1), mix, atol=1e-4 * mix.max())
    # stems out of phase with the mixture get targets below their magnitudes
    assert np.any(tgt < mag_tgt - 1e-3)


def test_l2psa_loss_trains_and_differs_from_l2mag():
    from stemboard.train.train import loss_fn, train

    stems = _stems()
    spectra, lengths = stem_spectra([{"stems": stems}, {"stems": stems[:, ::-1]}], GRID, BINS)
    norm = normalization_stats(spectra, lengths)
    quiet = lambda *_: None  # noqa: E731
    a, _ = train(_tiny_cfg(loss="l2mag"), spectra, lengths, norm, log=quiet)
    b, info = train(_tiny_cfg(loss="l2psa"), spectra, lengths, norm, log=quiet)
    assert info["config"]["loss"] == "l2psa"
    assert any(not torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                     b.state_dict().values()))
    # the loss is zero for masks that reproduce the targets, positive otherwise
    mix = torch.rand(2, 5, 7) + 0.1
    masks = torch.softmax(torch.randn(2, 4, 5, 7), dim=1)
    assert loss_fn(masks, mix, masks * mix[:, None], "l2psa").item() == 0.0
    assert loss_fn(masks, mix, 0.5 * masks * mix[:, None], "l2psa").item() > 0.0


def _tiny_model(front, refine, planes=1):
    torch.manual_seed(0)
    model = MaskNet(bins=BINS, stems=4, hidden=16, dilations=(1, 2), kernel=3, front=front,
                    front_channels=4, refine_channels=refine, in_bins=planes * BINS,
                    front_planes=planes)
    if refine:  # the last layer starts at zero; make the head do something
        torch.nn.init.normal_(model.refine.net[-1].weight, std=0.5)
    for m in model.modules():  # non-trivial batch-norm statistics
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _tiny_bandsplit(seed=0):
    from stemboard.train.model import BandSplitNet

    torch.manual_seed(seed)
    model = BandSplitNet(bins=BINS, stems=4, hidden=6, dilations=(1, 2), kernel=3)
    for m in model.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("front,refine", [("dense", 0), ("freqconv", 0), ("freqconv", 4)])
def test_onnx_export_matches_torch(tmp_path, front, refine):
    model = _tiny_model(front, refine)
    path = export_onnx(model, tmp_path / "tiny.onnx", frames=16, stateful=False)
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
    assert not mm.stateful
    masks = mm.masks(x.numpy())
    np.testing.assert_allclose(masks.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("front,state_channels", [("dense", 16), ("freqconv", 16),
                                                  ("bandsplit", 6 * 39), ("planes", 16)])
def test_stateful_export_matches_torch_in_any_chunks(tmp_path, front, state_channels):
    # bandsplit: BandSplitNet with 6 channels per band; its states hold every band.
    # planes: a stereo-pair MaskNet whose front reads the pair as two planes; the
    # runtime pairs the two channels (manifest input_layout) as the reference does.
    if front == "bandsplit":
        model = _tiny_bandsplit()
    else:
        model = _tiny_model("freqconv" if front == "planes" else front, 0,
                            planes=2 if front == "planes" else 1)
    path = export_onnx(model, tmp_path / "step.onnx", frames=16)    # stateful by default
    x = torch.randn(2, BINS, 40)
    with torch.no_grad():
        ref = model(torch.cat([x, x.flip(0)], 1) if front == "planes" else x).numpy()
    rf = model.receptive_field
    m = _manifest({"type": "none"}, context=3, lookahead=3)
    layout = "stereo_pair" if front == "planes" else "channel"
    Manifest(**{**m.__dict__, "stateful": True, "input_layout": layout}).save(
        tmp_path / "step.json")
    mm = MaskModel(path)
    assert mm.stateful and [s.shape for s in mm.zero_state(2)] == [
        (2, state_channels, 2), (2, state_channels, 4)]
    # the stateless contract: zero states, the first rf - 1 frames dropped
    np.testing.assert_allclose(mm.run(x.numpy()), ref, atol=1e-4, rtol=0)
    # carried states: any split of the frames gives the same masks
    rng = np.random.default_rng(1)
    splits = [np.sort(rng.choice(np.arange(1, 40), size=5, replace=False)) for _ in range(3)]
    for cuts in splits + [[1, 9, 10, 27]]:
        state, outs = mm.zero_state(2), []
        for chunk in np.split(x.numpy(), cuts, axis=2):
            out, state = mm.step(np.ascontiguousarray(chunk), state)
            assert out.shape[3] == chunk.shape[2]
            outs.append(out)
        got = np.concatenate(outs, axis=3)[..., rf - 1:]
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


def test_stateful_export_refuses_refine_head(tmp_path):
    with pytest.raises(ValueError, match="refine"):
        export_onnx(_tiny_model("freqconv", 4), tmp_path / "r.onnx")


def test_remix_sampler_stereo_pair_other_channel():
    stems = _stems()
    spectra, lengths = stem_spectra([{"stems": stems}, {"stems": stems[:, ::-1]}], GRID, BINS)
    plain = RemixSampler(spectra, lengths, frames=30, p_remix=0.5, seed=3)
    paired = RemixSampler(spectra, lengths, frames=30, p_remix=0.5, seed=3, stereo_pair=True)
    mix0, tgt0 = plain.batch(4)
    mix, tgt, other = paired.batch(4)
    # same draws as the per-channel sampler for "self"; a third array for the other channel
    np.testing.assert_array_equal(mix, mix0)
    np.testing.assert_array_equal(tgt, tgt0)
    assert other.shape == mix.shape
    # unremixed, ungained check: with one stem and no remix/gain/drop, "other" is the
    # other channel of the very same segment
    one = spectra[:, :1]
    s = RemixSampler(one, lengths, frames=30, p_remix=0.0, gain_db=(0.0, 0.0), p_drop=0.0,
                     seed=5, stereo_pair=True)
    m, _, o = s.batch(6)
    full = np.abs(one[:, 0]).transpose(0, 1, 3, 2)           # (tracks, ch, bins, frames)
    for b in range(6):
        hits = [(tr, ch, off) for tr in range(full.shape[0]) for ch in range(2)
                for off in range(full.shape[3] - 30 + 1)
                if np.array_equal(full[tr, ch, :, off: off + 30], m[b])]
        assert hits, "self crop not found"
        assert any(np.array_equal(full[tr, 1 - ch, :, off: off + 30], o[b])
                   for tr, ch, off in hits)


@pytest.mark.parametrize("mid_side", [False, True])
def test_stereo_pair_training_step_and_export(tmp_path, mid_side):
    from stemboard.train.pipeline import manifest_for
    from stemboard.train.train import TrainConfig, train

    stems = _stems()
    spectra, lengths = stem_spectra([{"stems": stems}], GRID, BINS)
    norm = normalization_stats(spectra, lengths)
    cfg = TrainConfig(name="t", hidden=8, dilations=(1,), kernel=3, context=1, lookahead=1,
                      steps=2, batch=2, frames_out=8, input_layout="stereo_pair",
                      mid_side=mid_side)
    model, info = train(cfg, spectra, lengths, norm, log=lambda *_: None)
    assert model.in_bins == 2 * BINS and model.config["in_bins"] == 2 * BINS
    assert info["config"]["input_layout"] == "stereo_pair"
    # checkpoints rebuild from their config
    again = MaskNet(**model.config)
    again.load_state_dict(model.state_dict())
    path = export_onnx(model, tmp_path / "sp.onnx", frames=8)
    import onnx

    assert onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[1].dim_value == 2 * BINS
    # A paired model runs in the coding it was trained on (mid/side is the default ask).
    man = manifest_for(cfg, norm, "t", {})
    assert man.input_layout == "stereo_pair" and man.stateful
    assert man.stereo_mode == ("mid_side" if mid_side else "left_right")
    man.save(tmp_path / "sp.json")
    # The runtime pairs the channels exactly as training does.
    rt = MaskModel(path)
    rng = np.random.default_rng(0)
    mag = rng.uniform(0, 2, (2, BINS, 12)).astype(np.float32)
    feats = log1p_features(torch.from_numpy(mag), norm)
    with torch.no_grad():
        ref = model(torch.cat([feats, feats.flip(0)], dim=1)).numpy()
    np.testing.assert_allclose(rt.raw_masks(mag), ref, atol=1e-4)
    assert rt.masks(mag).shape == (2, 4, BINS, 10)
    with pytest.raises(ValueError, match="input_layout"):
        TrainConfig(input_layout="bogus").stereo_pair


def test_remix_sampler_eq_is_a_smooth_bounded_per_stem_gain():
    stems = _stems()
    spectra, lengths = stem_spectra([{"stems": stems}], GRID, BINS)
    one = spectra[:, :1]                                     # one stem: mix == that stem
    kw = dict(frames=30, p_remix=0.0, gain_db=(0.0, 0.0), p_drop=0.0, seed=7)
    flat = RemixSampler(one, lengths, **kw).batch(1)[0]
    eq = RemixSampler(one, lengths, eq_db=6.0, **kw)
    got = eq.batch(1)[0]
    # the EQ curve is drawn after the crop, so the first crop is the same; it only
    # rescales bins
    ratio = got / np.maximum(flat, 1e-20)
    live = flat > 1e-6
    db = 20 * np.log10(ratio[live])
    assert np.all(np.abs(db) <= 6.0 + 1e-3)
    assert np.ptp(db) > 1.0                                   # it does change the balance
    # one gain per bin, the same in every frame of the crop
    r = np.where(live, ratio, np.nan)
    spread = np.nanmax(r, axis=2) - np.nanmin(r, axis=2)
    assert np.nanmax(spread) < 1e-3


def test_remix_sampler_stem_gain_db_sets_one_stems_level():
    stems = _stems()
    spectra, lengths = stem_spectra([{"stems": stems}], GRID, BINS)
    kw = dict(frames=30, p_remix=0.0, gain_db=(0.0, 0.0), p_drop=0.0, seed=2)
    plain_mix, plain = RemixSampler(spectra, lengths, **kw).batch(5)
    mix, tgt = RemixSampler(spectra, lengths, stem_gain_db={0: (-30.0, -10.0)}, **kw).batch(5)
    # same crops (one draw per stem either way); only stem 0 is scaled, by -30..-10 dB
    np.testing.assert_array_equal(tgt[:, 1:], plain[:, 1:])
    live = plain[:, 0] > 1e-6
    db = 20 * np.log10(tgt[:, 0][live] / plain[:, 0][live])
    assert db.min() >= -30.0 - 1e-3 and db.max() <= -10.0 + 1e-3
    per_item = [np.median(20 * np.log10(tgt[b, 0][live[b]] / plain[b, 0][live[b]]))
                for b in range(5)]
    assert np.ptp(per_item) > 1.0                         # drawn per item, not fixed
    assert not np.array_equal(mix, plain_mix)
    for bad in ({0: (-10.0, -30.0)}, {9: (-30.0, -10.0)}):
        with pytest.raises(ValueError, match="stem_gain_db"):
            RemixSampler(spectra, lengths, stem_gain_db=bad, **kw)


def test_remix_sampler_track_weights():
    stems = _stems()
    spectra, lengths = stem_spectra([{"stems": stems}, {"stems": 0 * stems}], GRID, BINS)
    # all weight on the silent track: every crop is silent
    s = RemixSampler(spectra, lengths, frames=30, seed=2, track_weights=[0.0, 1.0])
    mix, tgt = s.batch(5)
    assert not mix.any() and not tgt.any()
    s = RemixSampler(spectra, lengths, frames=30, seed=2, p_drop=0.0, track_weights=[1.0, 0.0])
    assert s.batch(5)[0].any(axis=(1, 2)).all()
    with pytest.raises(ValueError, match="track_weights"):
        RemixSampler(spectra, lengths, frames=30, track_weights=[1.0])


def test_freqconv_front_keeps_receptive_field_and_shares_weights():
    torch.manual_seed(1)
    model = MaskNet(bins=BINS, stems=4, hidden=8, dilations=(1, 2), front="freqconv",
                    front_channels=4).eval()
    assert model.receptive_field == 7
    x = torch.randn(1, BINS, 20)
    with torch.no_grad():
        y = model(x)
        # changing one input frame changes only the outputs whose window holds it
        x2 = x.clone()
        x2[0, :, 10] += 1.0
        changed = (model(x2) - y).abs().amax(dim=(0, 1, 2)) > 0
    assert changed.nonzero().flatten().tolist() == list(range(10 - 6, 11))
    with pytest.raises(ValueError, match="front"):
        MaskNet(front="lstm")


def test_bin_refine_starts_as_identity_and_stays_local():
    torch.manual_seed(2)
    plain = MaskNet(bins=BINS, stems=4, hidden=8, dilations=(1, 2), front="freqconv",
                    front_channels=4).eval()
    model = MaskNet(bins=BINS, stems=4, hidden=8, dilations=(1, 2), front="freqconv",
                    front_channels=4, refine_channels=4, refine_kernel=3)
    # same weights for the shared layers: with its zero-initialised last layer the
    # head leaves the masks exactly as the plain network's
    model.load_state_dict(plain.state_dict(), strict=False)
    model.eval()
    assert model.receptive_field == plain.receptive_field == 7
    assert model.macs_per_frame() > plain.macs_per_frame()
    x = torch.randn(1, BINS, 20)
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))
        torch.nn.init.normal_(model.refine.net[-1].weight, std=0.5)
        y = model(x)
        # the head reads the input frame its output frame belongs to (context 3), and
        # a bin's correction depends only on bins within two kernels' reach
        x2 = x.clone()
        x2[0, 10, 9] += 3.0
        d = (model(x2) - y).abs().amax(dim=(0, 1))          # (bins, time)
    # only the output frames whose window holds input frame 9 change
    changed = (d.amax(dim=0) > 0).nonzero().flatten().tolist()
    assert changed == list(range(9 - 6, 9 + 1))


def test_lazy_pitch_copies_equal_eager_ones():
    from stemboard.train.data import pitch_shifted

    stems = _stems()
    tracks = [{"name": "a", "stems": stems}, {"name": "b", "stems": stems[:, ::-1]}]
    eager = pitch_shifted(tracks, (2, -1), log=lambda *_: None)
    lazy = pitch_shifted(tracks, (2, -1), log=lambda *_: None, lazy=True)
    assert [e["name"] for e in eager] == [e["name"] for e in lazy]
    for e, z in zip(eager, lazy):
        assert "stems" not in z and z["samples"] == e["stems"].shape[-1]
        np.testing.assert_array_equal(z["make"](), e["stems"])
    a, la = stem_spectra(tracks + eager, GRID, BINS)
    b, lb = stem_spectra(tracks + lazy, GRID, BINS)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)


def test_ablate_parse_set():
    from stemboard.train.ablate import parse_set

    got = parse_set(["steps=12", "dilations=1,2,4", "eq_db=6", "synth_silence=vocals",
                     "front=freqconv"])
    assert got == {"steps": 12, "dilations": (1, 2, 4), "eq_db": 6.0,
                   "synth_silence": ("vocals",), "front": "freqconv"}
    with pytest.raises(SystemExit, match="nosuch"):
        parse_set(["nosuch=1"])
    with pytest.raises(SystemExit, match="FIELD=VALUE"):
        parse_set(["steps"])


def test_synth_silence_and_share_in_training_sampler():
    from stemboard.train.train import draw_weights

    w = draw_weights(3, 5, 0.4)
    np.testing.assert_allclose(w, [0.2, 0.2, 0.2, 0.2, 0.2])
    assert draw_weights(3, 3, 0.0) is None
    with pytest.raises(ValueError, match="synthetic"):
        draw_weights(3, 3, 0.5)
    with pytest.raises(ValueError, match="synth_share"):
        draw_weights(3, 5, 1.0)
    stems = _stems()
    spectra, lengths = stem_spectra([{"stems": stems}], GRID, BINS)
    gain = np.ones((1, 4), np.float32)
    gain[0, 0] = 0.0
    s = RemixSampler(spectra, lengths, frames=30, seed=4, stem_gain=gain)
    tgt = s.batch(6)[1]
    assert not tgt[:, 0].any() and tgt[:, 1:].any()


def test_training_tracks_are_training_datas_first_rows():
    """A teacher labels training_tracks(); its rows must be training_data()'s songs
    and pitch copies, in the same order."""
    from stemboard.train.pipeline import training_data, training_tracks

    stems = _stems()
    tracks = [{"name": "a", "stems": stems}, {"name": "b", "stems": stems[:, ::-1]}]
    quiet = dict(log=lambda *_: None)
    listed = training_tracks(tracks, (2, -1), **quiet)
    assert [t["name"] for t in listed] == ["a", "b", "a [+2 st]", "b [+2 st]",
                                           "a [-1 st]", "b [-1 st]"]
    spectra, lengths, _, n_real, n_pitched = training_data(tracks, pitch_shifts=(2, -1),
                                                           **quiet)
    assert (n_real, n_pitched) == (2, 4)
    want, want_lengths = stem_spectra(listed, GRID, spectra.shape[-1])
    np.testing.assert_array_equal(spectra, want)
    np.testing.assert_array_equal(lengths, want_lengths)


def test_resample_ratio_and_pitch_shifted_copies():
    from stemboard.train.data import pitch_shifted, resample_ratio

    assert resample_ratio(2) == (8, 9) and resample_ratio(-2) == (9, 8)
    with pytest.raises(ValueError, match="no shift"):
        resample_ratio(0.01)
    n = 44100
    t = np.arange(n) / 44100
    stems = np.zeros((4, 2, n), np.float32)
    stems[0] = 0.5 * np.sin(2 * np.pi * 440 * t)
    stems[2] = 0.5 * np.sin(2 * np.pi * 110 * t)
    logs = []
    out = pitch_shifted([{"name": "x", "stems": stems}], (2, -2), log=logs.append)
    assert [o["name"] for o in out] == ["x [+2 st]", "x [-2 st]"] and logs
    for o, (up, down) in zip(out, [(8, 9), (9, 8)]):
        y = o["stems"]
        assert y.dtype == np.float32 and y.shape[:2] == (4, 2)
        assert abs(y.shape[-1] - n * up / down) <= 1          # tempo: length scales
        assert not y[1].any() and not y[3].any()              # silent stems stay silent
        # pitch: the sine's peak moves by down/up (FFT peak of the steady middle part)
        for s, f0 in ((0, 440.0), (2, 110.0)):
            seg = y[s, 0, 4096: 4096 + 32768]
            spec = np.abs(np.fft.rfft(seg * np.hanning(seg.size)))
            f = np.argmax(spec) * 44100 / seg.size
            assert abs(f - f0 * down / up) < 2.0


def _tiny_cfg(**kw):
    from stemboard.train.train import TrainConfig

    return TrainConfig(**{"name": "t", "hidden": 8, "dilations": (1,), "kernel": 3,
                          "context": 1, "lookahead": 1, "steps": 2, "batch": 2,
                          "frames_out": 8, **kw})


def test_unused_pitch_copies_leave_training_unchanged():
    from stemboard.train.train import train

    stems = _stems()
    spectra, lengths = stem_spectra([{"stems": stems}, {"stems": stems[:, ::-1]}], GRID, BINS)
    norm = normalization_stats(spectra, lengths)
    quiet = lambda *_: None  # noqa: E731
    ref, _ = train(_tiny_cfg(), spectra, lengths, norm, log=quiet, n_real=2)
    # a third track standing in for a pitch-shifted copy
    more, more_len = stem_spectra([{"stems": stems}, {"stems": stems[:, ::-1]},
                                   {"stems": 0.5 * stems}], GRID, BINS)
    got, _ = train(_tiny_cfg(), more, more_len, norm, log=quiet, n_real=2, n_pitched=1)
    for (k, a), b in zip(ref.state_dict().items(), got.state_dict().values()):
        assert torch.equal(a, b), k
    # the copies are drawn when the config asks for them, and refused when missing
    used, _ = train(_tiny_cfg(pitch_shifts=(2.0,)), more, more_len, norm, log=quiet,
                    n_real=2, n_pitched=1)
    assert any(not torch.equal(a, b) for a, b in zip(ref.state_dict().values(),
                                                     used.state_dict().values()))
    with pytest.raises(ValueError, match="pitch_shifts"):
        train(_tiny_cfg(pitch_shifts=(2.0,)), spectra, lengths, norm, log=quiet, n_real=2)


def test_each_run_trains_on_its_own_pitch_copies():
    """With copies for the union of the runs' shifts built once, a run trains exactly as
    if only its own copies had been built (pipeline.run_rows)."""
    from stemboard.train.pipeline import run_rows
    from stemboard.train.train import train

    stems = _stems()
    songs = [{"stems": stems}, {"stems": stems[:, ::-1]}]
    copy = {-2.0: lambda x: 0.5 * x, 2.0: lambda x: 0.25 * x[:, :, ::-1]}
    quiet = lambda *_: None  # noqa: E731

    def build(shifts):
        tracks = songs + [{"stems": np.ascontiguousarray(copy[s](t["stems"]))}
                          for s in shifts for t in songs]
        return stem_spectra(tracks, GRID, BINS)

    both, both_len = build([-2.0, 2.0])
    norm = normalization_stats(both[:2], both_len[:2])
    only, only_len = build([2.0])
    cfg = _tiny_cfg(pitch_shifts=(2.0,))
    rows = run_rows(cfg, both, both_len, 2, [-2.0, 2.0])
    assert rows[2] == 2 and np.array_equal(rows[0], only)
    ref, _ = train(cfg, only, only_len, norm, log=quiet, n_real=2, n_pitched=2)
    got, _ = train(cfg, *rows[:2], norm, log=quiet, n_real=2, n_pitched=rows[2])
    for (k, a), b in zip(ref.state_dict().items(), got.state_dict().values()):
        assert torch.equal(a, b), k
    # all copies: the arrays themselves; none asked for: train() drops them
    assert run_rows(_tiny_cfg(pitch_shifts=(-2.0, 2.0)), both, both_len, 2,
                    [-2.0, 2.0])[0] is both
    assert run_rows(_tiny_cfg(), both, both_len, 2, [-2.0, 2.0])[2] == 4
    with pytest.raises(ValueError, match=r"no copies built for pitch shifts \[4.0\]"):
        run_rows(_tiny_cfg(pitch_shifts=(2.0, 4.0)), both, both_len, 2, [-2.0, 2.0])


def test_pipeline_pitch_shift_option():
    import argparse

    from stemboard.train.pipeline import parse_shifts, run_configs

    assert parse_shifts("4,-2,2,-4") == (-4.0, -2.0, 2.0, 4.0)
    assert parse_shifts("none") == ()
    for bad in ("2,x", "0,2", "2,2"):
        with pytest.raises(argparse.ArgumentTypeError, match="pitch shifts"):
            parse_shifts(bad)
    configs = run_configs(10, 2, 5, offline_pitch=(-4.0, 4.0), live_pitch=())
    assert configs[0].pitch_shifts == (-4.0, 4.0) and configs[1].pitch_shifts == ()
    # defaults: the shipped recipe (offline +-1 and +-2, live +-2); comparisons have none
    offline, live, *cmp = run_configs(10, 2, 5)
    assert offline.pitch_shifts == (-2.0, -1.0, 1.0, 2.0)
    assert live.pitch_shifts == (-2.0, 2.0)
    assert all(c.pitch_shifts == () for c in cmp)


def test_train_refuses_features_of_another_scale():
    from stemboard.train.train import train

    spectra, lengths = stem_spectra([{"stems": _stems()}], GRID, BINS)
    norm = normalization_stats(spectra, lengths)
    with pytest.raises(ValueError, match="feature_scale 100.0 .* scale 1.0"):
        train(_tiny_cfg(feature_scale=100.0), spectra, lengths, norm, log=lambda *_: None)


def test_weight_average_tracks_the_weights_and_refits_batch_norm():
    from stemboard.train.train import train

    spectra, lengths = stem_spectra([{"stems": _stems()}], GRID, BINS)
    norm = normalization_stats(spectra, lengths)
    quiet = lambda *_: None  # noqa: E731
    plain, _ = train(_tiny_cfg(), spectra, lengths, norm, log=quiet)
    # A vanishing decay follows the live weights: same parameters, re-fitted statistics.
    follow, _ = train(_tiny_cfg(ema=1e-9), spectra, lengths, norm, log=quiet)
    for (name, a), b in zip(plain.named_parameters(), follow.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)
    means = [(m.running_mean, n.running_mean) for m, n in zip(plain.modules(), follow.modules())
             if isinstance(m, torch.nn.BatchNorm1d)]
    assert means and any(not torch.allclose(a, b) for a, b in means)
    averaged, _ = train(_tiny_cfg(ema=0.9), spectra, lengths, norm, log=quiet)
    assert any(not torch.allclose(a, b) for a, b in zip(plain.parameters(),
                                                        averaged.parameters()))
    with pytest.raises(ValueError, match="ema must be in"):
        train(_tiny_cfg(ema=1.0), spectra, lengths, norm, log=quiet)


def test_pipeline_run_keys_and_worker_split():
    from stemboard.train.ablate import parse_set
    from stemboard.train.pipeline import run_configs, run_key, split_runs

    configs = run_configs(5000, 400, 2000)
    assert configs[0].pitch_shifts and configs[1].pitch_shifts
    assert "pitch_shifts" in run_key(configs[0], 200)
    # runs without pitch copies keep the cache keys of checkpoints made before the field
    assert "pitch_shifts" not in run_key(configs[2], 200)
    groups = split_runs(configs, 2)
    assert sorted(sum(groups, [])) == sorted(c.name for c in configs)
    assert len(groups) == 2 and groups[0] == ["offline"]
    assert split_runs(configs[:1], 4) == [["offline"]]
    assert parse_set(["pitch_shifts=-2,2"]) == {"pitch_shifts": (-2, 2)}
    # the default feature scale keeps old cache keys; another one changes them
    assert "feature_scale" not in run_key(configs[0], 200)
    scaled = dataclasses.replace(configs[0], feature_scale=100.0)
    assert "feature_scale" in run_key(scaled, 200)
    assert parse_set(["feature_scale=100"]) == {"feature_scale": 100.0}


def test_l2stem_loss_weighs_each_stem_by_its_own_energy():
    from stemboard.train.train import loss_fn

    mix = torch.ones(1, 3, 4)
    stems = torch.zeros(1, 4, 3, 4)
    stems[:, 0] = 0.1                      # a quiet stem
    stems[:, 1] = 0.9                      # a loud one
    exact = stems / mix[:, None]
    # the same relative error on the quiet or the loud stem costs the same
    quiet_off, loud_off = exact.clone(), exact.clone()
    quiet_off[:, 0] *= 1.5
    loud_off[:, 1] *= 1.5
    a = loss_fn(quiet_off, mix, stems, "l2stem").item()
    b = loss_fn(loud_off, mix, stems, "l2stem").item()
    assert a > 0 and a == pytest.approx(b, rel=0.05)  # (up to the 1e-3 energy floor)
    # where l2mag lets the loud stem dominate
    assert loss_fn(loud_off, mix, stems, "l2mag") > 50 * loss_fn(quiet_off, mix, stems, "l2mag")
    # silent stems (dropped in the batch) stay finite and exact masks cost nothing
    assert loss_fn(exact, mix, stems, "l2stem").item() == 0.0
    with pytest.raises(ValueError, match="unknown loss"):
        loss_fn(exact, mix, stems, "l3")


def test_card_is_what_metrics_and_ablations_produce(tmp_path):
    from pathlib import Path

    from stemboard.train import card

    weights = Path(__file__).resolve().parents[1] / "models" / "weights"
    for path in weights.glob("*.json"):   # the manifests feed the card's hq section
        (tmp_path / path.name).write_bytes(path.read_bytes())
    card.main(["--out", str(tmp_path)])
    # the committed card is in step with the committed measurements
    assert (tmp_path / "MODEL_CARD.md").read_text() == (weights / "MODEL_CARD.md").read_text()
    assert not list(tmp_path.glob("*.tmp"))
    (tmp_path / "metrics.json").unlink()
    with pytest.raises(SystemExit, match="metrics.json"):
        card.main(["--out", str(tmp_path)])
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(SystemExit, match="not valid JSON"):
        card.main(["--out", str(tmp_path)])


def test_card_finds_other_seeds_of_the_shipped_recipe():
    from stemboard.train.card import other_seeds

    shipped = {"name": "offline", "seed": 0, "hidden": 192, "pitch_shifts": [-2, 2],
               "precision": "bf16"}

    def row(name, mode="mid_side", **cfg):
        return {"name": name, "stereo_mode": mode, "config": dict(shipped, name=name, **cfg)}

    rows = [row("a_seed2", seed=2), row("same_seed"),
            row("other_pitch", seed=1, pitch_shifts=[-2, -1, 1, 2]),
            row("left_right", mode="left_right", seed=1), row("b_seed1", seed=1),
            # a field left out of an older row means its default (ema 0.0): still the recipe
            row("explicit_default", seed=3, ema=0.0), row("ema", seed=4, ema=0.9)]
    found = [r["name"] for r in other_seeds(shipped, rows, "mid_side")]
    assert found == ["b_seed1", "a_seed2", "explicit_default"]
    assert [r["name"] for r in other_seeds(shipped, rows, "left_right")] == ["left_right"]


def test_remix_sampler_mid_side_draws():
    stems = _stems()
    spectra, lengths = stem_spectra([{"stems": stems}, {"stems": stems[:, ::-1]}], GRID, BINS)
    kw = dict(frames=30, p_remix=0.5, seed=3)
    # The same draws coded as mid/side: with left == right the mid is that channel
    # and the side is silent, whichever channel the left/right sampler drew.
    same = spectra[:, :, :1].repeat(2, axis=2)
    lr = RemixSampler(same, lengths, **kw)
    ms = RemixSampler(same, lengths, mid_side=True, **kw)
    (lr_mix, lr_tgt), (ms_mix, ms_tgt) = lr.batch(16), ms.batch(16)
    kinds = set()
    for b in range(16):
        # every stem of an item has the same coding, remixed or not
        if np.allclose(ms_tgt[b], 0.0):
            kinds.add("side")
            assert np.allclose(ms_mix[b], 0.0)
        else:
            kinds.add("mid")
            np.testing.assert_allclose(ms_tgt[b], lr_tgt[b], rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(ms_mix[b], lr_mix[b], rtol=1e-6, atol=1e-6)
    assert kinds == {"mid", "side"}
    # With real stereo the side is (L - R) / 2 of the same crop.
    one = spectra[:, :1]
    s = RemixSampler(one, lengths, frames=30, p_remix=0.0, gain_db=(0.0, 0.0), p_drop=0.0,
                     seed=5, mid_side=True)
    mix, _ = s.batch(8)
    coded = np.abs(np.stack([one[:, 0, 0] + one[:, 0, 1], one[:, 0, 0] - one[:, 0, 1]], 1) / 2)
    coded = coded.transpose(0, 1, 3, 2)                       # (tracks, m/s, bins, frames)
    for b in range(8):
        assert any(np.allclose(coded[tr, c, :, off: off + 30], mix[b], atol=1e-6)
                   for tr in range(coded.shape[0]) for c in range(2)
                   for off in range(coded.shape[3] - 30 + 1))
    # Paired: the other signal is the side of a mid item (and the mid of a side
    # item) of the same crop, and the draws are those of the unpaired sampler.
    kw = dict(frames=30, p_remix=0.0, gain_db=(0.0, 0.0), p_drop=0.0, seed=5, mid_side=True)
    mix, _ = RemixSampler(one, lengths, **kw).batch(8)
    pmix, _, pother = RemixSampler(one, lengths, stereo_pair=True, **kw).batch(8)
    np.testing.assert_array_equal(pmix, mix)
    for b in range(8):
        assert any(np.allclose(coded[tr, c, :, off: off + 30], pmix[b], atol=1e-6)
                   and np.allclose(coded[tr, 1 - c, :, off: off + 30], pother[b], atol=1e-6)
                   for tr in range(coded.shape[0]) for c in range(2)
                   for off in range(coded.shape[3] - 30 + 1))


def test_mid_side_training_keys_and_manifest():
    from stemboard.train.ablate import parse_set
    from stemboard.train.pipeline import manifest_for, run_configs, run_key

    cfg = run_configs(5000, 400, 2000)[0]
    assert "mid_side" not in run_key(cfg, 200)          # old checkpoints stay cached
    ms = dataclasses.replace(cfg, mid_side=True)
    assert "mid_side" in run_key(ms, 200)
    assert parse_set(["mid_side=true"]) == {"mid_side": True}
    norm = {"type": "log1p", "scale": 1.0, "mean": 0.0, "std": 1.0}
    assert manifest_for(cfg, norm, "", {}).stereo_mode == "mid_side"
    assert manifest_for(cfg, norm, "", {}, stereo_mode="left_right").stereo_mode == "left_right"
    assert manifest_for(ms, norm, "", {}).stereo_mode == "mid_side"
    with pytest.raises(ValueError, match="trained on mid/side"):
        manifest_for(ms, norm, "", {}, stereo_mode="left_right")
    pair = dataclasses.replace(cfg, input_layout="stereo_pair")
    assert manifest_for(pair, norm, "", {}).stereo_mode == "left_right"


def test_ablate_rescore_scores_a_recorded_run_in_another_stereo_mode(tmp_path, model_factory,
                                                                     monkeypatch):
    import json
    import shutil

    from stemboard.train import ablate
    from stemboard.train.evaluate import evaluate_systems, onnx_system

    work = tmp_path / "work"
    work.mkdir()
    fixture = model_factory()
    shutil.copyfile(fixture, work / "base.onnx")
    shutil.copyfile(fixture[:-5] + ".json", work / "base.json")
    record = tmp_path / "ablations.json"
    base = {"name": "base", "config": {"steps": 10, "input_layout": "channel"},
            "sdr": {k: 0.0 for k in (*STEMS, "avg")}, "command": "x"}
    record.write_text(json.dumps([base]))
    tracks = [{"name": "synthetic", "stems": _stems(seconds=2.0)}]
    monkeypatch.setattr(ablate, "decode_musdb", lambda *a, **k: tracks)
    ablate.main(["--name", "base_ms", "--rescore", "base", "--work", str(work),
                 "--record", str(record)])
    rows = {r["name"]: r for r in json.loads(record.read_text())}
    row = rows["base_ms"]
    assert rows["base"] == base
    assert row["config"] == base["config"] and row["rescored_from"] == "base"
    assert row["stereo_mode"] == "mid_side" and "--rescore base" in row["command"]
    model = MaskModel(work / "base_ms.onnx")
    assert model.manifest.stereo_mode == "mid_side"
    want = evaluate_systems(tracks, {"m": onnx_system(model)}, log=lambda *_: None)["m"]
    assert row["sdr"] == {k: want[k] for k in (*STEMS, "avg")}
    lr = evaluate_systems(tracks, {"m": onnx_system(MaskModel(work / "base.onnx"))},
                          log=lambda *_: None)["m"]
    assert lr["vocals"] != want["vocals"]
    with pytest.raises(SystemExit, match="no such run"):
        ablate.main(["--name", "x", "--rescore", "nope", "--work", str(work),
                     "--record", str(record)])
    with pytest.raises(SystemExit, match="takes no --set"):
        ablate.main(["--name", "x", "--rescore", "base", "--set", "steps=3",
                     "--work", str(work), "--record", str(record)])


def test_bandsplit_net_shapes_bands_and_checkpoint_round_trip():
    from stemboard.train.model import BAND_GROUPS, BandSplitNet, build_net

    assert sum(w * n for w, n in BAND_GROUPS) == BINS
    model = _tiny_bandsplit()
    assert model.receptive_field == 7 and model.bands == sum(n for _, n in BAND_GROUPS)
    x = torch.randn(2, BINS, 30)
    with torch.no_grad():
        masks = model(x)
    assert masks.shape == (2, 4, BINS, 30 - 7 + 1)
    np.testing.assert_allclose(masks.sum(dim=1).numpy(), 1.0, atol=1e-5)
    # a band's input reaches only its own bins through the embedding, but the band mix
    # spreads it: changing the top band moves the masks of the lowest bins too
    y = x.clone()
    y[:, -59:] += 3.0
    with torch.no_grad():
        assert not torch.allclose(model(y)[:, :, :4], masks[:, :, :4])
    # checkpoints rebuild the same network from model.config
    again = build_net(model.config)
    assert isinstance(again, BandSplitNet)
    again.load_state_dict(model.state_dict())
    again.eval()
    with torch.no_grad():
        assert torch.equal(again(x), masks)
    with pytest.raises(ValueError, match="cover"):
        BandSplitNet(bins=BINS, groups=((4, 10),))


def test_bandsplit_trains_and_refuses_masknet_options():
    from stemboard.train.train import TrainConfig, train

    spectra, lengths = stem_spectra([{"stems": _stems(seconds=1.5)}], GRID, BINS)
    norm = normalization_stats(spectra, lengths)
    cfg = TrainConfig(name="bs", arch="bandsplit", hidden=4, dilations=(1,), kernel=3,
                      context=1, lookahead=1, loss="l2mag", steps=3, batch=2, frames_out=8)
    model, info = train(cfg, spectra, lengths, norm, log=lambda *_: None)
    assert info["params"] == sum(p.numel() for p in model.parameters())
    assert model.config["arch"] == "bandsplit"
    for bad in ({"front": "freqconv"}, {"refine": 4}, {"input_layout": "stereo_pair"}):
        with pytest.raises(ValueError, match="bandsplit"):
            train(dataclasses.replace(cfg, **bad), spectra, lengths, norm, log=lambda *_: None)
    with pytest.raises(ValueError, match="unknown arch"):
        train(dataclasses.replace(cfg, arch="rnn"), spectra, lengths, norm,
              log=lambda *_: None)


def test_arch_field_keeps_old_cache_keys():
    from stemboard.train.ablate import parse_set
    from stemboard.train.pipeline import run_configs, run_key

    offline = run_configs(5000, 400, 2000)[0]
    assert offline.arch == "masknet" and "arch" not in run_key(offline, 200)
    assert "bandsplit" in run_key(dataclasses.replace(offline, arch="bandsplit"), 200)
    assert parse_set(["arch=bandsplit", "hidden=32"]) == {"arch": "bandsplit", "hidden": 32}


@pytest.mark.parametrize("recipe", ["masknet", "bandsplit", "masknet-pair"])
def test_trained_network_rebuilds_from_its_checkpoint_config(recipe):
    # train() and checkpoint loading go through the same build_net: the config a
    # trained network stores rebuilds the same network, parameter for parameter.
    from stemboard.train.model import build_net
    from stemboard.train.pipeline import ARCHS
    from stemboard.train.train import TrainConfig, net_config

    cfg = TrainConfig(name="t", **{**ARCHS[recipe], "hidden": 8})
    torch.manual_seed(0)
    net = build_net(net_config(cfg, bins=BINS, stems=4))
    again = build_net(net.config)
    again.load_state_dict(net.state_dict())
    assert sum(p.numel() for p in again.parameters()) == sum(p.numel() for p in net.parameters())
    assert net.in_bins == BINS * (2 if recipe == "masknet-pair" else 1)
    with pytest.raises(ValueError, match="front_planes needs"):
        build_net({"bins": BINS, "stems": 4, "in_bins": 2 * BINS, "front_planes": 2})
    with pytest.raises(ValueError, match="needs in_bins"):
        build_net({"bins": BINS, "stems": 4, "front": "freqconv", "front_planes": 2})


def test_sdr_loss_is_the_complex_sdr():
    from stemboard.train.train import sdr_loss

    rng = np.random.default_rng(0)
    S = (rng.standard_normal((2, 3, 5, 6)) + 1j * rng.standard_normal((2, 3, 5, 6)))
    S[1, 2] *= 1e-4                                  # a near-silent stem: not counted
    X = S.sum(axis=1)
    m = rng.uniform(0.1, 1.0, (2, 3, 5, 6))
    m /= m.sum(axis=1, keepdims=True)
    psa = (S * np.conj(X)[:, None]).real / np.abs(X)[:, None]
    resid = (np.abs(S) ** 2 - psa ** 2).sum(axis=2)
    t = lambda a: torch.from_numpy(np.asarray(a, np.float64))  # noqa: E731
    got = sdr_loss(t(m), t(np.abs(X)), t(psa), t(resid)).item()
    err = (np.abs(m * X[:, None] - S) ** 2).sum(axis=(2, 3))
    ref = (np.abs(S) ** 2).sum(axis=(2, 3))
    sdr = 10 * np.log10(ref / err)
    active = np.ones_like(sdr, bool)
    active[1, 2] = False
    assert got == pytest.approx(-sdr[active].mean(), abs=1e-4)


def test_sampler_phase_residual_completes_the_stem_energy():
    stems = _stems()
    spectra, lengths = stem_spectra([{"stems": stems}, {"stems": stems[:, ::-1]}], GRID, BINS)
    kw = dict(frames=30, p_remix=0.5, seed=2)
    _, mag = RemixSampler(spectra, lengths, **kw).batch(6)
    _, psa, resid = RemixSampler(spectra, lengths, phase_sensitive=True, phase_residual=True,
                                 **kw).batch(6)
    assert resid.shape == (6, 4, 30) and (resid >= 0).all()
    np.testing.assert_allclose((psa ** 2).sum(axis=2) + resid, (mag ** 2).sum(axis=2),
                               rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="phase_residual needs"):
        RemixSampler(spectra, lengths, frames=30, phase_residual=True)


def test_bf16_training_follows_the_float32_run_and_keeps_float32_weights():
    from stemboard.train.pipeline import run_configs, run_key
    from stemboard.train.train import train

    spectra, lengths = stem_spectra([{"stems": _stems()}], GRID, BINS)
    norm = normalization_stats(spectra, lengths)
    quiet = lambda *_: None  # noqa: E731
    start, _ = train(_tiny_cfg(steps=0), spectra, lengths, norm, log=quiet)
    fp32, _ = train(_tiny_cfg(steps=3), spectra, lengths, norm, log=quiet)
    bf16, info = train(_tiny_cfg(steps=3, precision="bf16"), spectra, lengths, norm, log=quiet)
    assert info["config"]["precision"] == "bf16"
    assert all(p.dtype == torch.float32 for p in bf16.parameters())
    flat = lambda m: torch.cat([p.detach().ravel() for p in m.parameters()])  # noqa: E731
    step = (flat(fp32) - flat(start)).abs().mean()
    gap = (flat(bf16) - flat(fp32)).abs().mean()
    # same draws and start: bfloat16 rounding (8-bit mantissa) nudges the updates but
    # they go the same way, so the runs differ by much less than either moved
    assert 0 < gap < 0.05 * step, (float(gap), float(step))
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        train(_tiny_cfg(precision="fp16"), spectra, lengths, norm, log=quiet)
    # every pipeline run takes the precision; fp32 keeps the cache keys of older runs
    runs = run_configs(5000, 400, 2000, precision="bf16")
    assert {c.precision for c in runs} == {"bf16"}
    assert "precision" in run_key(runs[0], 200)
    assert "precision" not in run_key(run_configs(5000, 400, 2000)[0], 200)


def test_batches_drawn_ahead_in_a_thread_train_the_same_model(monkeypatch):
    import concurrent.futures

    from stemboard.train import train as train_module

    spectra, lengths = stem_spectra([{"stems": _stems()}, {"stems": _stems(seed=1)}],
                                    GRID, BINS)
    norm = normalization_stats(spectra, lengths)
    quiet = lambda *_: None  # noqa: E731
    ahead, _ = train_module.train(_tiny_cfg(steps=4), spectra, lengths, norm, log=quiet)

    class Inline:
        """Draws each batch on the spot, in the training thread."""
        def __init__(self, max_workers):
            pass

        def submit(self, fn, *args):
            fut = concurrent.futures.Future()
            fut.set_result(fn(*args))
            return fut

        def shutdown(self):
            pass

    monkeypatch.setattr(train_module, "ThreadPoolExecutor", Inline)
    inline, _ = train_module.train(_tiny_cfg(steps=4), spectra, lengths, norm, log=quiet)
    for (k, a), b in zip(ahead.state_dict().items(), inline.state_dict().values()):
        assert torch.equal(a, b), k


def test_stem_weights_scale_each_stems_error_and_are_checked():
    from stemboard.train.ablate import parse_set
    from stemboard.train.pipeline import run_configs, run_key
    from stemboard.train.train import TrainConfig, loss_fn, stem_weight_tensor, train

    mix = torch.ones(2, 3, 4)
    stems = torch.full((2, 4, 3, 4), 0.25)
    exact = stems / mix[:, None]
    voc_off, drum_off = exact.clone(), exact.clone()
    voc_off[:, 0] += 0.1
    drum_off[:, 1] += 0.1
    w = stem_weight_tensor((3, 1, 1, 1), 4)
    assert w.shape == (1, 4, 1, 1) and float(w.mean()) == pytest.approx(1.0)
    for kind in ("l1mag", "l2mag", "l2psa"):
        plain = loss_fn(voc_off, mix, stems, kind).item()
        assert loss_fn(drum_off, mix, stems, kind).item() == pytest.approx(plain)
        # normalised to mean 1: vocals weigh 2x, every other stem 2/3
        assert loss_fn(voc_off, mix, stems, kind, w).item() == pytest.approx(2 * plain)
        assert loss_fn(drum_off, mix, stems, kind, w).item() == pytest.approx(2 / 3 * plain)
        assert loss_fn(exact, mix, stems, kind, w).item() == 0.0
    assert stem_weight_tensor((), 4) is None
    for bad in ((1, 1, 1), (1, -1, 1, 1), (0, 0, 0, 0), (1, float("nan"), 1, 1)):
        with pytest.raises(ValueError, match="stem_weights"):
            stem_weight_tensor(bad, 4)
    with pytest.raises(ValueError, match="stem_weights"):
        loss_fn(exact, mix, stems, "mse_ibm", w)

    # train() refuses them for a loss they do not apply to, before training
    spectra, lengths = stem_spectra([{"stems": _stems(seconds=1.5)}], GRID, BINS)
    norm = normalization_stats(spectra, lengths)
    cfg = TrainConfig(name="w", hidden=8, dilations=(1,), context=1, lookahead=1,
                      loss="sdr", steps=1, batch=2, frames_out=8, stem_weights=(2, 1, 1, 1))
    with pytest.raises(ValueError, match="stem_weights"):
        train(cfg, spectra, lengths, norm, log=lambda *_: None)
    # old checkpoints' cache keys stay valid; ablate parses the field
    offline = run_configs(5000, 400, 2000)[0]
    assert "stem_weights" not in run_key(offline, 200)
    assert "stem_weights" in run_key(dataclasses.replace(offline, stem_weights=(2, 1, 1, 1)),
                                     200)
    assert parse_set(["stem_weights=2,1,1,1"]) == {"stem_weights": (2, 1, 1, 1)}


def test_dropout_acts_only_in_training_and_exports_like_the_plain_net(tmp_path):
    from stemboard.train.ablate import parse_set
    from stemboard.train.model import build_net
    from stemboard.train.pipeline import run_configs, run_key
    from stemboard.train.train import TrainConfig, net_config

    cfg = TrainConfig(name="d", hidden=16, dilations=(1, 2), front="freqconv", dropout=0.3)
    torch.manual_seed(0)
    net = build_net(net_config(cfg, bins=BINS, stems=4))
    x = torch.randn(2, BINS, 20)
    net.train()
    with torch.no_grad():
        a, b = net(x), net(x)
    assert not torch.allclose(a, b)              # a fresh dropout draw each pass
    net.eval()
    with torch.no_grad():
        masks = net(x)
        assert torch.equal(masks, net(x))
    # the checkpoint config rebuilds it; in eval it is the same function as the net
    # without dropout holding the same weights, and so is its ONNX export
    again = build_net(net.config)
    assert again.config["dropout"] == 0.3
    plain = build_net(net_config(dataclasses.replace(cfg, dropout=0.0), bins=BINS, stems=4))
    assert "dropout" not in plain.config
    plain.load_state_dict(net.state_dict())
    plain.eval()
    with torch.no_grad():
        np.testing.assert_allclose(plain(x).numpy(), masks.numpy(), atol=1e-6)
    path = export_onnx(net, tmp_path / "d.onnx", stateful=False)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, masks.numpy(), atol=1e-4)

    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="dropout"):
            MaskNet(bins=BINS, hidden=8, dilations=(1,), dropout=bad)
    with pytest.raises(ValueError, match="dropout"):
        net_config(dataclasses.replace(cfg, arch="bandsplit", front="dense"), bins=BINS,
                   stems=4)
    offline = run_configs(5000, 400, 2000)[0]
    assert "dropout" not in run_key(offline, 200)
    assert "dropout" in run_key(dataclasses.replace(offline, dropout=0.1), 200)
    assert parse_set(["dropout=0.1"]) == {"dropout": 0.1}
    import argparse

    from stemboard.train.pipeline import parse_dropout

    runs = run_configs(10, 2, 5, offline_dropout=0.1)
    assert runs[0].dropout == 0.1 and runs[1].dropout == 0.0
    assert all(r.dropout == 0.0 for r in runs[2:])
    assert parse_dropout("0.1") == 0.1
    for bad in ("x", "1", "-0.1", "nan"):
        with pytest.raises(argparse.ArgumentTypeError, match="dropout"):
            parse_dropout(bad)


def test_ensemble_is_its_members_single_runs_in_one_graph(tmp_path):
    from stemboard.train.model import EnsembleNet, build_net, stem_softmax
    from stemboard.train.pipeline import ARCHS, run_configs, run_key
    from stemboard.train.train import TrainConfig, train

    spectra, lengths = stem_spectra([{"stems": _stems(seconds=1.5)}], GRID, BINS)
    norm = normalization_stats(spectra, lengths)
    quiet = dict(log=lambda *_: None)
    cfg = TrainConfig(name="e", hidden=8, dilations=(1, 2), kernel=3, context=3, lookahead=3,
                      front="freqconv", loss="l2mag", steps=3, batch=2, frames_out=8,
                      seed=5, members=2)
    model, info = train(cfg, spectra, lengths, norm, **quiet)
    assert isinstance(model, EnsembleNet) and not model.training
    # each member is exactly the single-net run of its seed (seed, seed + 1)
    for i, member in enumerate(model.members):
        one, one_info = train(dataclasses.replace(cfg, members=1, seed=5 + i), spectra,
                              lengths, norm, **quiet)
        for (k, a), b in zip(member.state_dict().items(), one.state_dict().values()):
            assert torch.equal(a, b), k
        assert [h["loss"] for h in info["history"] if h["member"] == i] == [
            h["loss"] for h in one_info["history"]]
    assert info["params"] == 2 * sum(p.numel() for p in one.parameters())
    assert info["macs_per_frame"] == 2 * (one.macs_per_frame() + 4 * BINS)
    # the softmax of the mean logits: the members' masks' geometric mean, renormalised
    x = torch.randn(2, BINS, 30)
    with torch.no_grad():
        masks = model(x)
        geo = torch.exp(sum(torch.log(m(x)) for m in model.members) / 2)
        np.testing.assert_allclose(masks.numpy(), (geo / geo.sum(1, keepdim=True)).numpy(),
                                   atol=1e-5)
        np.testing.assert_allclose(masks.sum(1).numpy(), 1.0, atol=1e-5)
        assert torch.equal(masks, stem_softmax(model.logits(x)))
    # the checkpoint config rebuilds it
    again = build_net(model.config)
    again.load_state_dict(model.state_dict())
    again.eval()
    with torch.no_grad():
        assert torch.equal(again(x), masks)
    # one stateful graph: whole signals and any chunking give the torch masks
    path = export_onnx(model, tmp_path / "ens.onnx", frames=16)
    m = _manifest({"type": "none"}, context=3, lookahead=3)
    Manifest(**{**m.__dict__, "stateful": True}).save(tmp_path / "ens.json")
    mm = MaskModel(path)
    assert len(mm.zero_state(1)) == 4            # two blocks per member
    np.testing.assert_allclose(mm.run(x.numpy()), masks.numpy(), atol=1e-4, rtol=0)
    state, outs = mm.zero_state(2), []
    for chunk in np.split(x.numpy(), [1, 7, 8, 20], axis=2):
        out, state = mm.step(np.ascontiguousarray(chunk), state)
        outs.append(out)
    np.testing.assert_allclose(np.concatenate(outs, axis=3)[..., model.receptive_field - 1:],
                               masks.numpy(), atol=1e-4, rtol=0)
    # members that do not line up, or too few, are refused
    with pytest.raises(ValueError, match="at least 2"):
        EnsembleNet([one])
    with pytest.raises(ValueError, match="disagree"):
        EnsembleNet([one, MaskNet(bins=BINS, hidden=8, dilations=(1,), kernel=3)])
    with pytest.raises(ValueError, match="members"):
        train(dataclasses.replace(cfg, members=0), spectra, lengths, norm, **quiet)
    # the pipeline recipe, and cache keys that stay as they were without it
    offline = run_configs(5000, 400, 2000)[0]
    assert "members" not in run_key(offline, 200)
    pair = run_configs(5000, 400, 2000, offline_arch="masknet-x2")
    assert (pair[0].members, pair[0].hidden, pair[1].members) == (2, 192, 1)
    assert "members" in run_key(pair[0], 200) and ARCHS["masknet-x2"]["members"] == 2


def _teacher_setup():
    spectra, lengths = stem_spectra([{"stems": _stems()}], GRID, BINS)
    # A "teacher" that hears each stem at its own level: 0.5, 1, 1.5, 2 times the truth.
    scale = np.array([0.5, 1.0, 1.5, 2.0], np.float32)[None, :, None, None, None]
    teacher = (np.abs(spectra) * scale).astype(np.float16)
    return spectra, lengths, teacher


def test_remix_sampler_teacher_blends_targets_of_unremixed_crops():
    spectra, lengths, teacher = _teacher_setup()
    kw = dict(frames=30, p_remix=0.0, p_drop=0.5, seed=3, teacher=teacher)
    mix0, tgt0 = RemixSampler(spectra, lengths, distill=0.0, **kw).batch(6)
    mix1, tgt1 = RemixSampler(spectra, lengths, distill=1.0, **kw).batch(6)
    mixh, tgth = RemixSampler(spectra, lengths, distill=0.5, **kw).batch(6)
    # same draws whatever the weight: only the targets move
    np.testing.assert_array_equal(mix0, mix1)
    np.testing.assert_array_equal(mix0, mixh)
    live = tgt0 > 1e-2
    for s, scale in enumerate([0.5, 1.0, 1.5, 2.0]):
        np.testing.assert_allclose(tgt1[:, s][live[:, s]] / tgt0[:, s][live[:, s]], scale,
                                   rtol=2e-3)                 # float16 teacher
    # One gain for every stem and nothing dropped (p_drop 0.5 would drop some):
    # four copies of one signal stay four equal targets.
    same = np.repeat(_stems()[:1], 4, axis=0)
    spectra1, lengths1 = stem_spectra([{"stems": same}], GRID, BINS)
    _, tgt = RemixSampler(spectra1, lengths1, distill=0.0, **{
        **kw, "teacher": np.abs(spectra1).astype(np.float16)}).batch(6)
    assert (tgt[:, 0].reshape(6, -1).max(axis=1) > 0).all()
    for s in range(1, 4):
        np.testing.assert_array_equal(tgt[:, s], tgt[:, 0])
    np.testing.assert_allclose(tgth, 0.5 * (tgt0 + tgt1), rtol=1e-5, atol=1e-6)


def test_remix_sampler_teacher_leaves_remixed_crops_and_checks_its_input():
    spectra, lengths, teacher = _teacher_setup()
    kw = dict(frames=30, p_remix=1.0, seed=4, teacher=teacher)
    _, tgt0 = RemixSampler(spectra, lengths, distill=0.0, **kw).batch(4)
    _, tgt1 = RemixSampler(spectra, lengths, distill=1.0, **kw).batch(4)
    np.testing.assert_array_equal(tgt0, tgt1)       # remixes have no teacher: true targets
    for bad, match in ((dict(teacher=teacher[:, :, :, :10]), "teacher shape"),
                       (dict(teacher=teacher, mid_side=True), "mid_side"),
                       (dict(teacher=teacher, distill=1.5), "distill"),
                       (dict(distill=0.5), "needs teacher")):
        with pytest.raises(ValueError, match=match):
            RemixSampler(spectra, lengths, frames=30, **bad)


def test_train_needs_the_teacher_it_names():
    from stemboard.train.train import TrainConfig, train

    spectra, lengths, teacher = _teacher_setup()
    norm = normalization_stats(spectra, lengths)
    cfg = TrainConfig(name="t", steps=0, teacher="hq", distill=0.5)
    with pytest.raises(ValueError, match="teacher"):
        train(cfg, spectra, lengths, norm)
    with pytest.raises(ValueError, match="teacher"):
        train(dataclasses.replace(cfg, teacher="", distill=0.0), spectra, lengths, norm,
              teacher=teacher)


def test_teacher_magnitudes_match_the_model_and_cache_whole_files(tmp_path, monkeypatch):
    import stemboard
    from stemboard.plugin import StemSeparator
    from stemboard.train.distill import teacher_magnitudes

    tracks = [{"name": "a", "stems": _stems(0.5, seed=1)},
              {"name": "b", "stems": _stems(0.7, seed=2)}]
    out = teacher_magnitudes(tracks, GRID, BINS, model="live", cache=tmp_path)
    assert out.shape == (2, 4, 2, out.shape[3], BINS) and out.dtype == np.float16
    est = stemboard.separate(tracks[1]["stems"].sum(axis=0), 44100, model="live")
    want = np.abs(stft(np.stack([est[s] for s in STEMS]).reshape(8, -1), GRID)[:, :, :BINS])
    np.testing.assert_allclose(out[1].reshape(8, -1, BINS)[:, : want.shape[1]], want,
                               rtol=2e-3, atol=1e-3)          # float16 storage
    assert not out[0, :, :, want.shape[1] - 2:].any()        # the shorter track is padded
    (cached,) = tmp_path.glob("teacher_live_*.npy")

    def boom(*a, **k):
        raise RuntimeError("separate called")

    monkeypatch.setattr(StemSeparator, "separate", boom)
    again = teacher_magnitudes(tracks, GRID, BINS, model="live", cache=tmp_path)
    np.testing.assert_array_equal(again, out)                 # read back, not recomputed
    # an interrupted computation leaves nothing a later run would trust
    with pytest.raises(RuntimeError, match="separate called"):
        teacher_magnitudes(tracks[:1], GRID, BINS, model="live", cache=tmp_path)
    assert sorted(tmp_path.iterdir()) == [cached]
