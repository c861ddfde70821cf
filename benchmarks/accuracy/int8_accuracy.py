"""INT8 accuracy of the trend benchmark's 56 px student (issue 27): top-1 of FP32 and INT8 on OpenVINO and ONNX Runtime.

The student (seed 0, distilled, ``tsn_effnet_lite0`` at 56 px) is exported once with ``reskd-export --int8``'s
defaults: 128 calibration clips drawn (seed 0) from the training list, the agreement gate (0.99) on the
validation list. The configuration is fixed before any test look; ``--split val`` (the default) scores the
validation clips, ``--split test`` the sealed fresh test split, once, logged in
``benchmarks/results/test_looks.jsonl``. Rows go to ``accuracy`` in ``benchmarks/results/int8/int8.json``
(target: INT8 within 0.5 points of FP32 on each engine).

    python -m benchmarks.accuracy.int8_accuracy                 # val
    python -m benchmarks.accuracy.int8_accuracy --split test    # the one logged test look
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, SCRATCH, git_commit
from benchmarks.protocol import add_split_argument, is_test, log_test_look, split_list
from benchmarks.shared_models import TREND_CLIPS, trend_runs
from benchmarks.speed.int8 import load_results, save_results
from reskd_infer import Recognizer
from reskd_infer.bench.machine import machine_info
from reskd_infer.errors import Int8RefusedError
from reskd_infer.export import export_model
from reskd_infer.train.data import parse_list

TARGET_POINTS = 0.5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_split_argument(p)
    p.add_argument("--student", type=Path, default=None,
                   help="the 56 px student checkpoint (default: the trend task's seed-0 distilled student, "
                   "benchmarks.shared_models.trend_runs(), trained on first use)")
    p.add_argument("--clips", type=Path, default=TREND_CLIPS, help="the clips folder (train.txt, val.txt, test lists)")
    p.add_argument("--out", type=Path, default=RESULTS / "int8", help="results folder (default benchmarks/results/int8)")
    p.add_argument("--reuse-export", action="store_true",
                   help="score the export an earlier run of this script made (same student, same defaults) instead "
                   "of exporting again (the test look scores the very models the validation run chose)")
    p.add_argument("--merge-only", action="store_true",
                   help="score nothing: merge the runs kept in int8_accuracy_<split>.json into int8.json")
    return p.parse_args(argv)


def merge(out: Path) -> None:
    """Put every split's kept run (int8_accuracy_<split>.json) into int8.json's ``accuracy``."""
    results = load_results(out)
    runs = [json.loads(f.read_text()) for f in sorted(out.glob("int8_accuracy_*.json"))]
    results["accuracy"] = [row for run in runs for row in run["rows"]]
    results["accuracy_runs"] = runs
    save_results(out, results, keep_disk_accuracy=False)


def export(student: Path, clips: Path, folder: Path) -> dict[str, Any]:
    """The export with the defaults; a refusal is recorded and the artifacts re-made without the gate."""
    common = {"fp16": False, "verify_clips": (), "int8": True, "calib": clips / "train.txt",
              "int8_verify": clips / "val.txt"}
    try:
        return {"gate_passed": True, "int8": export_model(student, folder, **common).int8}
    except Int8RefusedError as exc:
        refused = exc.result.int8 if exc.result is not None else None
        result = export_model(student, folder, int8_min_agreement=1e-9, **common)
        return {"gate_passed": False, "refusal": str(exc), "int8_at_default_gate": refused, "int8": result.int8}


def top1(folder: Path, engine: str, precision: str, samples: list[Any]) -> float:
    with Recognizer(folder, backend=engine, precision=precision, device="cpu") as rec:
        hits = sum(int(rec.probabilities(s.path).argmax() == s.labels[0]) for s in samples)
    return hits / len(samples)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.merge_only:
        merge(args.out)
        return 0
    warnings.simplefilter("ignore")
    t0 = time.time()
    args.student = args.student or trend_runs() / "kd_56_s0" / "last.ckpt"
    folder = SCRATCH / "int8" / "export_trend_kd_56_s0"
    kept = folder / "benchmark_export.json"
    if args.reuse_export and kept.is_file():
        exported = json.loads(kept.read_text())
    else:
        exported = export(args.student, args.clips, folder)
        kept.write_text(json.dumps(exported, default=str) + "\n")
    listing = split_list(args.clips, args.split)
    samples = parse_list(listing, args.clips)
    rows = [{"engine": e, "precision": p, "split": args.split, "clips": len(samples),
             "top1": top1(folder, e, p, samples)} for e in ("openvino", "onnxruntime") for p in ("fp32", "int8")]
    gaps = {e: round(100 * (next(r["top1"] for r in rows if r["engine"] == e and r["precision"] == "fp32")
                            - next(r["top1"] for r in rows if r["engine"] == e and r["precision"] == "int8")), 3)
            for e in ("openvino", "onnxruntime")}
    run = {"rows": rows, "export_reused": bool(args.reuse_export and kept.is_file()), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": git_commit(), "split": args.split,
           "list": str(listing), "student": str(args.student), "gate_passed": exported["gate_passed"],
           "gate": {e: {k: r.get(k) for k in ("agreement", "used", "attempts")}
                    for e, r in exported["int8"]["engines"].items()},
           "refusal": exported.get("refusal"), "fp32_minus_int8_points": gaps,
           "target_met": {e: g <= TARGET_POINTS for e, g in gaps.items()}, "machine": machine_info(),
           "seconds": round(time.time() - t0, 1)}
    if is_test(args.split):
        looks = log_test_look("int8_accuracy", args.split, {"student": str(args.student), "export": "reskd-export "
                              "--int8 defaults (128 train clips, seed 0, gate 0.99 on val)"},
                              {"rows": rows, "fp32_minus_int8_points": gaps})
        run["test_looks"] = looks
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"int8_accuracy_{args.split}.json").write_text(json.dumps(run, indent=1, default=str) + "\n")
    merge(args.out)
    print(json.dumps({"rows": rows, "fp32_minus_int8_points": gaps, "gate": run["gate"]}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
