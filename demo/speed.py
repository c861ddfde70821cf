"""The demo's speed stage: teacher at 112 px against student at 56 px, engine and end to end, side by side."""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from reskd_infer import Recognizer
from reskd_infer.bench.flops import clip_gflops
from reskd_infer.bench.measure import BenchCase, run_cases
from reskd_infer.card import SpeedSettings, make_card, read_clips, write_card
from reskd_infer.models import build_model

ENGINE_BATCH = 8
SERVING_BACKEND = "onnxruntime"  # the top-level figures per model; both backends are kept


def _stream(rec: Recognizer, videos: list[str], workers: int) -> Callable[[], object]:
    """One pass of the runtime over ``videos`` (decoding in worker threads overlapped with batched inference)."""
    return lambda: rec.predict_batch(videos, topk=1, workers=workers)


def stage_speed(models: dict[str, tuple[Path, Path]], videos: list[str], threads: int, workers: int,
                rounds: int, warmup: int = 1) -> dict[str, Any]:
    """Measure each model on PyTorch and ONNX Runtime in interleaved rounds; medians per case.

    ``models`` maps a name to (checkpoint, ONNX file). Engine: batches of 8 random clips. End to end:
    decode, preprocess and infer every one of ``videos`` through ``Recognizer.predict_batch``.
    """

    print(f"[6] speed, measured side by side ({rounds} interleaved rounds, medians; {threads} torch/ORT "
          f"thread(s), {workers} decode worker(s)): engine batches of {ENGINE_BATCH}, end to end over "
          f"{len(videos)} clips through Recognizer.predict_batch")
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)  # ONNX Runtime sessions take torch's thread count when created
    try:
        with ExitStack() as stack:
            prepared, gflops = [], {}
            for name, (ckpt, onnx) in models.items():
                for backend, artifact in (("torch", ckpt), ("onnxruntime", onnx)):
                    rec = stack.enter_context(Recognizer(artifact, backend=backend, max_batch=ENGINE_BATCH))
                    spec = rec.spec
                    gflops.setdefault(name, round(clip_gflops(build_model(spec).eval(), spec.input_shape), 3))
                    x = torch.randn(ENGINE_BATCH, *spec.input_shape).to(rec.backend.input_device)
                    case = BenchCase(f"{name}/{backend}", str(artifact), backend, spec.input_size,
                                     spec.num_frames, ENGINE_BATCH, gflops[name])
                    prepared.append((case, (lambda r=rec, x=x: r.backend.infer(x)), _stream(rec, videos, workers)))
            cases = run_cases(prepared, rounds, warmup)
    finally:
        torch.set_num_threads(saved_threads)
    return _speed_summary(cases, len(videos), threads, workers, rounds)


def _speed_summary(cases: list[BenchCase], num_videos: int, threads: int, workers: int,
                   rounds: int) -> dict[str, Any]:
    """Per model: GFLOPs, and the ONNX Runtime figures at top level (what the export folder serves), both
    backends under ``by_backend``."""
    per_model: dict[str, Any] = {}
    for case in cases:
        name, backend = case.name.split("/")
        row = per_model.setdefault(name, {"input_size": case.input_size, "num_frames": case.num_frames,
                                          "gflops_per_clip": case.gflops_per_clip, "by_backend": {}})
        row["by_backend"][backend] = {
            "engine_clips_per_s": round(1000.0 * case.batch / statistics.median(case.engine_ms), 1),
            "e2e_videos_per_s": round(1000.0 * num_videos / statistics.median(case.end_to_end_ms), 1)}
    for name, row in per_model.items():
        row.update(backend=SERVING_BACKEND, **row["by_backend"][SERVING_BACKEND])
        figures = "   ".join(f"{b}: engine {v['engine_clips_per_s']:.1f} clips/s, end to end "
                             f"{v['e2e_videos_per_s']:.1f} videos/s" for b, v in row["by_backend"].items())
        print(f"    {name:<14} {row['input_size']:>3} px  {row['gflops_per_clip']:.3f} GFLOPs/clip   {figures}")
    setup = {"load_average_1min": round(os.getloadavg()[0], 1), "threads": threads, "decode_workers": workers, "rounds": rounds, "engine_batch": ENGINE_BATCH,
             "videos": num_videos, "method": "interleaved rounds (one call of each case per round), medians"}
    return {**per_model, "setup": setup}


def stage_card(out: Path, models: dict[str, Path], val_list: Path, threads: int, workers: int) -> dict[str, Any]:
    """The deployment card of the demo's teacher and students on the validation clips (``reskd-card``'s own code):
    top-1, agreement and KL with the teacher, GFLOPs, engine clips/s, end-to-end videos/s, the cascades."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        card = make_card(list(models.values()), read_clips(val_list, labelled=True), reference=models["teacher"],
                         speed=SpeedSettings(rounds=2, warmup=1, videos=30, batch_size=ENGINE_BATCH, workers=workers),
                         cascade_shares=(0.1, 0.2))
    finally:
        torch.set_num_threads(saved)
    written = write_card(card, out / "card")
    best = max((c for c in card["cascades"]), key=lambda c: c["top1"] or 0.0, default=None)
    cascade = (f"; cascade {best['escalated']:.0%} escalated: top-1 {best['top1']:.3f} at {best['videos_per_s']:.1f} "
               "videos/s" if best else "")
    print("[7] card: " + ", ".join(f"{name} top-1 {r['top1']:.3f} {r['videos_per_s']:.1f} videos/s"
                                   for name, r in zip(models, card["rows"], strict=True)) + cascade
          + f" -> {written['md']}")
    return {"card": written["json"], "rows": card["rows"], "cascades": card["cascades"]}
