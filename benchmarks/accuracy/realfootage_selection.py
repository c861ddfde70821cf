"""The validation-only runs behind the label-free recipe of the realfootage benchmark (data mix, lr, epochs).

Run by its parent with ``benchmarks/configs/realfootage_selection.yaml``, which names the training parts of
each data mix and every variant (a mix and what changes against the defaults)::

    python -m benchmarks.accuracy.realfootage --config benchmarks/configs/realfootage_selection.yaml \\
        --variants base extra base_s1 extra_s1

Never reads the test files. Each variant trains the recipe (calibrated logit scale, standardised map term
at w 1 + logit KD at T = 2, BatchNorm frozen, batch 32) on a mix of training parts and is scored on the
validation files only (8 photo files x 8 pan/zoom clips x 4 frames, ``vtest.avi`` every 8th frame). The
photo clips are one fixed draw; ``seed`` changes the batch order. Kept as code because the parent always
scores the test files and builds one fixed training set; this one builds the parts once and trains on
several mixes. Results are appended, one JSON line per variant, to
``benchmarks/scratch/reskd_realfootage_selection.jsonl``; the figures of the run made here are in
``benchmarks/results/realfootage_selection/realfootage_selection.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import SCRATCH
from demo import label_free as lf
from demo.assets import bbb_film, footage, photo
from reskd_infer.models.efficientnet_lite import efficientnet_lite0_imagenet
from reskd_infer.video import probe


def per_photo(paths: list[Path], clips: int, seed: int) -> list[torch.Tensor]:
    return [lf.photo_crops([p], clips, 4, seed + 7 * i) for i, p in enumerate(paths)]


def training_parts(data: Path) -> dict[str, torch.Tensor]:
    """Every training part a mix can name: photo clips 0-7 (p8) and 8-15 (p16b), the extra photos, Megamind,
    the film's keyframes (film_k) and the frames midway between them (film_m), in its first 92 %."""
    base_photos = per_photo([photo(p, data) for p in lf.TRAIN_PHOTOS], 16, 0)  # clips 0-7: p8, 8-15: p16b
    path = bbb_film(data)
    keys = np.sort(lf.keyframe_indices(path))
    keys = keys[keys < 0.92 * probe(path).num_frames]  # the film's first 92 %
    return {"p8": torch.cat([c[:32] for c in base_photos]), "p16b": torch.cat([c[32:] for c in base_photos]),
            "extra": torch.cat(per_photo([photo(p, data) for p in lf.EXTRA_TRAIN_PHOTOS], 8, 100)),
            "mega": lf.clip_crops(footage("Megamind.avi", data), 5),
            "film_k": lf.to_crops(lf.read_frames(path, keys.tolist())),
            "film_m": lf.to_crops(lf.read_frames(path, ((keys[:-1] + keys[1:]) // 2).tolist()))}


def run_selection(selection: dict[str, Any], plan: list[str], data: Path) -> int:
    """Train each variant of ``plan`` (names of ``selection["variants"]``) and score it on validation."""
    torch.set_num_threads(1)
    mixes, variants = selection["mixes"], selection["variants"]
    plan = plan or selection["plan"]
    t0 = time.time()
    out = SCRATCH / "reskd_realfootage_selection.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)

    def log(**kw: Any) -> None:
        kw["t"] = round(time.time() - t0)
        print(json.dumps(kw), flush=True)
        with out.open("a") as f:
            f.write(json.dumps(kw) + "\n")

    parts = training_parts(data)
    val = lf.val_sets(data, 8, 4, 8, 1)
    teacher = efficientnet_lite0_imagenet(num_frames=1).eval()
    need = {k for name in plan for k in mixes[variants[name]["mix"]]}
    cache = {k: lf.run(teacher, v, lf.TEACHER_SIZE, want_maps=True) for k, v in parts.items() if k in need}
    targets = {k: lf.run(teacher, c, lf.TEACHER_SIZE)[0] for k, c in val.items()}

    def vscore(model: torch.nn.Module) -> dict[str, list[float]]:
        s = lf.score_sets(val, model, 56, targets)
        return {k: [s[k]["top1_agreement"], s[k]["mean_kl"]] for k in s}

    log(name="untouched", val=vscore(teacher))
    for name in plan:
        delta = dict(variants[name])
        keys_ = mixes[delta.pop("mix")]
        kw = {**selection["defaults"], **delta}
        crops = torch.cat([parts[k] for k in keys_])
        t = time.time()
        model, info = lf.distill(56, crops, torch.cat([cache[k][1] for k in keys_]),
                                 torch.cat([cache[k][0] for k in keys_]), progress=False, **kw)
        log(name=name, data=keys_, frames=len(crops), **kw, train_s=round(time.time() - t), val=vscore(model),
            scale=info["logit_scale"])
    return 0
