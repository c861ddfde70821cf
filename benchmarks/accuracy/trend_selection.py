"""The validation-only table behind the trend benchmark's default objective: each arm's validation top-1 over
its selection seeds, pooled from the probe runs the trend benchmark wrote (``--kd-only``/``--plain-only`` runs
with seeds of their own, 100 and up, never the test seeds).

Run by its parent with a config that has a ``selection`` section (arms and their result files)::

    python -m benchmarks.accuracy.trend --config benchmarks/configs/trend_selection.yaml

Kept as code because it is not a training run: it pools finished runs. Reads only ``val_seeds``/``seed_ids``
of each part: no test figure enters the choice; the rule that picks the default is applied by the reader
(docs/benchmarks.md).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from benchmarks.accuracy.stats import welch


def arm_seeds(parts: list[Path], size: int) -> dict[int, float]:
    """Seed id -> validation top-1 of the students at ``size`` (a part holds one arm: kd, plain, or another)."""
    seeds: dict[int, float] = {}
    for part in parts:
        result = json.loads(part.read_text())
        for student in result["students"]:
            if student["input_size"] != size:
                continue
            for v in student.values():
                if isinstance(v, dict) and "val_seeds" in v:
                    ids, vals = v["seed_ids"], v["val_seeds"]
                    for seed, val in zip(ids, vals, strict=True):
                        if seed in seeds:
                            raise SystemExit(f"{part}: seed {seed} appears twice in one arm")
                        seeds[seed] = val
    return seeds


def selection_table(arm_parts: dict[str, list[Path]], size: int, reference: str | None, out: Path,
                    choose: bool = False) -> int:
    """Pool each arm's parts, test every arm against ``reference`` (default: the first), write
    ``<out>.json`` and ``<out>.md`` and print the table. ``choose``: also name the arm with the highest mean
    validation top-1 (a tie goes to the arm listed first), the rule a grid states before it runs."""
    arms: dict[str, dict[str, Any]] = {}
    for label, parts in arm_parts.items():
        seeds = arm_seeds(parts, size)
        vals = [seeds[s] for s in sorted(seeds)]
        arms[label] = {"parts": [p.name for p in parts], "seed_ids": sorted(seeds), "val_seeds": vals,
                       "val_mean": round(statistics.fmean(vals), 4),
                       "val_std": round(statistics.stdev(vals), 4) if len(vals) > 1 else 0.0}
    reference = reference or next(iter(arms))
    for label, arm in arms.items():
        if label != reference:
            arm["welch_vs_reference"] = welch(arm["val_seeds"], arms[reference]["val_seeds"])
    result: dict[str, Any] = {"split": "val", "input_size": size, "reference": reference, "arms": arms}
    if choose:
        best = max(arm["val_mean"] for arm in arms.values())
        result["chosen"] = next(label for label, arm in arms.items() if arm["val_mean"] == best)
        result["rule"] = "highest mean validation top-1; a tie goes to the arm listed first"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# Trend benchmark: validation top-1 per arm at {size} px (selection seeds only)", "",
             f"| arm | seeds | validation top-1 per seed | mean | std | Welch p vs {reference} |",
             "|---|---|---|---|---|---|"]
    for label, arm in arms.items():
        w = arm.get("welch_vs_reference")
        p_value = f"{w['p_two_sided']:.3f}" if w else ""
        lines.append(f"| {label} | {', '.join(map(str, arm['seed_ids']))} | "
                     f"{', '.join(f'{v:.3f}' for v in arm['val_seeds'])} | **{arm['val_mean']:.3f}** | "
                     f"{arm['val_std']:.3f} | {p_value} |")
    if choose:
        lines += ["", f"Chosen ({result['rule']}): **{result['chosen']}**."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0
