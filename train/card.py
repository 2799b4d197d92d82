"""MODEL_CARD.md writer: every number in the card comes from the pipeline's measurements.

The pipeline writes the card when it ships.  To refresh it after appending
ablation rows, without training, scoring or re-timing anything::

    python -m stemboard.train.card --out models/weights

which rebuilds ``MODEL_CARD.md`` from ``metrics.json`` and ``ablations.json``
in that folder.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from stemboard.train.card_hq import hq_section
from stemboard.train.card_int8 import int8_section
from stemboard.train.data import STEMS, resample_ratio

LABELS = {
    "offline": "**offline** (fp32: `offline-fp32`, 12 past + 12 future frames)",
    "live": "**live** (fp32: `live-fp32`, 22 past + 2 lookahead frames)",
    "offline_left_right": "offline run on left/right instead of mid/side (not shipped)",
    "live_left_right": "live run on left/right instead of mid/side (not shipped)",
    "oracle_ibm": "oracle binary mask (IBM), same grid, 0–22 kHz",
    "oracle_irm": "oracle ratio mask (IRM, magnitude), same grid",
    "mixture": "mixture as every estimate (floor)",
}


LOSSES = {
    "l1mag": "L1 between mask × mixture magnitude and the stem magnitude, divided by the "
             "mean mixture magnitude (ratio-mask training)",
    "l2mag": "squared error between mask × mixture magnitude and the stem magnitude, divided "
             "by the mean squared mixture magnitude (ratio-mask training, energy-weighted "
             "like SDR)",
    "l2stem": "squared error between mask × mixture magnitude and the stem magnitude, per "
              "stem divided by that stem's energy in the batch, averaged over stems (each "
              "stem weighted like its own SDR)",
    "l2psa": "squared error between mask × mixture magnitude and the phase-sensitive target "
             "|S| cos(∠S − ∠X), divided by the mean squared mixture magnitude (equals the "
             "complex error |mask · X − S|² up to a constant, which is what SDR scores)",
    "mse_ibm": "MSE between the mask and the oracle binary mask (the article's targets)",
    "sdr": "negative SDR (dB) of each stem over each ~1 s training crop (museval's window), "
           "from the complex error |mask · X − S|², averaged over stems and crops; stems "
           "more than 40 dB below the crop's mixture are skipped, as museval skips silent "
           "windows",
}


def _row(label, r):
    cells = [f"{r[s]:.2f}" for s in STEMS] + [f"{r['avg']:.2f}"]
    return f"| {label} | " + " | ".join(cells) + " |"


def _fmt_s(s):
    return f"{s / 60:.1f} min"


def _sdr_method(sdr: dict) -> str:
    """How the SDRs were computed, when the metrics say (runs before session 6 used
    ``museval.evaluate`` throughout and do not)."""
    checked = [r for r in sdr.values() if isinstance(r, dict) and "museval_max_abs_diff_db" in r]
    if not checked:
        return ""
    tracks = max(r.get("museval_check_tracks", 1) for r in checked)
    diff = max(r["museval_max_abs_diff_db"] for r in checked)
    return (" SDR is computed directly from museval's v4 definition (the projection "
            "filters cancel out of v4 SDR; `train/evaluate.py:sdr_windows`), and "
            f"every system is also scored by `museval.evaluate` itself on the first {tracks} "
            f"track(s): largest difference {diff:.1e} dB.")


def write_card(path, summary):
    """Write the card to ``path`` (atomically) from the pipeline's ``summary`` dict.

    ``summary`` is ``metrics.json``'s content (its per-track tables and
    histories are not used); ``ablations.json`` beside ``path`` adds its table.
    """
    sdr = summary["sdr_valid"]
    tr = summary["training"]
    sp = summary["speed"]
    tm = summary["timings"]
    off = tr["offline"]["config"]
    live = tr.get("live", {}).get("config", {})
    ablations = Path(path).with_name("ablations.json")
    ablation_rows = json.loads(ablations.read_text()) if ablations.is_file() else None
    lines = []
    add = lines.append
    _card_intro(add)
    _card_license(add)
    _card_data(add, live, off)
    _card_architecture(add, live, off, summary, tr)
    _card_training(add, off, summary, tm, tr)
    _card_metrics(add, ablation_rows, off, sdr, summary)
    _card_vad(add, sdr)
    _card_speed(add, sp)
    lines.extend(int8_section(Path(path).parent))
    _card_comparisons(add, sdr, tr)
    if ablation_rows is not None:
        _ablations(add, ablation_rows)
    lines.extend(hq_section(Path(path).parent))
    _card_limitations(add)
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)


def _card_intro(add):
    """The title and what the models are."""
    add("# stemboard separation models (`offline`, `live`, `hq-vocals`, `hq-vocals-ft`, `hq`)")
    add("")
    add("Two 4-stem (vocals, drums, bass, other) spectrogram-mask CNNs exported to ONNX, "
        "run by `stemboard.models.MaskModel`. `offline` is the fast 4-stem model (its "
        "architecture, trained on accompaniments, is `hq-split`, the second stage of the "
        "package default `hq`: see the section on `hq-vocals` and `hq` below); `live` is "
        "the low-latency variant for streaming. Both ship as int8 graphs, with their fp32 "
        "sources beside them (see *int8 graphs*). This card is "
        "written by the training pipeline; every number below was measured by it or by "
        "the scripts it names.")
    add("")


def _card_license(add):
    """The data license caveat."""
    add("## License caveat — read first")
    add("")
    add("The weights are trained on **MUSDB18** (7-second preview excerpts, MUSDB18-7). "
        "MUSDB18 is licensed for **non-commercial research only**, and many of its songs "
        "are CC BY-NC-SA. Treat these weights as research artefacts: do not use them "
        "commercially without clearing the data's license.")
    add("")


def _card_data(add, live, off):
    """What the models were trained on."""
    add("## Data")
    add("")
    add("- MUSDB18-7 `train` subset: the official 80/14 split. Training uses the 80 "
        "`train` songs (~7 s each, ~9 min of audio); the 14 `valid` songs are held out and "
        "used only for the metrics below.")
    add("- The mixture is the sum of the four stems (the stored AAC mixture is not).")
    add("- Augmentation (on the fly, on precomputed stem STFTs — the STFT is linear, so the "
        "remixed mixture's STFT is the sum of the stems' STFTs; see "
        "`train/data.py`): with probability 0.5 each stem is drawn from an "
        "independent random song, channel and offset (incoherent remix), otherwise all four "
        "come from one song/channel/offset; per-stem random gain in [-6, +3] dB; each stem is "
        "silenced with probability 0.1; random crops at hop granularity; channel choice = "
        "channel swap (the model is per channel).")
    by_model = [(n, tuple(c.get("pitch_shifts") or ())) for n, c in
                (("offline", off), ("live", live))]
    if any(sh for _, sh in by_model):
        parts = []
        for shifts in dict.fromkeys(sh for _, sh in by_model):
            users = " and ".join(f"`{n}`" for n, sh in by_model if sh == shifts)
            if not shifts:
                parts.append(f"{users}: none")
                continue
            ratios = ", ".join("{}/{}".format(*resample_ratio(v)) for v in shifts)
            parts.append(f"{users}: {', '.join(f'{v:+g}' for v in shifts)} semitones "
                         f"(resampling ratios {ratios}; {len(shifts) + 1}× the material)")
        add(f"- Pitch/tempo copies: every training song is also resampled "
            f"(`train/data.py:pitch_shifted`, small-integer ratios, so pitch and tempo "
            f"change together like a turntable) and the copies are drawn like the songs; "
            f"{'; '.join(parts)}. The input normalisation still comes from the original "
            f"songs only. Evidence (see *Ablations*, the `*_nopitch_*`, `pitch2*`, `pitch4*` "
            f"and `pitch24*` rows): at 1200 steps ±2 copies are neutral on average (vocals "
            f"up, drums down); at 2400 steps they help, every stem but other; at 12000 "
            f"steps ±1 and ±2 together beat ±2 alone with the same seed, on average and "
            f"on vocals, for seed 0 (`p12_s12000` against `bf16_s12000`) and seed 1 "
            f"(`p12_seed1_s12000` against `seed1_s12000`).")
    add("- Tried and measured, **not used** because they did not help on `valid` (see "
        "*Ablations* below): synthetic stems rendered from MIDI (Groove MIDI drums, POP909 "
        "melody/piano/bass lines through the FluidR3 GM soundfont, `train/synth.py`), "
        "and a random per-stem EQ augmentation.")
    add("")


def _card_architecture(add, live, off, summary, tr):
    """The networks, their inputs, masks and export."""
    add("## Architecture")
    add("")
    add("- Input: STFT magnitudes on the runtime grid (44.1 kHz, n_fft 2048, hop 512, "
        "periodic Hann), first 513 bins (0–11.0 kHz, the article's 22.05 kHz / 1024 / 256 "
        "grid), each audio channel is one batch item.")
    add("- Normalisation (applied by the runtime from the manifest, not inside the graph): "
        "`(log1p(|X|) - mean_f) / std_f` with per-bin mean/std of the training mixtures.")
    # The network's shape; the context/lookahead split is not part of it.
    # Older configs lack fields added since; those mean the TrainConfig default.
    shape = ("arch", "hidden", "members", "front", "dilations", "kernel", "input_layout")
    defaults = config_defaults()
    same = all(off.get(k, defaults[k]) == live.get(k, defaults[k]) for k in shape)
    for name, cfg in (("offline", off),) if same else (("offline", off), ("live", live)):
        which = "" if same else f" of `{name}`"
        add(f"- Network{which} (`train/model.py`): {_network(cfg)} Receptive field "
            f"25 frames (290 ms), the article's context, but fully convolutional over time: "
            f"one pass predicts every frame.")
        add(f"- {tr[name]['params']:,} parameters, {tr[name]['macs_per_frame'] / 1e6:.2f} M "
            f"multiply-adds per frame per channel.")
    add(("- `offline` and `live` share the architecture; only" if same else
         "- Besides the networks,") + " the alignment of the "
        "training targets differs: offline predicts the mask of the centre frame "
        "(12 past, 12 future), live the mask of frame t from t-22..t+2. Live latency = "
        "n_fft - hop + 2·hop = 2560 samples = 58 ms at 44.1 kHz.")
    if summary.get("stereo_mode") == "mid_side":
        trained = ("trained on mid and side signals (`TrainConfig.mid_side`)"
                   if off.get("mid_side") else
                   "trained on left and right channels, like any single audio signal")
        add("- Stereo: the manifests say `\"stereo_mode\": \"mid_side\"`, so the runtime "
            "separates the mid (L+R)/2 and side (L−R)/2 signals, each on its own, and maps "
            "every stem back to left/right (L = M + S, R = M − S; linear, so the stems still "
            "add up to the mixture). Centre-panned sources (lead vocal, bass, kick) sit in "
            "the mid alone, where hard-panned instruments are at half level, and the side "
            "holds only wide sources. The models were " + trained + "; the `left/right` "
            "rows of the metrics table run the same models on each channel instead. Mono "
            "and other channel counts are separated channel by channel.")
        if not off.get("mid_side"):
            add("  Training on mid and side signals as well (`midside_s2400` in *Ablations*) "
                "scored lower than training on left/right and running on mid/side (the "
                "`*_s2400_ms` rows), so the models are trained on left/right channels.")
    add("- Bins above 513 (11–22 kHz): `hold_top_bin` — they take the mask of bin 512.")
    add("- Masks are soft (ratio) masks (`mask_mode=\"soft\"`, the default).")
    add("- Exported as a *stateful* ONNX graph (opset 17, dynamic batch and time axes; "
        "`train/export.py:StepNet`): besides the magnitudes it takes and returns the "
        "last input frames of each dilated block (24 frames in all), so a stream sends each "
        "new frame through the network once instead of re-running its 25-frame receptive "
        "field. With zero states and the first 24 output frames dropped it gives exactly the "
        "plain (valid-convolution) output, which is how whole files are run.")
    add("")


def _card_training(add, off, summary, tm, tr):
    """How to reproduce the training, and what it cost."""
    add("## Training")
    add("")
    add("Exact command, from the repository root, from scratch (decodes the data into the "
        "git-ignored `runs/cache`, checkpoints into `--work`):")
    add("")
    add("```")
    add(summary.get("command", "python -m stemboard.train.pipeline --data ../shared/data "
                                 "--out models/weights"))
    add("```")
    add("")
    loss = LOSSES[off["loss"]]
    add(f"- Loss: {loss}. AdamW, lr {off['lr']} with "
        f"linear warm-up and cosine decay, batch {off['batch']} channel-crops × "
        f"{off['frames_out']} output frames, gradient clip 5, "
        f"seed {off['seed']}. torch {summary['torch']} on CPU, "
        f"{summary.get('threads', 2)} thread(s)"
        + ("; the forward pass under bfloat16 autocast (weights, optimiser and loss in "
           "float32)." if off.get("precision") == "bf16" else "."))
    add("- Steps and training time on the 2-core CPU machine: " + ", ".join(
        f"{n} {i['config']['steps']} steps in {_fmt_s(i['train_seconds'])}"
        for n, i in tr.items()) + ".")
    seeded = {n: i["seeded_from"] for n, i in tr.items() if i.get("seeded_from")}
    for n, src in seeded.items():
        # A checkpoint trained outside the pipeline with the very same config.
        run, _, cmd = src.partition(": ")
        add(f"- The `{n}` checkpoint comes from the {run} (`{cmd}`): the same TrainConfig "
            "but its name, the same data and seed, two threads and one run at a time as the "
            "pipeline trains by default. The pipeline found it in its cache and reused it.")
    if "train_wall_from_scratch_s" in tm:
        data = max(tm["data_s"], tm.get("worker_data_s", 0.0))
        total = data + tm["train_wall_from_scratch_s"] + tm["eval_s"]
        add(f"- Pipeline stage times: data {data:.0f} s (a worker's, pitch copies "
            f"included); training "
            f"{_fmt_s(tm['train_s'])} of single-thread compute, run by `--workers "
            f"{tm['workers']}` processes (one thread each; the runs split as "
            + "; ".join(" + ".join(g) for g in tm["worker_groups"])
            + f"), so the longest worker trains for "
            f"{_fmt_s(tm['train_wall_from_scratch_s'])}; evaluation (SDR and VAD, all "
            f"systems) {_fmt_s(tm['eval_s'])}. A from-scratch run of the command thus "
            f"takes about {_fmt_s(total)}, within the 2-hour budget. The worker times "
            f"include their share of the 2 cores with each other, so they are what a "
            f"from-scratch run sees.")
    else:
        add(f"- Pipeline stage times: data {tm['data_s']:.0f} s, training "
            f"{_fmt_s(tm['train_s'])}, evaluation (SDR and VAD, all systems) "
            f"{_fmt_s(tm['eval_s'])}; sum {_fmt_s(tm['data_s'] + tm['train_s'] + tm['eval_s'])}.")
    add("")


def _card_metrics(add, ablation_rows, off, sdr, summary):
    """SDR on the valid excerpts."""
    add("## Metrics (measured on the 14 MUSDB18-7 `valid` excerpts)")
    add("")
    add("museval BSSEval v4 SDR in dB, 1 s windows, median over windows then median over "
        "the 14 tracks; mixture = sum of stems. Model rows run the exported ONNX through "
        "`MaskModel.masks` and `stemboard.dsp.stft/istft`, i.e. the shipped runtime path, "
        "in each manifest's stereo mode (the `left/right` rows override it)."
        + _sdr_method(sdr))
    add("")
    add("| system | vocals | drums | bass | other | avg |")
    add("|---|---|---|---|---|---|")
    for key in ("offline", "live", "offline_left_right", "live_left_right", "oracle_ibm",
                "oracle_irm", "mixture"):
        if key in sdr:
            add(_row(LABELS[key], sdr[key]))
    add("")
    o, lv = sdr["offline"], sdr["live"]
    add(f"Targets: offline avg ≥ 4.0 dB ({'met' if o['avg'] >= 4.0 else 'MISSED'}: "
        f"{o['avg']:.2f}), vocals ≥ 5.5 dB ({'met' if o['vocals'] >= 5.5 else 'MISSED'}: "
        f"{o['vocals']:.2f}); live within 1.5 dB of offline "
        f"({'met' if o['avg'] - lv['avg'] <= 1.5 else 'MISSED'}: "
        f"{o['avg'] - lv['avg']:+.2f} dB difference).")
    others = other_seeds(off, ablation_rows or [], summary.get("stereo_mode"))
    if others:
        # The targets are read on one seed; say what the recipe gave with the others.
        add("")
        add("The same offline recipe with other seeds (ablation runs, scored the same way): "
            + "; ".join(f"seed {r['config']['seed']} (`{r['name']}`): vocals "
                        f"{r['sdr']['vocals']:.2f}, avg {r['sdr']['avg']:.2f}" for r in others)
            + ". The seed alone moves these scores; the targets above are the shipped "
              "seed's.")
    add("")


def _card_vad(add, sdr):
    """Vocal activity detection accuracy."""
    add("### Vocal activity detection (per STFT frame)")
    add("")
    add("Truth: the vocal stem's frame energy is ≥ 10 % of the mixture's frame energy. "
        "Prediction: the separated vocals' frame energy is ≥ 10 % of the mixture's. Frames "
        "more than 60 dB below the track's loudest frame are skipped. The threshold was "
        "fixed before scoring, not tuned. The article reports 97 % (on its own data and "
        "definition, so the numbers are not strictly comparable).")
    add("")
    add("| system | VAD accuracy | share of frames with vocals (truth) |")
    add("|---|---|---|")
    for key in ("offline", "live", "oracle_ibm", "oracle_irm"):
        if key in sdr and "vad_accuracy" in sdr[key]:
            add(f"| {key} | {100 * sdr[key]['vad_accuracy']:.1f} % | "
                f"{100 * sdr[key]['vad_vocal_frame_share']:.1f} % |")
    add("")


def _card_speed(add, sp):
    """Separation speed."""
    add("### Speed (60 s of stereo, 4 stems, onnxruntime CPU, this 2-core machine)")
    add("")
    add("| model | model only (× real time) | STFT + model + 4 ISTFTs, numpy glue "
        "(× real time) | `stemboard.separate` (× real time) |")
    add("|---|---|---|---|")
    for name, s in sp.items():
        eng = s.get("stemboard_separate_x_realtime")
        add(f"| {name} | {s['model_only_x_realtime']:.0f}× | "
            f"{s['whole_separation_x_realtime']:.0f}× | "
            f"{'%.0f×' % eng if eng else 'n/a'} |")
    add("")
    repeats = max(s.get("repeats", 3) for s in sp.values())
    add(f"Best of {repeats} runs on 60 s of stereo noise, measured on this shared machine "
        "(other jobs can slow any run, so these are lower bounds of what an idle machine "
        "gives). Model only = "
        "one onnxruntime call for both channels. The second column is "
        "`train/evaluate.py:separation_speed` (numba STFT, ONNX, mask extension and "
        "four ISTFTs); the third is the package's public one-call API (streaming engine). "
        "Measured by the pipeline run that shipped these weights (`metrics.json`), not "
        "since: the engine and the graphs' mask layout have changed after it (issue 28), "
        "and `bench/speed.py` gives today's figures (README, docs/benchmarks.md).")
    add("")


def _card_comparisons(add, sdr, tr):
    """The short comparison runs, if any."""
    cmp_names = [n for n in sdr if n.startswith("cmp_")]
    if cmp_names:
        add("### Comparisons (short runs)")
        add("")
        steps = {n: tr[n.replace("_binary", "")]["config"]["steps"] for n in cmp_names}
        add(f"Short runs ({', '.join(sorted({str(v) for v in steps.values()}))} steps each, "
            f"same data, augmentation, optimiser, seed and 12/12 context as `offline`), to "
            f"fit the 2-hour budget; compare rows with each other, not with the shipped "
            f"models.")
        add("")
        add("| run | target / loss | hidden | masks applied | vocals | drums | bass | other | avg |")
        add("|---|---|---|---|---|---|---|---|---|")
        for n in cmp_names:
            c = tr[n.replace("_binary", "")]["config"]
            target = {"mse_ibm": "binary mask (IBM), MSE — the article",
                      "l1mag": "ratio mask via magnitude L1",
                      "l2mag": "ratio mask via magnitude L2",
                      "l2psa": "phase-sensitive target, L2",
                      "l2stem": "ratio mask via magnitude L2, per-stem normalised",
                      "sdr": "ratio mask via negative SDR per crop"}[c["loss"]]
            mode = "argmax (binary)" if n.endswith("_binary") else "soft"
            r = sdr[n]
            add(f"| {n} | {target} | {c['hidden']} | {mode} | " + " | ".join(
                f"{r[s]:.2f}" for s in STEMS) + f" | {r['avg']:.2f} |")
        add("")


def _card_limitations(add):
    """What the models cannot do."""
    add("## Limitations")
    add("")
    add("- Trained on ~9 minutes of audio (80 × 7 s excerpts); it is a small model and "
        "generalises accordingly. Expect bleed between stems, especially bass/other.")
    add("- Only 0–11 kHz is modelled; 11–22 kHz reuses the top bin's mask.")
    add("- Evaluated on 14 excerpts of ~7 s; medians over so few tracks are noisy "
        "(see `metrics.json` for per-track numbers).")
    add("- Music that does not resemble MUSDB18's pop/rock mixes is out of distribution.")
    add("- Non-commercial research data (see above).")
    add("")


def _network(cfg: dict) -> str:
    """One sentence on a trained config's network."""
    members = int(cfg.get("members", 1))
    if members > 1:
        seeds = ", ".join(str(cfg.get("seed", 0) + i) for i in range(members))
        return (f"{members} networks of one recipe, trained one after the other with seeds "
                f"{seeds}, run as one graph that averages their logits before the softmax "
                f"(`EnsembleNet`: the members' masks' geometric mean, renormalised across "
                f"stems). Each: " + _network({**cfg, "members": 1}))
    if cfg.get("arch") == "bandsplit":
        return (f"`BandSplitNet`: the 513 bins are cut into 39 bands (86 Hz wide up to 1 kHz, "
                f"172 Hz to 3.1 kHz, 344 Hz to 7.2 kHz, then three of 1.27 kHz); each band "
                f"has its own 1×1 input layer to {cfg['hidden']} channels (+ BN + ReLU), then "
                f"{len(cfg['dilations'])} residual blocks, each a kernel-{cfg['kernel']} "
                f"*valid* temporal conv with dilation {cfg['dilations']} shared by all bands "
                f"(+ BN + ReLU) followed by a learned 39×39 mix across bands (+ BN + ReLU), "
                f"then each band's own 1×1 output layer to its bins' logits for the 4 stems "
                f"and a softmax across stems.")
    front = ""
    if cfg.get("front") == "freqconv":
        front = ("two convolutions along frequency only (1→16 channels, kernel 9 bins, the "
                 "first with stride 4; weights shared by every bin; time kernel 1), "
                 "flattened to 16×129 channels, then ")
    return (f"{front}frequency as channels: 1×1 conv → "
            f"{cfg['hidden']} + BN + ReLU, then {len(cfg['dilations'])} residual blocks of "
            f"kernel-{cfg['kernel']} *valid* temporal convs with dilations {cfg['dilations']} "
            f"(+ BN + ReLU), then a 1×1 conv to 4×513 logits and a softmax across stems.")


def config_defaults() -> dict:
    """TrainConfig's defaults as a recorded (JSON) config holds them: tuples as lists.
    A field missing from an older record means this default."""
    # train.train imports torch; the card's other tables are written without it.
    from stemboard.train.train import TrainConfig

    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(TrainConfig()).items()}


def other_seeds(config: dict, rows: list, stereo_mode) -> list:
    """Ablation rows that trained ``config`` (a run-info config) with another seed:
    every TrainConfig field equal but ``name`` and ``seed`` (missing fields mean their
    default), run in ``stereo_mode``.  Sorted by seed."""
    defaults = config_defaults()

    def norm(c):
        return {k: c.get(k, d) for k, d in defaults.items() if k not in ("name", "seed")}

    want = norm(config)
    seed = config.get("seed", defaults["seed"])
    found = [r for r in rows
             if r.get("stereo_mode", "left_right") == (stereo_mode or "left_right")
             and r["config"].get("seed", defaults["seed"]) != seed
             and norm(r["config"]) == want]
    return sorted(found, key=lambda r: r["config"].get("seed", 0))


def _ablations(add, rows):
    """The ablation runs (``train/ablate.py``): one change each against the defaults."""
    add("### Ablations (what was kept and what was not)")
    add("")
    add("Changes against the session-1 defaults (12/12 context, hidden 192, L1 magnitude "
        "loss, dense input layer, MUSDB18 only, no pitch copies), one at a time; the rows "
        "with several changes compare the shipped recipe with and without one of them. "
        "Each run with "
        "`python -m stemboard.train.ablate` (the command is in "
        "`ablations.json`) and scored like the rows above. One seed each on 14 excerpts: "
        "differences under about 0.15 dB are noise (three seeds of the 2400-step shipped "
        "recipe, `pitch2_s2400`, `seed1_s2400` and `seed2_s2400`, span 3.72–3.81 dB on "
        "average and up to 0.24 dB on one stem run on left/right, 3.87–3.93 dB on mid/side; "
        "with ±4-semitone copies, seeds 0 and 1 differ by 0.46 dB on vocals). Compare rows of equal steps. "
        "`refine=N` is the optional per-bin head (`train/model.py:BinRefine`, N "
        "channels, +11 % multiply-adds per frame) that corrects each bin's logits from its "
        "spectral neighbourhood. `input_layout=stereo_pair` feeds each channel's "
        "features together with the other channel's (the stereo image as a cue; with "
        "`mid_side=true`, the mid's with the side's and the other way round; the manifest's "
        "`input_layout` tells the runtime to pair them; `front_planes=2` makes the "
        "frequency-convolution front read the pair as two planes of one spectrum). "
        "`loss=sdr` trains on the negative SDR of every stem over every ~1 s crop. "
        "`feature_scale=S` feeds log1p(S·|X|) instead of "
        "log1p(|X|) (closer to a log spectrogram in quiet bins); `ema=D` keeps an "
        "exponential moving average of the weights (decay D) and ships that. "
        "`arch=bandsplit` is `train/model.py:BandSplitNet`: 39 frequency bands, each "
        "with its own input and output layer, and time convolutions and a mix across bands "
        "shared by all bands (`hidden` is then the width per band). `precision=bf16` "
        "runs the forward pass under bfloat16 autocast (weights, optimiser and loss stay "
        "float32): about 1.45× faster a training step on this CPU (AMX), with the same "
        "scores. `stem_weights=[w_vocals, w_drums, w_bass, w_other]` scales each stem's "
        "share of the loss (normalised to mean 1); `dropout=P` drops each residual block's "
        "branch activations with probability P while training (not in the exported model); "
        "`members=N` trains N nets of the row's recipe (seeds 0..N-1) and scores them as "
        "one graph averaging their logits (`EnsembleNet`). `teacher=hq, distill=A` "
        "(`train/distill.py`) runs the bundled `hq` system on every training song and pitch "
        "copy once, and gives the crops the sampler does not remix (kept at one gain for "
        "all four stems, none dropped, so their mixture is the one `hq` heard) the targets "
        "(1 − A)·|true stem| + A·|hq's stem|; `distill=0` with a teacher is the control "
        "(the same draws, the true targets).")
    add("")
    add("`run on` is how a row was scored: `L/R` runs the model on the left and right "
        "channels (every run up to `ctx45_s2400`, and the `*_lr` rows), `M/S` on the mid and "
        "side signals, as "
        "the shipped models run (`ablate --stereo-mode`, default `mid_side`). The `*_ms` "
        "rows are earlier runs' models scored again on mid/side, without retraining "
        "(`ablate --name RUN_ms --rescore RUN`). "
        "`mid_side=True` also trains on mid and side signals instead of left and right.")
    add("")
    add("| run | change | steps | run on | vocals | drums | bass | other | avg |")
    add("|---|---|---|---|---|---|---|---|---|")
    keys = ("loss", "front", "pitch_shifts", "eq_db", "synth_share", "synth_silence",
            "dilations", "context", "lookahead", "hidden", "refine", "weight_decay",
            "input_layout", "front_planes", "p_remix", "feature_scale", "ema", "mid_side",
            "arch", "precision", "stem_weights", "dropout", "members", "teacher", "distill",
            "seed")
    defaults = {k: v for k, v in config_defaults().items() if k in keys}
    for r in rows:
        c = r["config"]
        change = ", ".join(f"{k}={c[k]}" for k in defaults
                           if k in c and c[k] != defaults[k]) or "none"
        run_on = "M/S" if r.get("stereo_mode") == "mid_side" else "L/R"
        add(f"| {r['name']} | {change} | {c['steps']} | {run_on} | " + " | ".join(
            f"{r['sdr'][s]:.2f}" for s in STEMS) + f" | {r['sdr']['avg']:.2f} |")
    add("")


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description="Rewrite MODEL_CARD.md from metrics.json and "
                                 "ablations.json (no training, scoring or timing).")
    ap.add_argument("--out", default="models/weights",
                    help="folder holding metrics.json (and ablations.json)")
    args = ap.parse_args(argv)
    metrics = Path(args.out) / "metrics.json"
    if not metrics.is_file():
        raise SystemExit(f"{metrics}: not found; run the training pipeline first")
    try:
        summary = json.loads(metrics.read_text())
    except json.JSONDecodeError as e:
        raise SystemExit(f"{metrics}: not valid JSON ({e})")
    write_card(Path(args.out) / "MODEL_CARD.md", summary)
    print(f"wrote {Path(args.out) / 'MODEL_CARD.md'}")


if __name__ == "__main__":
    main()
