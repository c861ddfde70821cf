"""Evaluation metrics: top-1/top-5 accuracy (single-label) and mean average precision (multi-label)."""

from __future__ import annotations

import torch


def topk_accuracy(scores: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Fraction of rows whose target class is among the ``k`` highest scores (k capped at the class count)."""
    out = {}
    num_classes = scores.shape[-1]
    for k in ks:
        top = scores.topk(min(k, num_classes), dim=-1).indices
        out[f"top{k}"] = float((top == target[:, None]).any(dim=-1).float().mean())
    return out


def average_precision(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Non-interpolated AP of one class: mean of precision at each positive's rank (ties: stable by index)."""
    order = torch.argsort(scores, descending=True, stable=True)
    hits = labels[order].float()
    if hits.sum() == 0:
        return float("nan")
    precision = hits.cumsum(0) / torch.arange(1, len(hits) + 1, dtype=torch.float32)
    return float((precision * hits).sum() / hits.sum())


def mean_average_precision(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over classes with at least one positive (classes without positives are left out)."""
    aps = [average_precision(scores[:, c], labels[:, c]) for c in range(scores.shape[1])]
    valid = [a for a in aps if a == a]
    return float(sum(valid) / len(valid)) if valid else float("nan")


def classification_metrics(scores: torch.Tensor, target: torch.Tensor, multi_label: bool) -> dict[str, float]:
    """``{"top1", "top5"}`` for class-index targets, ``{"mAP"}`` for multi-hot targets."""
    if multi_label:
        return {"mAP": mean_average_precision(scores.float(), target)}
    return topk_accuracy(scores.float(), target.long())
