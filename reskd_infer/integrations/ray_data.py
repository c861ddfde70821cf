"""Ray Data integration: predict a dataset of video paths with one Recognizer per Ray actor.

``ds.map_batches(RecognizerPredictor, ...)`` runs the callable class as a pool of Ray
actors; each actor loads the model once (``__init__``) and predicts the batches it is
given through the streaming runtime (``Recognizer.predict_iter``), each result as its
``to_dict`` record. The same code runs on a laptop (local Ray) and on a
multi-node cluster (``ray.init("ray://head:10001")`` or a job submitted to the cluster):
Ray places the actors on the nodes; the model path and the videos must be readable
from every node (shared storage, or URLs). Needs the ``[ray]`` extra.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from reskd_infer.runtime.recognizer import Recognizer

COLUMNS = ("video", "label", "score", "predictions", "error_type", "error_message")


def records_to_batch(records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Prediction records -> a columnar batch: top-1 ``label``/``score``, all top-k as JSON in
    ``predictions``, and the error's type and message ("" when it succeeded)."""
    def top(record: dict[str, Any], key: str, empty: Any) -> Any:
        return record["predictions"][0][key] if record["predictions"] else empty

    return {
        "video": np.array([r["video"] for r in records], dtype=object),
        "label": np.array([top(r, "label", "") for r in records], dtype=object),
        "score": np.array([top(r, "score", float("nan")) for r in records], dtype=np.float64),
        "predictions": np.array([json.dumps(r["predictions"]) for r in records], dtype=object),
        "error_type": np.array([(r["error"] or {}).get("type", "") for r in records], dtype=object),
        "error_message": np.array([(r["error"] or {}).get("message", "") for r in records], dtype=object),
    }


class RecognizerPredictor:
    """A callable class for ``Dataset.map_batches``: holds one Recognizer per actor.

    Args:
        model: an artifact path every worker can read (checkpoint, ONNX, plan, export folder).
        column: the input column holding video paths or URLs.
        topk, batch_size, workers: as for ``predict_iter``.
        device, backend: as for :class:`~reskd_infer.Recognizer` ("cuda" with ``num_gpus=1``).
        torch_threads: intra-op threads per actor (one by default: actors already run in parallel).
    """

    def __init__(self, model: str, column: str = "video", topk: int = 5, batch_size: int = 8, workers: int = 2,
                 device: str = "auto", backend: str = "auto", torch_threads: int = 1):
        torch.set_num_threads(torch_threads)
        self.column, self.topk, self.batch_size, self.workers = column, topk, batch_size, workers
        self.recognizer = Recognizer(model, device=device, backend=backend)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        videos = [str(v) for v in batch[self.column]]
        results = self.recognizer.predict_iter(videos, batch_size=self.batch_size, workers=self.workers,
                                               topk=self.topk)
        return records_to_batch([r.to_dict() for r in results])


def predict_dataset(dataset: Any, model: str, actors: int = 1, num_cpus: float = 1, num_gpus: float = 0,
                    batch_size: int = 8, **predictor_kwargs: Any) -> Any:
    """``dataset`` (a ``ray.data.Dataset`` with a ``video`` column) -> a dataset of predictions
    (:data:`COLUMNS`), computed by a fixed pool of ``actors`` actors, each with ``num_cpus`` CPUs
    and ``num_gpus`` GPUs and one Recognizer. Lazy, like every Ray Data transform."""
    import ray.data

    return dataset.map_batches(
        RecognizerPredictor,
        fn_constructor_kwargs={"model": str(model), "batch_size": batch_size, **predictor_kwargs},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=num_cpus,
        num_gpus=num_gpus,
    )
