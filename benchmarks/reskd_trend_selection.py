"""The validation-only table behind the trend benchmark's default objective: each arm's validation top-1 over
its selection seeds, pooled from the probe parts ``reskd_trend.py`` wrote (``--kd-only``/``--plain-only``
runs with seeds of their own, 100 and up, never the test seeds).

Reads only ``val_seeds``/``seed_ids`` of each part: no test figure enters the choice. Writes
``<out>.json`` and ``<out>.md``; the rule that picks the default is applied by the reader (docs/benchmarks.md).

    python benchmarks/reskd_trend_selection.py --out benchmarks/results/selection/reskd_trend_v5_selection \\
        --arm "w 3=benchmarks/results/selection/reskd_trend_v4_sel_w3.json,..." --arm "plain=..." [--size 56]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from reskd_trend import welch  # noqa: E402


def arm_seeds(parts: list[Path], size: int) -> dict[int, float]:
    """Seed id -> validation top-1 of the ResKD (or, for --plain-only parts, plain) students at ``size``."""
    seeds: dict[int, float] = {}
    for part in parts:
        result = json.loads(part.read_text())
        for student in result["students"]:
            if student["input_size"] != size:
                continue
            for arm in ("kd", "plain"):
                if arm in student:
                    ids, vals = student[arm]["seed_ids"], student[arm]["val_seeds"]
                    for seed, val in zip(ids, vals, strict=True):
                        if seed in seeds:
                            raise SystemExit(f"{part}: seed {seed} appears twice in one arm")
                        seeds[seed] = val
    return seeds


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arm", action="append", required=True, metavar="LABEL=JSON[,JSON...]",
                   help="an arm's label and the selection parts holding its seeds (repeat per arm)")
    p.add_argument("--size", type=int, default=56, help="student resolution the choice is made at")
    p.add_argument("--reference", default=None, help="label of the arm the others are tested against (Welch)")
    p.add_argument("--out", required=True, help="output path without suffix (.json and .md are written)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    arms: dict[str, dict[str, Any]] = {}
    for spec in args.arm:
        label, _, files = spec.partition("=")
        parts = [Path(f) for f in files.split(",") if f]
        seeds = arm_seeds(parts, args.size)
        vals = [seeds[s] for s in sorted(seeds)]
        arms[label] = {"parts": [p.name for p in parts], "seed_ids": sorted(seeds), "val_seeds": vals,
                       "val_mean": round(statistics.fmean(vals), 4),
                       "val_std": round(statistics.stdev(vals), 4) if len(vals) > 1 else 0.0}
    reference = args.reference or next(iter(arms))
    for label, arm in arms.items():
        if label != reference:
            arm["welch_vs_reference"] = welch(arm["val_seeds"], arms[reference]["val_seeds"])
    result = {"split": "val", "input_size": args.size, "reference": reference, "arms": arms}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# Trend benchmark: validation top-1 per arm at {args.size} px (selection seeds only)", "",
             f"| arm | seeds | validation top-1 per seed | mean | std | Welch p vs {reference} |",
             "|---|---|---|---|---|---|"]
    for label, arm in arms.items():
        w = arm.get("welch_vs_reference")
        p_value = f"{w['p_two_sided']:.3f}" if w else ""
        lines.append(f"| {label} | {', '.join(map(str, arm['seed_ids']))} | "
                     f"{', '.join(f'{v:.3f}' for v in arm['val_seeds'])} | **{arm['val_mean']:.3f}** | "
                     f"{arm['val_std']:.3f} | {p_value} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
