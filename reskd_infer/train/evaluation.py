"""``reskd-eval``'s engine: score any artifact on a list file through the :class:`~reskd_infer.Recognizer`.

A checkpoint, an ONNX model (FP32 or FP16), a TensorRT plan or an export folder is loaded by the
Recognizer, so what is measured is what is served: the same backend, the same preprocessing
(:class:`~reskd_infer.train.data.EvalClipDataset` *is* ``Recognizer.preprocess``), the same averaging
of class probabilities over a video's views. Decoding runs in DataLoader workers.

Also here: the trainer's own evaluation after an epoch (:func:`predict_dataset`), on the model in
memory, sharded over the ranks of a distributed run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from reskd_infer.errors import DatasetError, check_same_classes
from reskd_infer.metrics import agreement_metrics, classification_metrics
from reskd_infer.runtime.recognizer import Recognizer
from reskd_infer.train.data import EvalClipDataset, ListLoader, read_classes
from reskd_infer.train.distributed import DistInfo, ShardSampler


def evaluate(artifact: str | Path, val_list: str | Path, data_root: str | Path | None = None,
             classes: str | Path | None = None, batch_size: int = 8, workers: int = 2, device: str = "auto",
             num_clips: int | None = None, three_crop: bool = False, backend: str = "auto",
             fallback: bool = True, progress: bool = False) -> dict[str, float]:
    """Evaluate ``artifact`` (checkpoint, .onnx, .plan or export folder) on ``val_list``.

    Returns ``{"top1", "top5"}`` (fractions in 0..1) for single-label models, ``{"mAP"}`` for
    multi-label ones, plus ``num_samples`` and ``views`` (clips x crops per video). ``num_clips``
    and ``three_crop`` override the spec's test views (the spec's defaults otherwise); ``classes``
    (a classes.txt) is checked against the artifact's class names when given.
    """
    with Recognizer(artifact, device=device, backend=backend, fallback=fallback, num_clips=num_clips,
                    three_crop=three_crop) as rec:
        spec = rec.spec
        if classes is not None:
            names = read_classes(classes)
            if tuple(names) != spec.class_names:
                raise DatasetError(f"{classes}: class names differ from those of {artifact} "
                                   f"({len(names)} vs {spec.num_classes} classes)")
        dataset = EvalClipDataset(val_list, data_root, spec)
        scores, targets = _score(rec, dataset, batch_size, workers, progress)
    out = classification_metrics(torch.from_numpy(scores), torch.stack(targets), spec.multi_label)
    out["num_samples"] = len(dataset)
    out["views"] = spec.num_clips * spec.num_crops
    return out


def agreement(artifact: str | Path, reference: str | Path, clip_list: str | Path,
              data_root: str | Path | None = None, batch_size: int = 8, workers: int = 2, device: str = "auto",
              backend: str = "auto", fallback: bool = True, progress: bool = False) -> dict[str, Any]:
    """Score ``artifact``'s agreement with ``reference`` (any two artifacts with the same classes) on an
    unlabelled ``clip_list`` (``video [start_s end_s]`` or ``frame_dir [num_frames]`` per line).

    Each model reads the clips with its own spec's preprocessing through the :class:`Recognizer`, and its
    answer is the served one (class probabilities averaged over the spec's views). Returns
    ``top1_agreement`` (same top-1), ``top5_overlap`` (the reference's top-1 among the model's top 5) and
    ``mean_kl`` (KL(reference || model) per clip, averaged), plus ``num_samples``.
    """
    probs, specs = [], []
    for path in (reference, artifact):
        with Recognizer(path, device=device, backend=backend, fallback=fallback) as rec:
            if rec.spec.multi_label:
                raise DatasetError(f"{path}: agreement is defined for single-label models only")
            dataset = EvalClipDataset(clip_list, data_root, rec.spec, labelled=False)
            probs.append(torch.from_numpy(_score(rec, dataset, batch_size, workers, progress)[0]).double())
            specs.append(rec.spec)
    check_same_classes(artifact, specs[1].class_names, reference, specs[0].class_names)
    return {**agreement_metrics(*probs), "num_samples": len(probs[0])}


def _score(rec: Recognizer, dataset: EvalClipDataset, batch_size: int, workers: int,
           progress: bool) -> tuple[np.ndarray, list[torch.Tensor]]:

    loader = ListLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    rows: list[np.ndarray] = []
    targets: list[torch.Tensor] = []
    for views, target in tqdm(loader, desc="evaluating", disable=not progress, leave=False, dynamic_ncols=True):
        rows.append(rec.probabilities_of_batch(views.flatten(0, 1)))
        targets.extend(target)
    return np.concatenate(rows), targets


class _Indexed(torch.utils.data.Dataset):
    def __init__(self, base: torch.utils.data.Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        clips, target = self.base[i]
        return i, clips, target


@torch.no_grad()
def predict_dataset(model: nn.Module, dataset: EvalClipDataset, device: torch.device, batch_size: int,
                    workers: int, d: DistInfo | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities of the model in memory (averaged over each video's clips, as the Recognizer does)
    and targets; under DDP each rank scores its shard and every rank gets all rows."""
    d = d or DistInfo()
    loader = ListLoader(_Indexed(dataset), batch_size=batch_size, shuffle=False, num_workers=workers,
                        sampler=ShardSampler(len(dataset), d.rank, d.world), persistent_workers=False)
    was_training = model.training
    model.eval()
    rows: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    for idx, clips, target in loader:
        n, k = clips.shape[:2]
        logits = model(clips.flatten(0, 1).to(device, non_blocking=True)).float()
        probs = torch.sigmoid(logits) if dataset.spec.multi_label else torch.softmax(logits, dim=-1)
        probs = probs.reshape(n, k, -1).mean(dim=1).cpu()
        rows.extend(zip(idx.tolist(), probs, target, strict=True))
    model.train(was_training)
    if d.enabled:
        gathered: list[Any] = [None] * d.world
        dist.all_gather_object(gathered, rows)
        rows = [r for part in gathered for r in part]
    rows.sort(key=lambda r: r[0])
    return torch.stack([r[1] for r in rows]), torch.stack([r[2] for r in rows])


def primary_metric(metrics: dict[str, Any]) -> float:
    """The number a best checkpoint is chosen by: mAP (multi-label) or top-1."""
    return float(metrics.get("mAP", metrics.get("top1", float("nan"))))
