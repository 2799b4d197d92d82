"""Segment seams: the segmented hq-vocals model against one whole-file graph run.

The 14 MUSDB18-7 valid excerpts are joined into one ~95 s stream, separated
by the shipped ``hq-vocals`` (512-frame segments crossfaded over 64 frames)
and by the same graph run once over the whole stream (its manifest copied with
one segment as long as the stream), then cut back into excerpts and scored
(museval v4 median of medians, vocals / accompaniment).  The difference is what
segmenting costs; the target is under 0.05 dB.

    python bench/segments.py --json runs/bench/segments.json
"""
import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import SR, git_rev, machine_info, save_json, table  # noqa: E402
from quality import CACHE, DEFAULT_DATA, load_tracks  # noqa: E402


def whole_file_copy(model_path, frames, folder):
    """A manifest beside a link to ``model_path`` whose one segment spans ``frames``."""
    src = Path(model_path)
    d = json.loads(src.with_suffix(".json").read_text())
    length = -(-frames // 64) * 64
    d.update(segment_frames=length, segment_overlap=0, context_frames=length - 1,
             lookahead_frames=length - 1, name="hq-vocals-whole-file")
    dst = Path(folder) / "whole.onnx"
    dst.symlink_to(src.resolve())
    dst.with_suffix(".json").write_text(json.dumps(d))
    return dst


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--cache", default=str(CACHE))
    ap.add_argument("--model", default="hq-vocals")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    from stemboard.dsp import StftGrid, num_frames
    from stemboard.models import resolve_model_path
    from stemboard.train.evaluate import sdr_windows
    from stemboard.plugin.separator import StemSeparator

    tracks = load_tracks(args.data, cache=args.cache)
    mix = np.concatenate([st.sum(axis=0) for _, st in tracks], axis=1)
    bounds = np.cumsum([0] + [st.shape[2] for _, st in tracks])
    path = resolve_model_path(args.model)
    seg = StemSeparator(path)
    grid = StftGrid(seg.model.manifest.n_fft, seg.model.manifest.hop)
    with tempfile.TemporaryDirectory() as tmp:
        whole = StemSeparator(whole_file_copy(path, num_frames(mix.shape[1], grid), tmp))
        outs = {"segmented (512 / 64)": seg.separate(mix, SR),
                "whole file (one graph run)": whole.separate(mix, SR)}
    res = {"tracks": len(tracks), "seconds": mix.shape[1] / SR, "model": str(path),
           "machine": machine_info(), "git": git_rev(), "summary": {}}
    for name, out in outs.items():
        rows = []
        for (tname, st), a, b in zip(tracks, bounds[:-1], bounds[1:]):
            refs = np.stack([st[0], st[1:].sum(axis=0)])
            ests = np.stack([out["vocals"][:, a:b], out["accompaniment"][:, a:b]])
            rows.append(np.nanmedian(sdr_windows(refs, ests, SR), axis=1))
        med = np.nanmedian(np.array(rows), axis=0)
        res["summary"][name] = {"vocals": float(med[0]), "accompaniment": float(med[1])}
    a, b = res["summary"].values()
    res["difference_db"] = {k: a[k] - b[k] for k in a}
    res["max_sample_difference"] = float(max(
        np.abs(outs["segmented (512 / 64)"][s] - outs["whole file (one graph run)"][s]).max()
        for s in ("vocals", "accompaniment")))
    print(f"\n## Segments against one whole-file run ({len(tracks)} valid excerpts joined, "
          f"{res['seconds']:.0f} s)\n")
    print(table(["run", "vocals", "accompaniment"],
                [[k, v["vocals"], v["accompaniment"]] for k, v in res["summary"].items()]
                + [["difference", *res["difference_db"].values()]], floatfmt=".3f"))
    print()
    save_json(args.json, res)
    return res


if __name__ == "__main__":
    main()
