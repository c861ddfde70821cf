"""Evaluation metrics, shared by ``reskd-eval``, the trainer, ``reskd-card`` and the cascade (the ground floor,
so the serving runtime can use them too): top-1/top-5 accuracy (single-label), mean average precision
(multi-label), and how far one model's answers are from a reference model's (top-1 agreement, top-5
overlap, mean KL)."""

from __future__ import annotations

import numpy as np
import torch

KL_EPS = 1e-12  # probabilities that underflowed to 0 would make the KL infinite


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


def _as_double(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(np.asarray(x)) if not isinstance(x, torch.Tensor) else x).double()


def agreement_metrics(reference: torch.Tensor | np.ndarray, model: torch.Tensor | np.ndarray) -> dict[str, float]:
    """How close ``model``'s class probabilities (N, K) are to ``reference``'s on the same N clips:
    ``top1_agreement`` (same top-1), ``top5_overlap`` (the reference's top-1 among the model's top 5) and
    ``mean_kl`` (KL(reference || model) per clip, averaged), computed in float64."""
    ref, mod = _as_double(reference), _as_double(model)
    top1 = ref.argmax(-1)
    top5 = mod.topk(min(5, mod.shape[-1]), -1).indices
    kl = (ref * (ref.clamp_min(KL_EPS).log() - mod.clamp_min(KL_EPS).log())).sum(-1)
    return {"top1_agreement": float((mod.argmax(-1) == top1).double().mean()),
            "top5_overlap": float((top5 == top1[:, None]).any(-1).double().mean()),
            "mean_kl": float(kl.mean())}
