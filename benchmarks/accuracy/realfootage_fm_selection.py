"""Function matching for the label-free recipe of the realfootage benchmark: validation-only runs.

Never reads the test files. The committed recipe caches the teacher's outputs once, on one fixed view of
every training frame, so the student sees the same points every epoch. Function matching (Beyer et al.
2022, "Knowledge distillation: A good teacher is patient and consistent") feeds teacher and student the
SAME augmented view (random resized crop, flip, optionally mixup of two frames), fresh views per epoch.
Cheap form used here: ``--views`` K augmented view sets of the training frames
(``demo.label_free.teacher_views``, the teacher's maps and logits cached on each), epoch ``e``
training on set ``e % K`` (``distill(epoch_views=...)``). Every arm has the same data, the same batch
order, the same SGD-step budget (training frames x epochs / batch 32) and the same calibration of the
logit scale on the un-augmented frames.

Data: exactly the benchmark's defaults (:func:`demo.label_free.train_parts` with the extra
photos, 8 pan/zoom clips x 4 frames per photo drawn with seed 0, Megamind.avi every 5th frame, the 180
film keyframes; validation: 8 pan/zoom clips x 4 frames over each VAL_PHOTOS file, seed 1, and
vtest.avi every 8th frame). Variants (``variants`` of ``benchmarks/configs/realfootage_fm_selection.yaml``):

* ``base``: the committed recipe (cached centre views, lr 0.0003, standardised map term w 1 + logit KD
  T 2); its seed-0 validation figures in benchmarks/results/realfootage/realfootage.md were 0.183 / KL 1.54;
* ``fm``: the same objective on the cycled augmented view sets;
* ``fm_logit``: the same views, logit KD only (feature weight 0);
* ``fm_mix``: fm's views (same crop boxes and flips) with half of them mixed up with another frame's
  view (lam ~ Beta(1, 1));
* ``fm_lr1e-3``, ``fm_t1``: fm at lr 0.001, fm at temperature 1;
* ``base_logit``: the cached centre views, logit KD only (separates the two changes of fm_logit).

Rule, stated before the run: a variant is worth a test-file run only if its validation top-1 agreement
beats base by more than 0.03 AND its validation KL is lower.

One JSON line per variant is appended to ``benchmarks/scratch/reskd_realfootage_fm_selection.jsonl``
as it finishes; the collected runs are (re)written after every variant to
``benchmarks/results/realfootage_fm_selection/realfootage_fm_selection.json`` (``"complete": false``
until the last one). Kept as code because the parent trains one recipe and scores the test files; this one
trains several on cached view sets and reads only the validation files.

    python -m benchmarks.accuracy.realfootage --config benchmarks/configs/realfootage_fm_selection.yaml
    python -m benchmarks.accuracy.realfootage --config benchmarks/configs/realfootage_fm_selection.yaml \\
        --variants base fm fm_logit                                          # some of them
    python -m benchmarks.accuracy.realfootage --config benchmarks/configs/realfootage_fm_selection.yaml \\
        --quick --variants base fm                                           # smoke run (tiny, scratch only)
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import torch

from benchmarks.common import RESULTS, SCRATCH
from demo import label_free as lf
from reskd_infer.models.efficientnet_lite import efficientnet_lite0_imagenet


def load_data(data_dir: str, quick: bool, val_seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The benchmark's training parts and validation sets (tiny ones with ``quick``)."""
    photos = lf.TRAIN_PHOTOS + lf.EXTRA_TRAIN_PHOTOS
    if quick:
        return (lf.train_parts(data_dir, 1, 1, 2, 90, 0, False, photos[:6]), lf.val_sets(data_dir, 1, 1, 200, val_seed))
    return lf.train_parts(data_dir, 8, 4, 180, 5, 0, False, photos), lf.val_sets(data_dir, 8, 4, 8, val_seed)


class FmSelection:
    """The data, the teacher's cached outputs on it, the view sets made so far and the result being written."""

    def __init__(self, selection: dict[str, Any], data_dir: str, quick: bool) -> None:
        self.t0 = time.time()
        self.views_per_kind, self.view_seed0 = selection["views"], selection["view_seed0"]
        self.augment = {k: tuple(v) if isinstance(v, list) else v for k, v in selection["augment"].items()}
        self.view_kinds = selection["view_kinds"]
        out_dir = SCRATCH / "quick" if quick else SCRATCH
        out_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = out_dir / "reskd_realfootage_fm_selection.jsonl"
        self.final = (out_dir if quick else RESULTS / "realfootage_fm_selection") / "realfootage_fm_selection.json"
        self.recipe = recipe = {**selection["recipe"], **(selection["quick_recipe"] if quick else {})}
        parts, self.val = load_data(data_dir, quick, selection["val_seed"])
        self.crops = torch.cat(list(parts.values()))
        self.teacher = efficientnet_lite0_imagenet(num_frames=1).eval()
        self.timings: dict[str, float] = {"decode_s": round(time.time() - self.t0, 1)}
        t = time.time()
        self.base_logits, self.base_maps = lf.run(self.teacher, self.crops, lf.TEACHER_SIZE, want_maps=True)
        self.targets = {k: lf.run(self.teacher, c, lf.TEACHER_SIZE)[0] for k, c in self.val.items()}
        self.timings["teacher_cache_base_s"] = round(time.time() - t, 1)
        self.view_sets: dict[str, list[lf.ViewSet]] = {}
        self.runs: list[dict[str, Any]] = []
        self.result: dict[str, Any] = {
            "what": "function-matching variants of the label-free recipe, scored on the VALIDATION files only "
                    "(the test files were not read)",
            "train_frames": {k: len(c) for k, c in parts.items()},
            "val_frames": {k: len(c) for k, c in self.val.items()},
            "recipe": recipe, "views_per_kind": self.views_per_kind,
            "view_seeds": [self.view_seed0 + k for k in range(self.views_per_kind)],
            "augment": {**self.augment, "kinds": self.view_kinds},
            "sgd_steps_per_arm": recipe["epochs"] * -(-len(self.crops) // recipe["batch_size"]),
            "rule": "worth a test-file run only if validation agreement > base + 0.03 and validation KL < base's",
            "quick": quick, "timings": self.timings, "runs": self.runs, "complete": False}

    def log(self, entry: dict[str, Any]) -> None:
        """One variant's line: printed, appended to the JSON Lines log, and the result rewritten."""
        entry["t"] = round(time.time() - self.t0)
        print(json.dumps(entry), flush=True)
        with self.jsonl.open("a") as f:
            f.write(json.dumps(entry) + "\n")
        self.runs.append(entry)
        self.save()

    def save(self) -> None:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.final.write_text(json.dumps(self.result, indent=1) + "\n")

    def vscore(self, model: torch.nn.Module) -> dict[str, Any]:
        """Validation agreement, KL and top-5 over all frames, and per validation set."""
        s = lf.score_sets(self.val, model, 56, self.targets)
        return {"val_top1_agreement": s["all_frames"]["top1_agreement"], "val_mean_kl": s["all_frames"]["mean_kl"],
                "val_top5": s["all_frames"]["teacher_top1_in_top5"],
                **{f"val_{k}": {"top1_agreement": s[k]["top1_agreement"], "mean_kl": s[k]["mean_kl"]}
                   for k in self.val}}

    def views(self, kind: str) -> list[lf.ViewSet]:
        """The view sets of one kind, the teacher's outputs cached on each (made once)."""
        if kind not in self.view_sets:
            t = time.time()
            self.view_sets[kind] = lf.teacher_views(
                self.teacher, self.crops, [self.view_seed0 + k for k in range(self.views_per_kind)],
                **self.augment, **self.view_kinds[kind])
            self.timings[f"teacher_views_{kind}_s"] = round(time.time() - t, 1)
            print(f"view sets {kind}: {self.timings[f'teacher_views_{kind}_s']} s", file=sys.stderr, flush=True)
        return self.view_sets[kind]


def run_selection(selection: dict[str, Any], plan: list[str], data_dir: str, quick: bool) -> int:
    """Train each variant of ``plan`` (default: every one of ``selection["variants"]``, in order); score on validation."""
    variants = selection["variants"]
    unknown = [v for v in plan if v not in variants]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {list(variants)}")
    torch.set_num_threads(1)
    fm = FmSelection(selection, data_dir, quick)
    fm.log({"variant": "untouched", **fm.vscore(fm.teacher)})
    for name in plan or list(variants):
        kw = {**fm.recipe, **variants[name]}
        kind = kw.pop("views", None)
        epoch_views = fm.views(kind) if kind else None
        t = time.time()
        model, info = lf.distill(56, fm.crops, fm.base_maps, fm.base_logits, progress=False, epoch_views=epoch_views,
                                 **kw)
        fm.log({"variant": name, "views": kind, **kw, "train_s": round(time.time() - t, 1), **fm.vscore(model),
                "logit_scale": info["logit_scale"], "temperature": info["temperature"],
                "view_set_per_epoch": info.get("view_set_per_epoch"), "per_epoch": info["per_epoch"]})
        del model
    fm.timings["total_s"] = round(time.time() - fm.t0, 1)
    fm.result["complete"] = True
    fm.save()
    return 0
