"""``reskd-card``'s measurements: what each deployment choice (resolution, precision, engine) costs and how close
its answers stay to a reference model, measured on the user's own clips.

Accuracy: every model reads every clip through :meth:`Recognizer.predict_iter` (its own spec's decoding and
preprocessing, the served answer); the figures are :func:`reskd_infer.metrics.agreement_metrics` against the
reference model and, with labels, :func:`reskd_infer.metrics.classification_metrics`: the functions
``reskd-eval`` (and ``reskd-eval --reference``) report. A clip that a model cannot read is counted and named
in ``failed`` and left out of every row, so all rows score the same clips.

Speed: the one timing harness (:func:`reskd_infer.bench.timing.interleave`): each round calls every model's
engine on a ready batch (``clips_per_s``, as ``reskd-bench``'s) and streams the speed clips through the runtime
end to end (``videos_per_s``), then every cascade; medians over the rounds. GFLOPs per clip are counted by
:func:`reskd_infer.bench.flops.clip_gflops`, as ``reskd-bench`` counts them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from reskd_infer.bench.flops import clip_gflops
from reskd_infer.bench.machine import machine_info
from reskd_infer.bench.timing import interleave
from reskd_infer.errors import UsageError, check_same_classes
from reskd_infer.metrics import agreement_metrics, classification_metrics
from reskd_infer.models import build_model
from reskd_infer.runtime.cascade import Cascade, cascade_point, top1_margin
from reskd_infer.runtime.recognizer import Recognizer
from reskd_infer.runtime.sources import expand_sources, read_source_list
from reskd_infer.train.data import parse_list
from reskd_infer.version import __version__

CARD_SCHEMA = "reskd-infer/card/1"
ROW_KEYS = ("model", "arch", "input_size", "precision", "backend", "gflops_per_clip", "clips_per_s", "videos_per_s",
            "agreement", "mean_kl", "top1")
CASCADE_KEYS = ("small", "large", "threshold", "escalated", "agreement", "top1", "gflops_per_clip", "videos_per_s")
DEFAULT_SHARES = (0.05, 0.1, 0.2, 0.3)


@dataclass
class Clips:
    """The clips a card is measured on: paths, and labels when the list carries them."""

    videos: list[str]
    labels: list[tuple[int, ...]] | None = None
    source: str = ""


def read_clips(source: str | Path, data_root: str | Path | None = None, labelled: bool = False) -> Clips:
    """A folder of clips, a plain list (one path per line, first column) or, with ``labelled``, a Kinetics-style
    list (``path label [label...]``, read as ``reskd-eval`` reads it). Missing files are kept: they are counted
    and named as failed, never dropped."""
    source = Path(source)
    if labelled:
        samples = parse_list(source, data_root, check_files=False)
        return Clips([str(s.path) for s in samples], [s.labels for s in samples], str(source))
    if source.is_dir():
        return Clips(expand_sources(source), None, str(source))
    return Clips(read_source_list(source, data_root), None, str(source))


def precision_of(rec: Recognizer) -> str:
    """The precision a model runs at: the backend's (OpenVINO BF16 or FP32), or the artifact's (``.fp16.onnx``,
    ``.int8.onnx``), else FP32."""
    name = Path(str(getattr(rec.backend, "path", rec.path))).name.lower()
    for tag in ("int8", "fp16", "bf16"):
        if f".{tag}." in name:
            return tag
    return str(getattr(rec.backend, "precision", None) or "fp32")


@dataclass
class _Model:
    name: str
    rec: Recognizer
    gflops: float
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    clips_per_s: float | None = None
    videos_per_s: float | None = None

    @property
    def spec(self) -> Any:
        return self.rec.spec


def _score_clips(model: _Model, videos: Sequence[str], batch_size: int, workers: int, progress: bool) -> None:
    stream = model.rec.predict_iter(videos, batch_size=batch_size, workers=workers, topk=1)
    for result in tqdm(stream, total=len(videos), desc=f"card: {model.name}", disable=not progress, leave=False):
        if result.error is not None:
            model.errors[str(result.video)] = str(result.error)
        else:
            model.probabilities[str(result.video)] = result.probabilities


def _pick_reference(models: list[_Model], reference: str | None) -> _Model:
    """The given reference, else the highest-resolution model (most GFLOPs among equals, then the first)."""
    if reference is not None:
        return next(m for m in models if m.name == reference)
    return max(models, key=lambda m: (m.spec.input_size, m.gflops, -models.index(m)))


def _accuracy_row(model: _Model, reference: _Model, scored: list[str], clips: Clips) -> dict[str, Any]:
    probs = np.stack([model.probabilities[v] for v in scored])
    ref = np.stack([reference.probabilities[v] for v in scored])
    row: dict[str, Any] = {}
    if model.spec.multi_label:
        row.update(agreement=None, mean_kl=None)
    else:
        close = agreement_metrics(ref, probs)
        row.update(agreement=close["top1_agreement"], top5_overlap=close["top5_overlap"], mean_kl=close["mean_kl"])
    row["top1"] = None
    if clips.labels is not None:
        index = {v: i for i, v in enumerate(clips.videos)}
        labels = [clips.labels[index[v]] for v in scored]
        target = (_multi_hot(labels, model.spec.num_classes) if model.spec.multi_label
                  else torch.tensor([lab[0] for lab in labels]))
        metrics = classification_metrics(torch.from_numpy(probs), target, model.spec.multi_label)
        row["top1"] = metrics.get("top1")
        if "mAP" in metrics:
            row["mAP"] = metrics["mAP"]
    return row


def _multi_hot(labels: list[tuple[int, ...]], num_classes: int) -> torch.Tensor:
    out = torch.zeros(len(labels), num_classes)
    for i, lab in enumerate(labels):
        out[i, list(lab)] = 1
    return out


def _cascade_thresholds(small: np.ndarray, shares: Sequence[float]) -> list[float]:
    """Thresholds at which about each share of these clips escalates (half-way between neighbouring margins)."""
    margins = np.sort(top1_margin(small))
    out = []
    for share in shares:
        k = int(round(share * len(margins)))
        t = 0.0 if k <= 0 else 1.0 if k >= len(margins) else float((margins[k - 1] + margins[k]) / 2)
        if t not in out:
            out.append(t)
    return out


@dataclass
class SpeedSettings:
    """How the card times: interleaved ``rounds`` after ``warmup``, engine batches of ``batch_size`` clips, the
    first ``videos`` readable clips streamed end to end by ``workers`` decode workers."""

    rounds: int = 3
    warmup: int = 1
    videos: int = 32
    batch_size: int = 8
    workers: int = 2


def spread(items: Sequence[str], n: int) -> list[str]:
    """``n`` of ``items`` spread evenly over the list (lists are often ordered by class or source: the first ``n``
    would time an easier or a harder part, and a cascade would escalate another share there)."""
    if n >= len(items):
        return list(items)
    return [items[i] for i in np.unique(np.linspace(0, len(items) - 1, n).round().astype(int))]


def _drain(stream: Any) -> int:
    return sum(1 for _ in stream)


def _time_all(models: list[_Model], cascades: list[tuple[dict[str, Any], Cascade]], videos: list[str],
              speed: SpeedSettings, progress: bool) -> None:
    """Engine clips/s and end-to-end videos/s of every model and cascade, in interleaved rounds (medians)."""
    arms: dict[str, Callable[[], object]] = {}
    for i, m in enumerate(models):
        x = torch.randn(speed.batch_size, *m.spec.input_shape).to(m.rec.backend.input_device)
        arms[f"m{i}/engine"] = lambda r=m.rec, x=x: r.backend.infer(x)
        arms[f"m{i}/e2e"] = lambda r=m.rec: _drain(r.predict_iter(videos, batch_size=speed.batch_size,
                                                                  workers=speed.workers, topk=1))
    for j, (_, cascade) in enumerate(cascades):
        arms[f"c{j}/e2e"] = lambda c=cascade: _drain(c.predict_iter(videos, batch_size=speed.batch_size,
                                                                    workers=speed.workers, topk=1))
    timings = interleave(arms, speed.rounds, speed.warmup, "card: timing rounds" if progress else None)
    for i, m in enumerate(models):
        m.clips_per_s = speed.batch_size / timings.median(f"m{i}/engine")
        m.videos_per_s = len(videos) / timings.median(f"m{i}/e2e")
    for j, (entry, _) in enumerate(cascades):
        entry["videos_per_s"] = len(videos) / timings.median(f"c{j}/e2e")


def _open_models(stack: ExitStack, paths: Sequence[str | Path], backend: str, device: str,
                 batch_size: int) -> list[_Model]:
    models = []
    for path in paths:
        rec = stack.enter_context(Recognizer(path, device=device, backend=backend, max_batch=batch_size))
        models.append(_Model(str(path), rec, round(clip_gflops(build_model(rec.spec).eval(), rec.spec.input_shape), 4)))
    return models


def make_card(models: Sequence[str | Path], clips: Clips, reference: str | Path | None = None,
              backend: str = "auto", device: str = "auto", speed: SpeedSettings | None = None,
              cascade_shares: Sequence[float] = DEFAULT_SHARES, progress: bool = False) -> dict[str, Any]:
    """Measure ``models`` (anything :class:`Recognizer` loads) on ``clips``; returns the card (docs/card.md).

    ``reference`` (default: the highest-resolution model) is added as a row when it is not among ``models``.
    Cascades: each model with fewer GFLOPs per clip than the reference, with the reference as the large model,
    at the thresholds that escalate about ``cascade_shares`` of the clips (none with ``()``)."""
    speed = speed or SpeedSettings()
    names = [str(m) for m in models]
    if reference is not None and str(reference) not in names:
        names.append(str(reference))
    if not names:
        raise UsageError("give at least one model")
    with ExitStack() as stack:
        opened = _open_models(stack, names, backend, device, speed.batch_size)
        ref = _pick_reference(opened, None if reference is None else str(reference))
        for m in opened:  # before any clip is read: a mismatch is a clear error naming both
            check_same_classes(m.name, m.spec.class_names, ref.name, ref.spec.class_names)
        for m in opened:
            _score_clips(m, clips.videos, speed.batch_size, speed.workers, progress)
        failed = {v: e for m in opened for v, e in m.errors.items()}
        scored = [v for v in clips.videos if v not in failed]
        if not scored:
            raise UsageError(f"{clips.source}: none of its {len(clips.videos)} clips could be read "
                             f"(first: {next(iter(failed.items()), ('', ''))[1]})")
        rows = [{**_identity(m), **_accuracy_row(m, ref, scored, clips)} for m in opened]
        entries = _cascade_entries(opened, ref, scored, clips, cascade_shares)
        cascades = [(e, stack.enter_context(Cascade(_by_name(opened, e["small"]).rec, ref.rec, e["threshold"])))
                    for e in entries]
        _time_all(opened, cascades, spread(scored, speed.videos), speed, progress)
        for row, m in zip(rows, opened, strict=True):
            row.update(clips_per_s=m.clips_per_s, videos_per_s=m.videos_per_s)
        for entry, cascade in cascades:
            entry["decode"] = cascade.decode
    return {
        "schema": CARD_SCHEMA, "version": __version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "reference": ref.name, "clips": len(scored), "videos": len(clips.videos), "source": clips.source,
        "labelled": clips.labels is not None,
        "failed": [{"video": v, "error": e} for v, e in failed.items()],
        "rows": [_ordered(r, ROW_KEYS) for r in rows],
        "cascades": [_ordered(e, CASCADE_KEYS) for e in entries],
        "speed": {"rounds": speed.rounds, "warmup": speed.warmup, "videos": min(speed.videos, len(scored)),
                  "batch_size": speed.batch_size, "workers": speed.workers, "torch_threads": torch.get_num_threads(),
                  "method": "interleaved rounds (every model and cascade once per round), medians"},
        "machine": machine_info(),
    }


def _by_name(models: list[_Model], name: str) -> _Model:
    return next(m for m in models if m.name == name)


def _identity(m: _Model) -> dict[str, Any]:
    return {"model": m.name, "arch": m.spec.arch, "input_size": m.spec.input_size, "precision": precision_of(m.rec),
            "backend": m.rec.backend_name, "gflops_per_clip": m.gflops, "num_frames": m.spec.num_frames}


def _ordered(d: dict[str, Any], first: Sequence[str]) -> dict[str, Any]:
    return {**{k: d.get(k) for k in first}, **{k: v for k, v in d.items() if k not in first}}


def _cascade_entries(models: list[_Model], ref: _Model, scored: list[str], clips: Clips,
                     shares: Sequence[float]) -> list[dict[str, Any]]:
    """The cascade curve of every cheaper model into the reference, from both models' answers on the clips."""
    if ref.spec.multi_label or not shares:
        return []
    labels = None
    if clips.labels is not None:
        index = {v: i for i, v in enumerate(clips.videos)}
        labels = [clips.labels[index[v]][0] for v in scored]
    large = np.stack([ref.probabilities[v] for v in scored])
    entries = []
    for m in models:
        if m is ref or m.gflops >= ref.gflops:
            continue
        small = np.stack([m.probabilities[v] for v in scored])
        for t in _cascade_thresholds(small, shares):
            point = cascade_point(small, large, t, labels)
            entries.append({"small": m.name, "large": ref.name, **point,
                            "gflops_per_clip": round(m.gflops + point["escalated"] * ref.gflops, 4)})
    return entries

