"""The validation-only runs behind the label-free recipe of benchmarks/reskd_realfootage.py (data mix, lr, epochs).

Never reads the test files. Each variant trains the recipe (calibrated logit scale, standardised map term
at w 1 + logit KD at T = 2, BatchNorm frozen, batch 32) on a mix of training parts and is scored on the
validation files only (8 photo files x 8 pan/zoom clips x 4 frames, ``vtest.avi`` every 8th frame). The
photo clips are one fixed draw; ``seed`` changes the batch order. Results are appended, one JSON line per
variant, to ``benchmarks/scratch/reskd_realfootage_selection.jsonl``; the figures of the run made here are
in ``benchmarks/results/reskd_realfootage_selection.json``.

    python benchmarks/reskd_realfootage_selection.py base extra base_s1 extra_s1 ...   # variants of VARIANTS
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from demo import label_free as lf  # noqa: E402
from demo.assets import bbb_film, footage, photo  # noqa: E402
from reskd_infer.models.efficientnet_lite import efficientnet_lite0_imagenet  # noqa: E402
from reskd_infer.video import probe  # noqa: E402

BASE = ["p8", "mega", "film_k"]
EXTRA = ["p8", "extra", "mega", "film_k"]
ALL = ["p8", "p16b", "extra", "mega", "film_k", "film_m"]
VARIANTS: dict[str, tuple[list[str], dict[str, Any]]] = {
    "base": (BASE, {}), "base_s1": (BASE, {"seed": 1}), "base_s2": (BASE, {"seed": 2}),
    "p16": (["p8", "p16b", "mega", "film_k"], {}), "film": (BASE + ["film_m"], {}),
    "extra": (EXTRA, {}), "extra_s1": (EXTRA, {"seed": 1}), "extra_s2": (EXTRA, {"seed": 2}),
    "extra_lr2": (EXTRA, {"lr": 0.002}), "extra_e5": (EXTRA, {"epochs": 5}), "all": (ALL, {}),
}


def per_photo(paths: list[Path], clips: int, seed: int) -> list[torch.Tensor]:
    return [lf.photo_crops([p], clips, 4, seed + 7 * i) for i, p in enumerate(paths)]


def main(plan: list[str]) -> int:
    torch.set_num_threads(1)
    data, t0 = ROOT / "data", time.time()
    out = ROOT / "benchmarks" / "scratch" / "reskd_realfootage_selection.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)

    def log(**kw: Any) -> None:
        kw["t"] = round(time.time() - t0)
        print(json.dumps(kw), flush=True)
        with out.open("a") as f:
            f.write(json.dumps(kw) + "\n")

    base_photos = per_photo([photo(p, data) for p in lf.TRAIN_PHOTOS], 16, 0)  # clips 0-7: p8, 8-15: p16b
    path = bbb_film(data)
    keys = np.sort(lf.keyframe_indices(path))
    keys = keys[keys < 0.92 * probe(path).num_frames]  # the film's first 92 %
    parts = {"p8": torch.cat([c[:32] for c in base_photos]), "p16b": torch.cat([c[32:] for c in base_photos]),
             "extra": torch.cat(per_photo([photo(p, data) for p in lf.EXTRA_TRAIN_PHOTOS], 8, 100)),
             "mega": lf.clip_crops(footage("Megamind.avi", data), 5),
             "film_k": lf.to_crops(lf.read_frames(path, keys.tolist())),
             "film_m": lf.to_crops(lf.read_frames(path, ((keys[:-1] + keys[1:]) // 2).tolist()))}
    val = lf.val_sets(data, 8, 4, 8, 1)
    teacher = efficientnet_lite0_imagenet(num_frames=1).eval()
    need = {k for name in plan for k in VARIANTS[name][0]}
    cache = {k: lf.run(teacher, v, lf.TEACHER_SIZE, want_maps=True) for k, v in parts.items() if k in need}
    targets = {k: lf.run(teacher, c, lf.TEACHER_SIZE)[0] for k, c in val.items()}

    def vscore(model: torch.nn.Module) -> dict[str, list[float]]:
        s = lf.score_sets(val, model, 56, targets)
        return {k: [s[k]["top1_agreement"], s[k]["mean_kl"]] for k in s}

    log(name="untouched", val=vscore(teacher))
    for name in plan:
        keys_, kw = VARIANTS[name]
        kw = {"epochs": 3, "lr": 0.001, "seed": 0, **kw}
        crops = torch.cat([parts[k] for k in keys_])
        t = time.time()
        model, info = lf.distill(56, crops, torch.cat([cache[k][1] for k in keys_]),
                                 torch.cat([cache[k][0] for k in keys_]), progress=False, **kw)
        log(name=name, data=keys_, frames=len(crops), **kw, train_s=round(time.time() - t), val=vscore(model),
            scale=info["logit_scale"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:] or ["base", "extra"]))
