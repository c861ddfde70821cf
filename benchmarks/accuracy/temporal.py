"""Distillation where time and detail both matter: garment x motion clips, a 2D temporal family and a 3D family.

1. Labelled clips from ``demo.motion_clips``: 8 frames, 112 px, a Fashion-MNIST sandal or sneaker (straps and
   holes that blur at low resolution) turning clockwise or anticlockwise, approaching or receding, over crops of
   real photographs (train, validation and test backgrounds from different photo files; train items from
   Fashion-MNIST train images, validation and test items from disjoint slices of its test images). Each motion
   is its partner played backwards, so frame order alone separates them: TSN cannot (``--probe`` measures it).
2. Per family (default ``tsm_effnet_lite0``, from the ImageNet weights, and ``r3d_18``, from scratch since no
   video weights install here): a teacher at 112 px (``--teacher-epochs`` per family).
3. The plain 56 px student (``no_kd``) tuned on validation: a grid of learning rates x epochs (``--lr-grid``,
   ``--epoch-grid``) at ``--grid-seeds``; the best mean validation top-1 fixes the budget every arm then gets.
4. For each seed: a ResKD student with the trainer's **defaults** for distillation and a plain student, both
   from the teacher's weights, with the chosen learning rate and epochs, the teacher's 112 px crop
   down-sampled, no horizontal flip (a mirror turns clockwise into anticlockwise). Each is scored after its
   last epoch on validation, and with ``--split test`` (the final run of a fixed configuration only) on the
   sealed test split, one logged look (``benchmarks.protocol``). Paired t-test (same seed) and Welch's test.

A run keeps every trained model in benchmarks/scratch/temporal_runs/ and reuses it when run again (a killed
run resumes mid-model from last.ckpt: the trainer's exact resume), so ``--split test`` after a validation run
trains nothing new and only scores the fixed configuration's models on test.

    python -m benchmarks.accuracy.temporal                          # validation run (choose, compare)
    python -m benchmarks.accuracy.temporal --split test             # the final run: one look at the test split
    python -m benchmarks.accuracy.temporal --probe tsn_effnet_lite0,tsm_effnet_lite0 --probe-epochs 6 --stop-after-epoch 2
    python -m benchmarks.accuracy.temporal --probe-teachers r3d_18 --stop-after-epoch 1   # start the 3D teacher
    python -m benchmarks.accuracy.temporal --quick                  # smoke run (tiny), under benchmarks/scratch/
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

from benchmarks.accuracy.stats import binomial_se, paired, summarize, welch
from benchmarks.accuracy.trend import run_epochs_log, student_train_list
from benchmarks.common import ROOT, SCRATCH, git_commit, parse_with_config, results_dir
from benchmarks.protocol import TEST_LOOKS, add_split_argument, is_test, log_test_look, split_list
from demo.motion_clips import DEFAULT_GARMENTS, DEFAULT_MOTIONS, MOTION_PAIRS, REVERSED, make_motion_clips
from reskd_infer import ModelSpec, build_model
from reskd_infer.bench.machine import machine_info
from reskd_infer.bench.timing import interleave
from reskd_infer.models.efficientnet_lite import IMAGENET_ARCHS
from reskd_infer.runtime.recognizer import Recognizer
from reskd_infer.train import TrainConfig, train
from reskd_infer.train.data import EvalClipDataset, ListLoader
from reskd_infer.train.divergence import replay as guard_replay
from reskd_infer.train.state import STATE_FILE
from reskd_infer.train.trainer import METRICS_FILE

TEST_SET = "temporal_motion_clips"  # the name its looks carry in test_looks.jsonl
OUTPUT = "temporal"
ARMS = ("kd", "plain")  # the comparison: ResKD with the trainer's defaults against the tuned plain student
# Further distilled arms a run may add (trainer settings beside the defaults), each reported against plain:
# feature_only is the trend ablation's leader, which replaces the default only if it also leads here on
# validation (the rule in docs/benchmarks.md).
EXTRA_ARMS: dict[str, dict[str, Any]] = {"feature_only": {"w_logit": 0.0}}
ARM_NAMES = {"kd": "ResKD", "plain": "plain", "feature_only": "feature-only KD"}
FAMILIES = ("tsm_effnet_lite0", "r3d_18")


def parse_mapping(text: str, cast: type = float) -> dict[str, Any]:
    """``"a=1,b=2"`` -> ``{"a": 1, "b": 2}`` (per-family settings)."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        out[key.strip()] = cast(value)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--data-dir", default=str(ROOT / "data"), help="folder with fashion-mnist/ and photos/ (make data)")
    p.add_argument("--garments", default=",".join(DEFAULT_GARMENTS), help="Fashion-MNIST classes, comma-separated")
    p.add_argument("--motions", default=",".join(DEFAULT_MOTIONS), help="motions (demo.motion_clips), comma-separated")
    p.add_argument("--per-class-train", type=int, default=40, help="training clips per garment x motion class")
    p.add_argument("--per-class-val", type=int, default=20, help="validation clips per class")
    p.add_argument("--per-class-test", type=int, default=40, help="test clips per class (scored only with --split test)")
    p.add_argument("--frames", type=int, default=8, help="frames per clip (every one is sampled, in order)")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--families", default=",".join(FAMILIES), help="architectures, comma-separated (teacher = student)")
    p.add_argument("--teacher-size", type=int, default=112)
    p.add_argument("--size", type=int, default=56, help="students' input resolution")
    p.add_argument("--teacher-epochs", default="tsm_effnet_lite0=8,r3d_18=40", help="per family: ARCH=EPOCHS,...")
    p.add_argument("--teacher-lr", default="tsm_effnet_lite0=0.03,r3d_18=0.01",
                   help="per family: ARCH=LR,... (TSM's 0.03: its validation probe learned order at 0.03, not at 0.01)")
    p.add_argument("--teacher-eval-every", type=int, default=1, help="teachers: score validation every N epochs (a curve)")
    p.add_argument("--lr-grid", default="0.003,0.01,0.03", help="plain students' learning rates tried on validation")
    p.add_argument("--epoch-grid", default="5,8", help="plain students' epoch budgets tried on validation")
    p.add_argument("--grid-seeds", default="0", help="seeds of the plain grid (the mean val top-1 chooses)")
    p.add_argument("--kd-lr-grid", default="",
                   help="the distilled arms' own learning rates, tried on validation at the plain budget's epochs "
                        "and --grid-seeds (the best mean chooses); empty: the plain budget's rate for every arm "
                        "(the issue's protocol; TSM's distillation diverges at the rate plain chose, so the "
                        "documented run gives both arms their own validated rate)")
    p.add_argument("--seeds", default="0,1,2,3,4", help="seeds of the compared arms (paired by seed)")
    p.add_argument("--arms", default="kd,plain",
                   help="the arms to train: kd and plain (the default) give the comparison; feature_only adds the "
                        "default without its logit term, reported against plain; a list without kd or plain (e.g. "
                        "kd, or plain) trains only those students and writes a stage file, so two processes can "
                        "share the seeds and the full run then reuses every model")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 on the shared 2-core machine)")
    p.add_argument("--teacher-only", action="store_true",
                   help="train (or resume) the families' teachers and stop: read their validation curve before "
                        "spending the students' compute (writes temporal_teachers.json)")
    p.add_argument("--grid-only", action="store_true",
                   help="train (or reuse) the teachers and the plain students' grid, then stop (writes "
                        "temporal_grid.json); processes given disjoint --lr-grid values fill the grid side by side, "
                        "and the full run then reuses every cell")
    add_split_argument(p)
    p.add_argument("--probe", default="", metavar="ARCHS",
                   help="probe mode: only train these architectures at --teacher-size on validation (e.g. "
                        "tsn_effnet_lite0,tsm_effnet_lite0 to show TSN cannot see order); writes temporal_probe.json")
    p.add_argument("--probe-teachers", default="", metavar="ARCHS",
                   help="probe mode: start these families' real teachers (their full schedule) and stop after "
                        "--stop-after-epoch epochs; a later run resumes them exactly (val curve in temporal_probe.json)")
    p.add_argument("--stop-after-epoch", type=int, default=0,
                   help="probe modes: stop every run after this epoch of its schedule (0: run to the end); a later "
                        "call with the same settings resumes it exactly")
    p.add_argument("--probe-epochs", type=int, default=6, help="probe: epochs per architecture")
    p.add_argument("--probe-eval-every", type=int, default=2, help="probe: score validation every N epochs")
    p.add_argument("--probe-train-per-class", type=int, default=0,
                   help="probe: train on the first N training clips of each class (0: all)")
    p.add_argument("--cost", action="store_true",
                   help="cost mode: time training and scoring steps of every family at both sizes (random clips, "
                        "--threads threads) and estimate the full run's core-hours; writes temporal_cost.json")
    p.add_argument("--quick", action="store_true",
                   help="tiny smoke run: results, models and test looks under benchmarks/scratch/quick (or --results-dir)")
    p.add_argument("--results-dir", default=None, help="where .json/.md go (default benchmarks/results/temporal)")
    p.add_argument("--json", action="store_true", help="print the results JSON on stdout")
    args = parse_with_config(p, argv, "benchmarks.accuracy.temporal")
    if args.quick:
        args.motions, args.per_class_train, args.per_class_val, args.per_class_test = "clockwise,anticlockwise", 2, 1, 1
        args.teacher_size, args.size, args.seeds, args.grid_seeds = 64, 32, "0,1", "0"
        args.teacher_epochs, args.lr_grid, args.epoch_grid = "tsm_effnet_lite0=1,r3d_18=1,tsn_effnet_lite0=1", "0.01", "1"
        args.batch_size, args.workers, args.probe_epochs, args.probe_eval_every = 4, 0, 1, 1
    return args


def clips_dir(args: argparse.Namespace) -> Path:
    """Generate (once per settings) the garment x motion clips; returns their folder."""
    garments = [g.strip() for g in args.garments.split(",") if g.strip()]
    motions = [m.strip() for m in args.motions.split(",") if m.strip()]
    key = (f"motion_g{len(garments)}m{len(motions)}_{args.per_class_train}x{args.per_class_val}x{args.per_class_test}"
           f"_f{args.frames}_s{args.data_seed}" + ("_quick" if args.quick else ""))
    out = SCRATCH / key
    if not (out / "manifest.json").is_file():  # written last: a folder without it is an interrupted generation
        make_motion_clips(out, args.data_dir, garments, motions, args.per_class_train, args.per_class_val,
                          args.per_class_test, args.frames, 112, args.data_seed, progress=True)
    return out


class Runner:
    """Trains (or reuses) one model per name; each row records validation top-1, cost and, on a test run, test top-1."""

    def __init__(self, args: argparse.Namespace, data: Path, out_dir: Path) -> None:
        self.args, self.data, self.t0 = args, data, time.time()
        # A smoke run trains afresh beside its results (a --split test smoke run then reuses that run's models).
        self.runs_dir = out_dir / "temporal_runs" if args.quick else SCRATCH / "temporal_runs"
        self.num_train = len((data / "train.txt").read_text().splitlines())
        self.classes = (data / "classes.txt").read_text().split()
        self.common = dict(train_list=str(data / "train.txt"), val_list=str(data / "val.txt"), data_root=str(data),
                           classes=str(data / "classes.txt"), num_frames=args.frames, frame_interval=1, flip=False,
                           batch_size=args.batch_size, warmup_epochs=0.5, workers=args.workers, progress=False,
                           log_every=1, dataset="garment x motion clips (benchmarks.accuracy.temporal)")

    def fit(self, name: str, stop_after_epoch: int = 0, **cfg: Any) -> dict[str, Any]:
        """Train ``name`` with the common settings and ``cfg`` unless a finished run of the same config exists.

        ``stop_after_epoch`` ends the call early (the schedule still spans ``epochs``): the row comes back with
        ``"partial": true`` and is not stored, so the next call resumes the run exactly from its last.ckpt.
        """
        work = self.runs_dir / name
        done = work / "row.json"
        config = json.loads(json.dumps({**self.common, **cfg}))
        if done.is_file():
            row = json.loads(done.read_text())
            if row["config"] == config:
                # Rows written before the guard existed carry no verdict: replay their step log once here.
                guard = row["guard_stop"] if "guard_stop" in row else self.guard_stop(work)
                return {"epochs_done": len(row["epochs"]), **row, "guard_stop": guard}
            raise SystemExit(f"{work}: trained with another configuration; move it away to retrain")
        start = time.time()
        eval_every = cfg.pop("eval_every", cfg["epochs"])
        # The guard off: a benchmark measures what training to the end gives; guard_stop says if it would stop.
        out = train(TrainConfig(**{**self.common, **cfg}, eval_every=eval_every, work_dir=str(work),
                                resume=(work / STATE_FILE).is_file(), stop_after_epoch=stop_after_epoch,
                                divergence_guard=False))
        epochs = run_epochs_log(str(work))
        train_s = sum(e.get("time_s", 0.0) for e in epochs)
        scored = [e for e in epochs if "val_top1" in e]
        row = {"name": name, "config": config, "last": out["last"],
               "val_top1": float(scored[-1]["val_top1"]) if scored else None,
               "val_curve": [(e["epoch"], e["val_top1"]) for e in scored],
               "train_s": round(train_s, 1), "wall_s": round(time.time() - start, 1),
               "s_per_clip_epoch": round(train_s / max(1, len(epochs)) / self.num_train, 4),
               "train_clips": self.num_train, "epochs_done": len(epochs), "epochs": epochs,
               "guard_stop": self.guard_stop(work)}
        if len(epochs) < cfg["epochs"]:
            return {**row, "partial": True}
        for leftover in ("best.ckpt", STATE_FILE):  # keep last.ckpt only (the reported model; 3D ones are big)
            (work / leftover).unlink(missing_ok=True)
        done.write_text(json.dumps(row, indent=1) + "\n")
        print(f"[{time.time() - self.t0:6.0f}s] {name}: val top-1 {row['val_top1']:.3f} ({row['train_s']:.0f} s, "
              f"{row['s_per_clip_epoch']:.3f} s/clip/epoch)", file=sys.stderr, flush=True)
        return row

    def guard_stop(self, work: Path) -> str | None:
        """Where the trainer's divergence guard (off in benchmarks) would have stopped this run, or None."""
        with open(work / METRICS_FILE, encoding="utf-8") as fh:
            return guard_replay((json.loads(line) for line in fh), len(self.classes))

    def factors(self, row: dict[str, Any]) -> dict[str, float]:
        """:func:`order_metrics` of the model on the run's split, kept beside the model (a rerun reuses them)."""
        cache = Path(row["last"]).parent / f"factors_{self.args.split}.json"
        if cache.is_file():
            return json.loads(cache.read_text())
        listing = split_list(self.data, self.args.split) if is_test(self.args.split) else self.data / "val.txt"
        factors = order_metrics(row["last"], listing, self.data, self.args.workers)
        cache.write_text(json.dumps(factors) + "\n")
        return factors

    def test_top1(self, row: dict[str, Any]) -> float:
        """The model's top-1 on the sealed test split (callers only reach this with --split test): the factors'
        pass, which scores every test clip through the Recognizer as ``reskd-eval`` does, so the split is read
        once per model."""
        return float(self.factors(row)["top1"])


def teacher_run(r: Runner, arch: str, stop_after_epoch: int = 0) -> dict[str, Any]:
    """The family's 112 px teacher: ImageNet init for Lite0, from scratch otherwise; validation every few epochs."""
    args = r.args
    init = {"pretrained_imagenet": True} if arch in IMAGENET_ARCHS else {}
    epochs = int(parse_mapping(args.teacher_epochs)[arch])
    return r.fit(f"{arch}/teacher_{args.teacher_size}", stop_after_epoch, arch=arch, input_size=args.teacher_size,
                 epochs=epochs, eval_every=min(args.teacher_eval_every, epochs),
                 lr=parse_mapping(args.teacher_lr).get(arch, 0.01), seed=0, **init)


def student_run(r: Runner, arch: str, teacher: dict[str, Any], arm: str, lr: float, epochs: int,
                seed: int) -> dict[str, Any]:
    """A 56 px student from the teacher's weights: ``kd`` (the trainer's distillation defaults), ``plain`` or one
    of :data:`EXTRA_ARMS`."""
    args = r.args
    common = dict(arch=arch, input_size=args.size, lr=lr, epochs=epochs, seed=seed, teacher=teacher["last"],
                  init_from_teacher=True)
    extra = {"no_kd": True, "crop_size": args.teacher_size} if arm == "plain" else EXTRA_ARMS.get(arm, {})
    return r.fit(f"{arch}/{arm}_{args.size}_lr{lr:g}_e{epochs}_s{seed}", **common, **extra)


def choose_plain_budget(r: Runner, arch: str, teacher: dict[str, Any]) -> dict[str, Any]:
    """The plain student's learning rate and epochs with the best mean validation top-1 over the grid seeds."""
    args = r.args
    grid = []
    for lr in (float(v) for v in args.lr_grid.split(",")):
        for epochs in (int(v) for v in args.epoch_grid.split(",")):
            rows = [student_run(r, arch, teacher, "plain", lr, epochs, int(s)) for s in args.grid_seeds.split(",")]
            grid.append({"lr": lr, "epochs": epochs, "val_top1_mean": round(statistics.fmean(x["val_top1"] for x in rows), 4),
                         "val_seeds": [x["val_top1"] for x in rows]})
    best = max(grid, key=lambda g: (g["val_top1_mean"], -g["epochs"], -g["lr"]))  # ties: the cheaper, gentler one
    return {"grid": grid, "lr": best["lr"], "epochs": best["epochs"]}


def choose_kd_lr(r: Runner, arch: str, teacher: dict[str, Any], budget: dict[str, Any]) -> dict[str, Any]:
    """The distilled arms' budget: the plain budget, or with --kd-lr-grid the rate of best mean validation top-1
    at the plain epochs over the grid seeds (the default distillation trained at each)."""
    args = r.args
    if not args.kd_lr_grid:
        return {"lr": budget["lr"], "epochs": budget["epochs"], "grid": []}
    grid = []
    for lr in (float(v) for v in args.kd_lr_grid.split(",")):
        rows = [student_run(r, arch, teacher, "kd", lr, budget["epochs"], int(s)) for s in args.grid_seeds.split(",")]
        grid.append({"lr": lr, "epochs": budget["epochs"], "val_seeds": [x["val_top1"] for x in rows],
                     "val_top1_mean": round(statistics.fmean(x["val_top1"] for x in rows), 4),
                     "guard_stop": [x["guard_stop"] for x in rows]})
    best = max(grid, key=lambda g: (g["val_top1_mean"], -g["lr"]))  # ties: the gentler rate
    return {"lr": best["lr"], "epochs": budget["epochs"], "grid": grid}


def arm_budget(arm: str, plain: dict[str, Any], kd: dict[str, Any]) -> tuple[float, int]:
    """(lr, epochs) of an arm: plain's own, or the distilled arms' (kd and the further distilled arms)."""
    chosen = plain if arm == "plain" else kd
    return chosen["lr"], chosen["epochs"]


def family_result(r: Runner, arch: str) -> dict[str, Any]:
    """Teacher, the plain budget chosen on validation, and both arms over the seeds (test only with --split test)."""
    args = r.args
    teacher = teacher_run(r, arch)
    if args.teacher_only:
        return {"arch": arch, "teacher": {**_teacher_summary(args, teacher), "val_curve": teacher["val_curve"]}}
    budget = choose_plain_budget(r, arch, teacher)
    if args.grid_only:
        return {"arch": arch, "input_size": args.size, "teacher": _teacher_summary(args, teacher),
                "plain_budget": budget}
    kd_budget = choose_kd_lr(r, arch, teacher, budget)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = {arm: [student_run(r, arch, teacher, arm, *arm_budget(arm, budget, kd_budget), s) for s in seeds]
            for arm in _names(args.arms)}
    if not set(ARMS) <= set(rows):  # some arms' students only: a stage of a parallel run, no comparison
        return {"arch": arch, "input_size": args.size, "teacher": _teacher_summary(args, teacher),
                "plain_budget": budget, "kd_budget": kd_budget, "seed_ids": seeds,
                **{arm: summarize([x["val_top1"] for x in arm_rows]) for arm, arm_rows in rows.items()}}
    scored = "top1" if is_test(args.split) else "val_top1"
    if is_test(args.split):
        for row in [teacher, *rows["kd"], *rows["plain"]]:
            row["top1"] = r.test_top1(row)
    out: dict[str, Any] = {"arch": arch, "input_size": args.size,
                           "teacher": _teacher_summary(args, teacher),
                           "plain_budget": budget, "kd_budget": kd_budget, "seed_ids": seeds}
    for arm, arm_rows in rows.items():
        out[arm] = summarize([x[scored] for x in arm_rows], [x["val_top1"] for x in arm_rows])
        out[arm]["lr"], out[arm]["epochs"] = arm_budget(arm, budget, kd_budget)
        out[arm]["train_s"] = [x["train_s"] for x in arm_rows]
        out[arm]["guard_stop"] = [x["guard_stop"] for x in arm_rows]
        out[arm]["factors"] = mean_factors([r.factors(x) for x in arm_rows])
        if arm in EXTRA_ARMS:
            out[arm]["paired_vs_plain"] = paired(out[arm]["seeds"], out["plain"]["seeds"])
            out[arm]["welch_vs_plain"] = welch(out[arm]["seeds"], out["plain"]["seeds"])
    out["teacher"]["factors"] = r.factors(teacher)
    pair, w = paired(out["kd"]["seeds"], out["plain"]["seeds"]), welch(out["kd"]["seeds"], out["plain"]["seeds"])
    out.update({"paired": pair, "welch": w, "paired_p": pair and pair["p_two_sided"], "welch_p": w and w["p_two_sided"]})
    return out


def mean_factors(rows: list[dict[str, float]]) -> dict[str, float]:
    """The seeds' mean of each :func:`order_metrics` figure."""
    return {k: round(statistics.fmean(x[k] for x in rows), 4) for k in ("top1", "garment", "motion_pair", "order")}


def _teacher_summary(args: argparse.Namespace, teacher: dict[str, Any]) -> dict[str, Any]:
    """The teacher's entry in the results: size, test top-1 (a test run only), val top-1, epochs and cost."""
    return {"input_size": args.teacher_size, "top1": teacher.get("top1"), "val_top1": teacher["val_top1"],
            "epochs": teacher["config"]["epochs"], "train_s": teacher["train_s"],
            "s_per_clip_epoch": teacher["s_per_clip_epoch"]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    data = clips_dir(args)
    out_dir = results_dir(OUTPUT, args.quick, args.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    r = Runner(args, data, out_dir)
    if args.cost:
        result = cost(r, out_dir / f"{OUTPUT}_cost.json")
    elif args.probe or args.probe_teachers:
        if is_test(args.split):
            raise SystemExit("--probe and --probe-teachers run on validation only")
        result = probe(r, _names(args.probe), _names(args.probe_teachers), out_dir / f"{OUTPUT}_probe.json")
    else:
        if (args.teacher_only or args.grid_only or _stage_arm(args)) and is_test(args.split):
            raise SystemExit("--teacher-only, --grid-only and --arms without kd or plain (a stage) run on validation only")
        stage = "_teachers" if args.teacher_only else "_grid" if args.grid_only else _stage_arm(args)
        result = full_run(r, out_dir / f"{OUTPUT}{stage}.json")
    print(json.dumps(result, indent=1) if args.json else markdown(result))
    return 0


def _stage_arm(args: argparse.Namespace) -> str:
    """``_kd``, ``_plain``, ``_feature_only``... when --arms leaves out kd or plain (a stage of a parallel run),
    else empty (the comparison, with any further arms beside it)."""
    arms = _names(args.arms)
    if not arms or set(arms) - {*ARMS, *EXTRA_ARMS}:
        raise SystemExit(f"--arms: expected some of {', '.join([*ARMS, *EXTRA_ARMS])}, got {args.arms!r}")
    return "" if set(ARMS) <= set(arms) else "_" + "_".join(dict.fromkeys(arms))


def setup(r: Runner) -> dict[str, Any]:
    args = r.args
    manifest = json.loads((r.data / "manifest.json").read_text())["settings"]
    return {"clips": {k: manifest[k] for k in ("garments", "motions", "classes", "per_class_train", "per_class_val",
                                               "per_class_test", "size", "photos")},
            "train_clips": r.num_train, "frames": args.frames, "batch_size": args.batch_size, "threads": args.threads,
            "flip": False, "students_init": "the teacher's weights (--init-from-teacher, both arms)",
            "distillation": "the trainer's defaults", "quick": args.quick, "machine": machine_info()}


def full_run(r: Runner, path: Path) -> dict[str, Any]:
    """Every family in turn; the JSON is rewritten after each one (``complete`` false until the end)."""
    args = r.args
    result: dict[str, Any] = {"complete": False, "split": args.split, "commit": git_commit(), "frames": args.frames,
                              "setup": setup(r), "families": []}
    for arch in (a.strip() for a in args.families.split(",") if a.strip()):
        result["families"].append(family_result(r, arch))
        result["teacher"] = {k: result["families"][0]["teacher"][k] for k in ("input_size", "top1", "val_top1")}
        path.write_text(json.dumps(result, indent=1) + "\n")
    if is_test(args.split):
        n_test = len(split_list(r.data, "test").read_text().splitlines())
        for fam in result["families"]:
            fam["test_binomial_se"] = binomial_se(fam["plain"]["top1_mean"], n_test)
        figures = {f["arch"]: {"teacher": f["teacher"]["top1"], "kd": f["kd"]["seeds"], "plain": f["plain"]["seeds"],
                               **{a: f[a]["seeds"] for a in EXTRA_ARMS if a in f},
                               "paired_p": f["paired_p"], "welch_p": f["welch_p"]} for f in result["families"]}
        looks = path.parent / "test_looks.jsonl" if args.quick else TEST_LOOKS  # a smoke run's looks stay beside it
        config = {k: getattr(args, k) for k in ("families", "teacher_size", "size", "teacher_epochs", "teacher_lr",
                                                  "lr_grid", "epoch_grid", "grid_seeds", "kd_lr_grid", "seeds",
                                                  "per_class_train", "arms")}
        # The motion clips' test split is its own test set: its looks count apart from the Fashion clips' splits.
        result["test_looks"] = log_test_look(OUTPUT, args.split, config, figures, looks, name=TEST_SET)
    result["setup"]["elapsed_s"] = round(time.time() - r.t0, 1)
    result["complete"] = True
    path.write_text(json.dumps(result, indent=1) + "\n")
    path.with_suffix(".md").write_text(markdown(result))
    if not (args.teacher_only or args.grid_only or _stage_arm(args)):
        plot_paired(result, path.with_name(f"{path.stem}_paired.png"))
    return result


def plot_paired(r: dict[str, Any], path: Path) -> None:
    """Per family, ResKD minus plain for every seed (the paired test's data) and their mean; on a test run the
    split's binomial SE of one model as a band around zero."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = r["families"]
    fig, axes = plt.subplots(1, len(families), figsize=(max(4, 3.5 * len(families)), 3.6), sharey=True, squeeze=False)
    for ax, fam in zip(axes[0], families, strict=True):
        diffs = [k - p for k, p in zip(fam["kd"]["seeds"], fam["plain"]["seeds"], strict=True)]
        ax.scatter(range(len(diffs)), diffs, alpha=0.7)
        ax.axhline(statistics.fmean(diffs), color="k", label=f"mean {statistics.fmean(diffs):+.3f}")
        if fam.get("test_binomial_se"):
            se = fam["test_binomial_se"]
            ax.axhspan(-se, se, color="0.85", zorder=0, label="± binomial SE of one model")
        ax.axhline(0.0, color="0.4", linewidth=0.8)
        ax.set_xticks(range(len(diffs)), [f"s{s}" for s in fam["seed_ids"]])
        ax.set_xlim(-0.5, len(diffs) - 0.5)
        ax.set_title(f"{fam['arch']}, {fam['input_size']} px", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel(f"ResKD minus plain, same seed ({r['split']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def order_metrics(artifact: str | Path, clip_list: Path, data: Path, workers: int) -> dict[str, float]:
    """What a model gets right on ``clip_list`` (validation), factor by factor.

    ``garment``: the garment right; ``motion_pair``: rotation vs size change right; ``order``: the share of clips
    whose own class scores above its time-reversed partner (same garment, the motion played backwards). An
    order-blind network (TSN's frame average) sees a clip and its partner as the same frames, so its ``order``
    sits at 0.5 up to sampling noise; only a model that reads frame order can rise above it.
    """
    names = (data / "classes.txt").read_text().split()
    partner = {i: names.index(f"{n.split('/')[0]}/{({**MOTION_PAIRS, **REVERSED})[n.split('/')[1]]}")
               for i, n in enumerate(names)}
    with Recognizer(artifact, device="cpu") as rec:
        dataset = EvalClipDataset(clip_list, data, rec.spec)
        loader = ListLoader(dataset, batch_size=8, shuffle=False, num_workers=workers)
        probs, targets = [], []
        for views, target in loader:
            probs.append(rec.probabilities_of_batch(views.flatten(0, 1)))
            targets.extend(int(t) for t in target)
    scores = np.concatenate(probs)
    pred = scores.argmax(1)
    garment = [names[p].split("/")[0] == names[t].split("/")[0] for p, t in zip(pred, targets, strict=True)]
    pair = [names[p].split("/")[1] in (names[t].split("/")[1], names[partner[t]].split("/")[1])
            for p, t in zip(pred, targets, strict=True)]
    order = [scores[i, t] > scores[i, partner[t]] for i, t in enumerate(targets)]
    return {"top1": float(np.mean(pred == np.array(targets))), "garment": round(float(np.mean(garment)), 4),
            "motion_pair": round(float(np.mean(pair)), 4), "order": round(float(np.mean(order)), 4),
            "clips": len(targets)}


def _names(text: str) -> list[str]:
    return [a.strip() for a in text.split(",") if a.strip()]


def probe(r: Runner, archs: list[str], teachers: list[str], path: Path) -> dict[str, Any]:
    """Validation only: can each architecture learn the task at 112 px, and what does an epoch cost? ``archs``
    get a short run each; ``teachers`` are the full run's teachers, started and stopped early (resumable)."""
    args = r.args
    result = json.loads(path.read_text()) if path.is_file() else {}
    result.update({"probe": True, "split": "val", "commit": git_commit(), "frames": args.frames, "setup": setup(r)})
    train_list = r.data / "train.txt"
    if args.probe_train_per_class:
        train_list = student_train_list(r.data, args.probe_train_per_class)
        r.num_train = len(train_list.read_text().splitlines())
    runs = result.setdefault("runs", {})
    for arch in archs:
        init = {"pretrained_imagenet": True} if arch in IMAGENET_ARCHS else {}
        lr = parse_mapping(args.teacher_lr).get(arch, 0.01)
        tag = "" if lr == 0.01 else f"_lr{lr:g}"  # the first probes ran at 0.01 and carry no tag
        row = r.fit(f"probe/{arch}_{args.teacher_size}_e{args.probe_epochs}_n{r.num_train}{tag}", args.stop_after_epoch,
                    arch=arch,
                    input_size=args.teacher_size, epochs=args.probe_epochs, eval_every=args.probe_eval_every,
                    lr=lr, seed=0, train_list=str(train_list), **init)
        runs[f"{arch}@{args.teacher_size}{tag.replace('_', ' ')}"] = {k: row[k] for k in ("val_top1", "val_curve", "train_s", "s_per_clip_epoch",
                                                                    "train_clips", "epochs_done")} | {
            "epochs": args.probe_epochs, "init": "imagenet" if init else "scratch", "lr": row["config"]["lr"],
            "partial": bool(row.get("partial")),
            "val_factors": order_metrics(row["last"], r.data / "val.txt", r.data, args.workers)}
        path.write_text(json.dumps(result, indent=1) + "\n")
    for arch in teachers:
        row = teacher_run(r, arch, args.stop_after_epoch)
        result.setdefault("teachers", {})[f"{arch}@{args.teacher_size}"] = {
            k: row[k] for k in ("val_top1", "val_curve", "train_s", "s_per_clip_epoch", "train_clips", "epochs_done")
        } | {"epochs": row["config"]["epochs"], "lr": row["config"]["lr"], "partial": bool(row.get("partial")),
             "init": "imagenet" if arch in IMAGENET_ARCHS else "scratch"}
        path.write_text(json.dumps(result, indent=1) + "\n")
    path.with_suffix(".md").write_text(markdown(result))
    return result


def step_seconds(arch: str, size: int, frames: int, num_classes: int, batch: int, steps: int = 3) -> dict[str, float]:
    """Median CPU seconds per clip of a training step (SGD, cross-entropy) and of an eval forward, random clips.

    CPU time, not wall time: on the shared machine a single-threaded step's CPU time is its cost, its wall
    time also holds the waiting for a core (``reskd_infer.bench.timing.interleave`` records both)."""
    spec = ModelSpec(arch=arch, class_names=[f"c{i}" for i in range(num_classes)], num_frames=frames, input_size=size)
    model = build_model(spec).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 3, frames, size, size), torch.randint(0, num_classes, (batch,))

    def train_step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    train_s = interleave({"train": train_step}, steps, warmup=1).cpu["train"]
    model.eval()
    with torch.no_grad():
        eval_s = interleave({"eval": lambda: model(x)}, steps, warmup=1).cpu["eval"]
    return {"train": round(statistics.median(train_s) / batch, 4), "eval": round(statistics.median(eval_s) / batch, 4)}


def full_run_estimate(args: argparse.Namespace, arch: str, t: dict[str, float], s: dict[str, float], n_train: int,
                      n_val: int, n_test: int) -> dict[str, Any]:
    """Core-seconds of one family's full run from per-clip step costs ``t`` (teacher size) and ``s`` (student)."""
    teacher_epochs = int(parse_mapping(args.teacher_epochs)[arch])
    grid = [(float(lr), int(e)) for lr in args.lr_grid.split(",") for e in args.epoch_grid.split(",")]
    grid_epochs = sum(e for _, e in grid) * len(args.grid_seeds.split(","))
    chosen = max(int(e) for e in args.epoch_grid.split(","))  # the dearer budget: an upper bound
    seeds = len(args.seeds.split(","))
    parts = {"teacher": n_train * teacher_epochs * t["train"] + n_val * teacher_epochs * t["eval"],
             "plain_grid": n_train * grid_epochs * s["train"] + len(grid) * n_val * s["eval"],
             # ResKD steps also run the teacher forward at its size on every clip.
             "kd_seeds": seeds * (n_train * chosen * (s["train"] + t["eval"]) + n_val * s["eval"]),
             "plain_seeds": (seeds - 1) * (n_train * chosen * s["train"] + n_val * s["eval"]),  # seed 0 is a grid run
             "test_scoring": n_test * (t["eval"] + 2 * seeds * s["eval"])}
    return {"core_seconds": {k: round(v) for k, v in parts.items()}, "core_hours": round(sum(parts.values()) / 3600, 2),
            "assumes": f"teacher {teacher_epochs} epochs, grid {len(grid)} budgets x seed(s) {args.grid_seeds}, "
                       f"{seeds} seeds per arm at the grid's longest budget ({chosen} epochs), {n_train} train / "
                       f"{n_val} val / {n_test} test clips"}


def cost(r: Runner, path: Path) -> dict[str, Any]:
    """Measured step costs of every family and the full run's estimate (its own file: probes run beside it)."""
    args = r.args
    result: dict[str, Any] = {"commit": git_commit(), "frames": args.frames, "setup": setup(r)}
    n_val = len((r.data / "val.txt").read_text().splitlines())
    n_test = args.per_class_test * len(r.classes)  # from the settings: the test list itself is not opened
    families = {}
    for arch in _names(args.families):
        load = os.getloadavg()[0]
        t = step_seconds(arch, args.teacher_size, args.frames, len(r.classes), args.batch_size)
        s = step_seconds(arch, args.size, args.frames, len(r.classes), args.batch_size)
        families[arch] = {"teacher_size": args.teacher_size, "student_size": args.size,
                          "s_per_clip": {str(args.teacher_size): t, str(args.size): s}, "load_average_1min": load,
                          "full_run": full_run_estimate(args, arch, t, s, r.num_train, n_val, n_test)}
        print(f"{arch}: {families[arch]}", file=sys.stderr, flush=True)
    result["cost"] = {"threads": args.threads, "batch": args.batch_size, "families": families,
                      "total_core_hours": round(sum(f["full_run"]["core_hours"] for f in families.values()), 2),
                      "note": "CPU seconds of random clips through the network (no decoding); the shared "
                              "machine's load average (1 min) is recorded per family"}
    path.write_text(json.dumps(result, indent=1) + "\n")
    path.with_suffix(".md").write_text(markdown(result))
    return result




def markdown_cost(r: dict[str, Any], head: str) -> str:
    c = r["cost"]
    lines = ["# Temporal task: measured cost and the full run's estimate", "", head, "",
             f"Measured cost (batch {c['batch']}, {c['threads']} thread(s), {c['note']}):", "",
             "| family | train s/clip (teacher px) | eval s/clip (teacher px) | train s/clip (student px) | "
             "eval s/clip (student px) | load avg | full run, core-hours |", "|---|---|---|---|---|---|---|"]
    for arch, f in c["families"].items():
        t, s = f["s_per_clip"][str(f["teacher_size"])], f["s_per_clip"][str(f["student_size"])]
        lines.append(f"| {arch} | {t['train']:.3f} ({f['teacher_size']}) | {t['eval']:.3f} | {s['train']:.3f} "
                     f"({f['student_size']}) | {s['eval']:.3f} | {f['load_average_1min']:.1f} | "
                     f"{f['full_run']['core_hours']:.1f} |")
    lines += ["", f"Full run, both families: about **{c['total_core_hours']:.1f} core-hours** on this machine "
                  f"({next(iter(c['families'].values()))['full_run']['assumes']})."]
    return "\n".join(lines + [""])


def markdown(r: dict[str, Any]) -> str:
    s = r["setup"]
    head = (f"{s['train_clips']} training clips of {len(s['clips']['classes'])} classes "
            f"({', '.join(s['clips']['garments'])} x {', '.join(s['clips']['motions'])}), {r['frames']} frames; "
            f"{s['threads']} CPU thread(s) on {s['machine'].get('cpu', '?')}; code {r.get('commit', '?')}."
            + (" **Quick smoke run: not a result.**" if s["quick"] else ""))
    if r.get("probe"):
        lines = ["# Temporal task: feasibility probe (validation split only, never test)", "", head, "",
                 "| architecture | init | train clips | epochs | val top-1 by epoch | final val top-1 | garment / "
                 "motion pair / order right (val, final model) | wall s per clip-epoch (shared machine) |",
                 "|---|---|---|---|---|---|---|---|"]
        for name, run in r.get("runs", {}).items():
            curve = ", ".join(f"{e}: {v:.3f}" for e, v in run["val_curve"])
            done = f"{run['epochs_done']} of a {run['epochs']}-epoch schedule" if run["partial"] else run["epochs"]
            f = run.get("val_factors") or {}
            factors = f"{f['garment']:.3f} / {f['motion_pair']:.3f} / {f['order']:.3f}" if f else "n/a"
            lines.append(f"| {name} | {run['init']} | {run['train_clips']} | {done} | {curve} | "
                         f"**{run['val_top1']:.3f}** | {factors} | {run['s_per_clip_epoch']:.3f} |")
        for name, run in r.get("teachers", {}).items():
            curve = ", ".join(f"{e}: {v:.3f}" for e, v in run["val_curve"]) or "not scored yet"
            done = f"{run['epochs_done']} of {run['epochs']}" + (" (stopped, resumable)" if run["partial"] else "")
            last = f"{run['val_top1']:.3f}" if run["val_top1"] is not None else "n/a"
            lines.append(f"| {name} (full-run teacher) | {run['init']} | {run['train_clips']} | {done} | {curve} | "
                         f"**{last}** | n/a | {run['s_per_clip_epoch']:.3f} |")
        lines += ["", "Order right: the share of validation clips whose own class scores above its time-reversed partner "
                      "(same garment, motion played backwards): 0.5 for any order-blind model such as TSN, whose expected top-1 "
                      "is at most 0.5. Wall times include decoding and the waiting of a machine "
                      "shared by several jobs (temporal_cost.json has CPU seconds)."]
        return "\n".join(lines + [""])
    if "cost" in r:
        return markdown_cost(r, head)
    key = "top1" if is_test(r["split"]) else "val_top1"
    if any("plain_budget" not in f for f in r["families"]):  # --teacher-only
        return "\n".join(["# Temporal task: the teachers (validation)", "", head, "",
                           "| family | epochs | val top-1 by epoch |", "|---|---|---|"] +
                          [f"| {f['arch']} | {f['teacher']['epochs']} | "
                           + ", ".join(f"{e}: {v:.3f}" for e, v in f["teacher"]["val_curve"]) + " |"
                           for f in r["families"]] + [""])
    if any("kd" not in f or "plain" not in f for f in r["families"]):  # --grid-only, or one arm's stage
        return markdown_grid(r, head)
    return markdown_comparison(r, head, key)


def markdown_comparison(r: dict[str, Any], head: str, key: str) -> str:
    """The full run: per family the teacher, both arms (mean ± std, validation mean), the tests, every seed, and
    the plain grid that chose the budget."""
    test = is_test(r["split"])
    lines = [f"# Temporal task: ResKD vs tuned plain students ({r['split']} split)", "", head, "",
             f"| family | teacher {r['teacher']['input_size']} px | px | lr ResKD / plain, epochs | ResKD | plain | "
             "ResKD - plain | paired p | "
             "Welch p | val: ResKD / plain |", "|---|---|---|---|---|---|---|---|---|---|"]
    for f in r["families"]:
        kd, pl = f["kd"], f["plain"]
        kd_lr = f.get("kd_budget", f["plain_budget"])["lr"]
        lines.append(f"| {f['arch']} | {f['teacher'][key]:.3f} | {f['input_size']} | {kd_lr:g} / "
                     f"{f['plain_budget']['lr']:g}, {f['plain_budget']['epochs']} | "
                     f"{kd['top1_mean']:.3f} ± {kd['top1_std']:.3f} | "
                     f"{pl['top1_mean']:.3f} ± {pl['top1_std']:.3f} | {kd['top1_mean'] - pl['top1_mean']:+.3f} | "
                     f"{_p(f['paired_p'])} | {_p(f['welch_p'])} | "
                     f"{kd.get('val_top1_mean', float('nan')):.3f} / {pl.get('val_top1_mean', float('nan')):.3f} |")
    lines += _extra_arm_lines(r)
    lines += ["", f"Per seed ({r['split']} top-1; the paired test pairs the columns):", "",
              "| family | arm | " + " | ".join(f"seed {s}" for s in r["families"][0]["seed_ids"]) + " |",
              "|---|---|" + "---|" * len(r["families"][0]["seed_ids"])]
    for f in r["families"]:
        for arm in _arms_of(f):
            lines.append(f"| {f['arch']} | {ARM_NAMES[arm]} | " + " | ".join(f"{v:.3f}" for v in f[arm]["seeds"]) + " |")
    lines += ["", f"What each model gets right ({r['split']}; students: mean over seeds): the garment, the motion pair "
              "(turning vs approaching/receding) and the order (its own class above its time-reversed partner; 0.5 "
              "for an order-blind model):", "", "| family | model | garment | motion pair | order |", "|---|---|---|---|---|"]
    for f in r["families"]:
        for name, fx in (("teacher", f["teacher"]["factors"]), *((ARM_NAMES[a], f[a]["factors"]) for a in _arms_of(f))):
            lines.append(f"| {f['arch']} | {name} | {fx['garment']:.3f} | {fx['motion_pair']:.3f} | {fx['order']:.3f} |")
    notes = [_budget_note(r), *_guard_notes(r)]
    if test:
        ses = ", ".join(f"{f['arch']} {f['test_binomial_se']:.3f}" for f in r["families"])
        notes.append(f"Test split: the sealed `{TEST_SET}` test clips, look {r.get('test_looks', '?')} at that split "
                     f"(benchmarks/results/test_looks.jsonl); binomial SE of one model at the plain mean: {ses}.")
    else:
        notes.append("Validation only: no test clip was scored.")
    grid = markdown_grid(r, head).split("\n")[4:]
    paragraphs = [line for note in notes for line in ("", note)]  # one markdown paragraph per note
    return "\n".join(lines + [*paragraphs, "", "The students' grids (validation, grid seeds; chosen in bold):", "",
                              *grid])


def _budget_note(r: dict[str, Any]) -> str:
    """How the arms' budgets were chosen: the plain one for all, or each arm's own validated rate."""
    note = ("Every arm starts from the teacher's weights; ResKD is the trainer's default distillation; ± is the std "
            "over seeds. ")
    if any(f.get("kd_budget", {}).get("grid") for f in r["families"]):
        return note + ("Each arm trains the epochs the plain grid chose, at its own learning rate chosen on "
                       "validation: plain's from its grid, the distilled arms' from the rates in their grid below "
                       "(a subset of plain's, so the baseline was tuned at least as widely).")
    return note + "Every arm gets the budget the plain grid chose on validation."


def _guard_notes(r: dict[str, Any]) -> list[str]:
    """Students the trainer's divergence guard (off in benchmarks) would have stopped."""
    notes = []
    for f in r["families"]:
        for arm in _arms_of(f):
            hits = [(s, g) for s, g in zip(f["seed_ids"], f[arm].get("guard_stop", []), strict=False) if g]
            notes += [f"{f['arch']} {ARM_NAMES[arm]} seed {s}: the divergence guard would have stopped it ({g})."
                      for s, g in hits]
    return notes


def _arms_of(family: dict[str, Any]) -> list[str]:
    return [a for a in (*ARMS, *EXTRA_ARMS) if a in family]


def _extra_arm_lines(r: dict[str, Any]) -> list[str]:
    """The further distilled arms against plain (same seeds), when the run had any."""
    rows = [(f, a) for f in r["families"] for a in EXTRA_ARMS if a in f]
    if not rows:
        return []
    extra = ["", "Further arms against the same plain students (same budget and seeds):", "",
             "| family | arm | mean | - plain | paired p | Welch p | val mean |", "|---|---|---|---|---|---|---|"]
    for f, a in rows:
        v, pl, pair, w = f[a], f["plain"], f[a]["paired_vs_plain"], f[a]["welch_vs_plain"]
        extra.append(f"| {f['arch']} | {ARM_NAMES[a]} | {v['top1_mean']:.3f} ± {v['top1_std']:.3f} | "
                     f"{v['top1_mean'] - pl['top1_mean']:+.3f} | {_p(pair and pair['p_two_sided'])} | "
                     f"{_p(w and w['p_two_sided'])} | {v.get('val_top1_mean', float('nan')):.3f} |")
    return extra


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def markdown_grid(r: dict[str, Any], head: str) -> str:
    """The plain students' grid per family (validation), the chosen budget in bold."""
    lines = ["# Temporal task: the students' budgets, chosen on validation", "", head, "",
             "| family | teacher val top-1 | arm | lr | epochs | val top-1 per grid seed | mean |",
             "|---|---|---|---|---|---|---|"]
    for f in r["families"]:
        for arm, budget in (("plain", f["plain_budget"]), ("ResKD", f.get("kd_budget", {"grid": []}))):
            for cell in budget["grid"]:
                chosen = (cell["lr"], cell["epochs"]) == (budget["lr"], budget["epochs"])
                mean = f"**{cell['val_top1_mean']:.3f}**" if chosen else f"{cell['val_top1_mean']:.3f}"
                stopped = " (diverged: the guard would stop it)" * any(cell.get("guard_stop", []))
                lines.append(f"| {f['arch']} | {f['teacher']['val_top1']:.3f} | {arm} | {cell['lr']:g} | "
                             f"{cell['epochs']} | " + ", ".join(f"{v:.3f}" for v in cell["val_seeds"])
                             + f"{stopped} | {mean} |")
    return "\n".join(lines + [""])


if __name__ == "__main__":
    raise SystemExit(main())
