"""Decode-aware (keyframe) TSN sampling on the trend benchmark's data: accuracy and decode speed (issue 8).

The trend benchmark's Fashion-MNIST clips (``benchmarks.accuracy.trend``) have 2 frames and one
keyframe each, and its model samples 2 segments: every segment holds one frame, so keyframe sampling
picks exactly the frames exact sampling picks, whatever the GOP. This benchmark therefore renders the
same recipe (same classes, per-class counts, source images and seed; ``demo.fashion_clips``)
with ``--frames`` frames per clip, and re-encodes a copy with a fixed short GOP (``--gop``, scene-cut
keyframes off), checked by a packet scan. On those clips, per seed and interleaved:

* ``exact``: a model trained with exact TSN sampling (a random frame per segment), scored on the test
  split served with exact sampling and served with keyframe sampling (the spec changed, weights not);
* ``keyframe``: a model trained with ``--keyframe-sampling`` (recorded in its spec), scored served with
  it (and, for completeness, with exact sampling).

Then the decode + preprocess time per test clip of both sampling modes (interleaved, CPU and wall time,
1 torch thread). Model: tsn_effnet_lite0 from ImageNet weights at ``--size`` px, crop ``--crop`` px (the
trend benchmark's plain student), 1 torch thread, one training at a time.

    python -m benchmarks.accuracy.keyframe_sampling --source benchmarks/scratch/fashion_tro-dre-bag-san-sne_80x30x60_f2_s0
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import torch

from benchmarks.common import RESULTS, SCRATCH
from demo.fashion_clips import make_fashion_clips
from reskd_infer.bench.timing import interleave
from reskd_infer.io.checkpoint import load_checkpoint, save_checkpoint
from reskd_infer.train import TrainConfig, evaluate, train
from reskd_infer.video import read_clips, video_to_batch
from reskd_infer.video.decode import open_video, scan_packets

ARCH = "tsn_effnet_lite0"
SPLITS = ("train", "val", "test")


def gop_structure(root: Path) -> dict[str, Any]:
    """Frames and keyframes per clip of every listed clip (a packet scan, no decoding)."""
    shapes: Counter = Counter()
    for split in SPLITS:
        for line in (root / f"{split}.txt").read_text().splitlines():
            with open_video(root / line.split()[0]) as (container, stream):
                index = scan_packets(container, stream)
            shapes[(index.num_frames, tuple(index.keyframes.tolist()))] += 1
    return {"clips": sum(shapes.values()),
            "structures": [{"frames": n, "keyframes": list(k), "clips": c} for (n, k), c in shapes.most_common()]}


def reencode(src: Path, dst: Path, gop: int) -> None:
    """Re-encode ``src`` with a keyframe every ``gop`` frames and no scene-cut keyframes (the same YUV planes
    in, H.264 CRF 18 out, one thread: reproducible)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        enc = out.add_stream("libx264", rate=stream.average_rate,
                             options={"crf": "18", "threads": "1", "sc_threshold": "0"})
        enc.codec_context.thread_count = 1
        enc.width, enc.height, enc.pix_fmt = stream.width, stream.height, "yuv420p"
        enc.codec_context.gop_size = gop
        for i, frame in enumerate(inp.decode(stream)):
            # A fresh frame from the planes: a decoded frame's picture type would force x264's frame types.
            planes = av.VideoFrame.from_ndarray(frame.to_ndarray(format="yuv420p"), format="yuv420p")
            planes.pts, planes.time_base = i, Fraction(1, int(stream.average_rate))
            for packet in enc.encode(planes):
                out.mux(packet)
        for packet in enc.encode():
            out.mux(packet)


def make_data(source: Path, work: Path, frames: int, gop: int) -> Path:
    """The source's recipe with ``frames`` frames per clip, re-encoded with a ``gop``-frame GOP."""
    settings = json.loads((source / "manifest.json").read_text())["settings"]
    long = work / f"fashion_f{frames}"
    if not (long / "test.txt").is_file():
        make_fashion_clips(long, classes=settings["classes"], per_class_train=settings["per_class_train"],
                           per_class_val=settings["per_class_val"], per_class_test=settings["per_class_test"],
                           frames=frames, size=settings["size"], seed=settings["seed"],
                           item_sizes=tuple(settings["item_sizes"]))
    short = work / f"fashion_f{frames}_gop{gop}"
    if not (short / "test.txt").is_file():
        for split in SPLITS:
            for line in (long / f"{split}.txt").read_text().splitlines():
                rel = line.split()[0]
                reencode(long / rel, short / rel, gop)
        for name in ("classes.txt", "manifest.json", *(f"{s}.txt" for s in SPLITS)):
            (short / name).write_text((long / name).read_text())
    return short


def served_as(ckpt: str, keyframes: bool, out: Path) -> Path:
    """A copy of ``ckpt`` whose spec serves with (or without) keyframe sampling; same weights."""
    model, spec = load_checkpoint(ckpt)
    return save_checkpoint(model, spec.replace(keyframe_sampling=keyframes), out)


def train_and_score(data: Path, work: Path, seed: int, keyframes: bool, args: argparse.Namespace) -> dict[str, Any]:
    name = f"{'keyframe' if keyframes else 'exact'}_s{seed}"
    start = time.time()
    out = train(TrainConfig(arch=ARCH, train_list=str(data / "train.txt"), val_list=str(data / "val.txt"),
                            data_root=str(data), classes=str(data / "classes.txt"), input_size=args.size,
                            crop_size=args.crop, num_frames=args.segments, epochs=args.epochs, eval_every=args.epochs,
                            batch_size=8, lr=0.01, warmup_epochs=0.5, pretrained_imagenet=True, seed=seed,
                            workers=0, progress=False, no_kd=True, keyframe_sampling=keyframes, device="cpu",
                            work_dir=str(work / name), dataset="fashion-mnist clips (keyframe_sampling.py)"))
    train_s = time.time() - start
    row: dict[str, Any] = {"name": name, "trained_with": "keyframe" if keyframes else "exact", "seed": seed,
                           "train_s": round(train_s, 1), "val_top1": float(out["metrics"]["top1"]),
                           "load_average_after": [round(x, 2) for x in os.getloadavg()]}
    for served in (keyframes, not keyframes):
        ckpt = served_as(out["last"], served, work / name / f"served_{'keyframe' if served else 'exact'}.ckpt")
        test = evaluate(ckpt, data / "test.txt", data, workers=0, device="cpu", backend="torch")
        row[f"test_top1_served_{'keyframe' if served else 'exact'}"] = float(test["top1"])
    print(f"{time.strftime('%H:%M:%S')} {name}: {row}", file=sys.stderr, flush=True)
    return row


def decode_speed(data: Path, spec_ckpt: str, rounds: int, limit: int) -> dict[str, Any]:
    """Decode + preprocess per test clip, exact vs keyframe sampling, interleaved clip by clip."""
    _, spec = load_checkpoint(spec_ckpt)
    specs = {"exact": spec.replace(keyframe_sampling=False), "keyframe": spec.replace(keyframe_sampling=True)}
    paths = [data / line.split()[0] for line in (data / "test.txt").read_text().splitlines()][:limit]
    arms = {f"{i}/{name}": (lambda p=path, sp=sp: video_to_batch(p, sp))
            for i, path in enumerate(paths) for name, sp in specs.items()}
    timed = interleave(arms, rounds, warmup=1)  # the warm-up round warms the file cache
    picked = {name: read_clips(paths[0], sp)[0].shape for name, sp in specs.items()}

    def median_ms(samples: dict[str, list[float]], name: str) -> float:  # over every clip and round
        return 1000 * statistics.median(v for arm, values in samples.items() if arm.endswith(f"/{name}") for v in values)

    med = {k: {"wall_ms": median_ms(timed.wall, k), "cpu_ms": median_ms(timed.cpu, k)} for k in specs}
    return {"clips": len(paths), "rounds": rounds, "torch_threads": 1, "ms": med, "clip_shape": str(picked["exact"]),
            "speedup_cpu": med["exact"]["cpu_ms"] / med["keyframe"]["cpu_ms"],
            "speedup_wall": med["exact"]["wall_ms"] / med["keyframe"]["wall_ms"]}


def frames_picked(data: Path, spec_ckpt: str) -> dict[str, list[int]]:
    """Which frames each mode serves on the first test clip (every clip has the same GOP)."""
    from reskd_infer.video.sampling import sample_indices

    _, spec = load_checkpoint(spec_ckpt)
    with open_video(data / (data / "test.txt").read_text().split()[0]) as (container, stream):
        index = scan_packets(container, stream)
    return {name: sample_indices(index.num_frames, spec.replace(keyframe_sampling=k), None, index.keyframes)[0].tolist()
            for name, k in (("exact", False), ("keyframe", True))}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def arm(trained: str, served: str) -> dict[str, Any]:
        vals = [r[f"test_top1_served_{served}"] for r in runs if r["trained_with"] == trained]
        return {"mean": statistics.mean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                "seeds": vals}

    arms = {"trained exact, served exact": arm("exact", "exact"),
            "trained exact, served keyframe": arm("exact", "keyframe"),
            "trained keyframe, served keyframe": arm("keyframe", "keyframe"),
            "trained keyframe, served exact": arm("keyframe", "exact")}
    base = arms["trained exact, served exact"]["seeds"]
    for a in arms.values():
        diffs = [v - b for v, b in zip(a["seeds"], base, strict=True)]
        a["paired_diff_vs_exact"] = {"mean": statistics.mean(diffs),
                                     "std": statistics.stdev(diffs) if len(diffs) > 1 else 0.0, "diffs": diffs}
    return arms


def markdown(report: dict[str, Any], first: bool = True) -> str:
    s, g = report["setup"], report["source_gop"]
    src = "; ".join(f"{x['clips']} clips of {x['frames']} frames with keyframes {x['keyframes']}"
                    for x in g["structures"])
    lines = ["# Decode-aware (keyframe) sampling on the trend benchmark's data", "",
             "`python -m benchmarks.accuracy.keyframe_sampling` (one section per GOP below).", "",
             f"Source data `{s['source']}`: {src}. With 2 frames and 2 segments every segment holds one frame, so "
             "keyframe sampling picks the same frames as exact sampling there, whatever the GOP: the mode is "
             "degenerate on that data. Measured instead on the same recipe (classes, per-class counts, source "
             f"images, seed) rendered with {s['frames']} frames per clip and re-encoded with a fixed GOP.", ""
             ] if first else []
    lines += [f"## A keyframe every {s['gop']} frames", "",
              f"Packet scan of the re-encoded clips: {report['data_gop']['structures']}.",
              "", f"Model: {ARCH} from ImageNet weights at {s['size']} px (crop {s['crop']}), {s['segments']} segments, "
             f"{s['epochs']} epochs, batch 8, lr 0.01, seeds {s['seeds']}, {s['threads']} torch thread, one training "
             f"at a time; trained on {s['train_clips']} clips, top-1 on the {s['test_clips']} test clips (last epoch). "
             f"Frames served on a clip: exact {report['frames_served']['exact']}, keyframe "
             f"{report['frames_served']['keyframe']}. Load average during the run: {s['load_average']}.", "",
             "| arm | test top-1 (mean ± std over seeds) | per seed | paired difference vs trained+served exact |",
             "|---|---|---|---|"]
    for name, a in report["summary"].items():
        d = a["paired_diff_vs_exact"]
        lines.append(f"| {name} | {a['mean']:.3f} ± {a['std']:.3f} | {', '.join(f'{v:.3f}' for v in a['seeds'])} | "
                     f"{d['mean']:+.3f} ± {d['std']:.3f} |")
    sp = report["decode"]
    lines += ["", f"### Decode + preprocess per test clip ({sp['clips']} clips x {sp['rounds']} rounds, interleaved, "
              f"1 torch thread, medians)", "", "| sampling | CPU ms | wall ms |", "|---|---|---|"]
    lines += [f"| {k} | {v['cpu_ms']:.2f} | {v['wall_ms']:.2f} |" for k, v in sp["ms"].items()]
    lines += ["", f"Keyframe sampling: {sp['speedup_cpu']:.2f}x less CPU time per clip ({sp['speedup_wall']:.2f}x wall)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path,
                   default=SCRATCH / "fashion_tro-dre-bag-san-sne_80x30x60_f2_s0",
                   help="the trend benchmark's clips (reskd_trend.py writes them)")
    p.add_argument("--work", type=Path, default=SCRATCH / "keyframe_sampling")
    p.add_argument("--frames", type=int, default=16, help="frames per rendered clip (default 16: 2 s at 8 fps)")
    p.add_argument("--gop", type=int, default=8, help="keyframe interval of the re-encoded copy (default 8)")
    p.add_argument("--segments", type=int, default=2, help="TSN segments, as the trend benchmark (default 2)")
    p.add_argument("--size", type=int, default=56)
    p.add_argument("--crop", type=int, default=112)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--rounds", type=int, default=3, help="decode timing rounds over the test clips (default 3)")
    p.add_argument("--results-dir", type=Path, default=RESULTS / "keyframe_sampling")
    p.add_argument("--keep", type=Path, default=None, metavar="JSON",
                   help="reuse the runs of an earlier report of the same setup (only missing seeds are trained)")
    p.add_argument("--tag", default="", help="suffix of the result files (keyframe_sampling<TAG>.json/.md)")
    p.add_argument("--render", type=Path, nargs="+", default=None, metavar="JSON",
                   help="only write keyframe_sampling.md from these finished reports (one section each)")
    args = p.parse_args(argv)
    if args.render:
        reports = [json.loads(f.read_text()) for f in args.render]
        text = "\n".join(markdown(r, first=i == 0) for i, r in enumerate(reports))
        (args.results_dir / "keyframe_sampling.md").write_text(text)
        return 0
    torch.set_num_threads(1)
    args.threads = 1
    args.work.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    stem = args.results_dir / f"keyframe_sampling{args.tag}"

    report: dict[str, Any] = {"complete": False, "source_gop": gop_structure(args.source)}
    data = make_data(args.source, args.work, args.frames, args.gop)
    report["data_gop"] = gop_structure(data)
    kept = {r["name"]: r for r in json.loads(args.keep.read_text())["runs"]} if args.keep else {}
    runs: list[dict[str, Any]] = []
    for seed in seeds:  # the arms alternate, so a change of load hits both
        for keyframes in (False, True):
            name = f"{'keyframe' if keyframes else 'exact'}_s{seed}"
            runs.append(kept.get(name) or train_and_score(data, args.work / f"gop{args.gop}", seed, keyframes, args))
            report["runs"] = runs
            stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    ckpt = runs[0]["name"]
    spec_ckpt = str(args.work / f"gop{args.gop}" / ckpt / "last.ckpt")
    report["frames_served"] = frames_picked(data, spec_ckpt)
    report["decode"] = decode_speed(data, spec_ckpt, args.rounds, limit=300)
    report["summary"] = summarize(runs)
    n_train = len((data / "train.txt").read_text().splitlines())
    n_test = len((data / "test.txt").read_text().splitlines())
    report["setup"] = {"source": args.source.name, "frames": args.frames, "gop": args.gop, "segments": args.segments,
                       "size": args.size, "crop": args.crop, "epochs": args.epochs, "seeds": seeds,
                       "threads": args.threads, "train_clips": n_train, "test_clips": n_test,
                       "load_average": [round(x, 2) for x in os.getloadavg()]}
    report["complete"] = True
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
