"""The resumable state of a training run, saved after every epoch and loaded by ``--resume``.

One schema (:data:`STATE_KEYS`) is written and read here and nowhere else: the model, optimizer,
scheduler and scaler state dicts, the epoch count, the best evaluation so far, the planned step
count, the DataLoader's shuffling generator and the Python/NumPy/torch random states. The file
loads with ``weights_only=True``: loading it never executes code from it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reskd_infer.errors import CheckpointError
from reskd_infer.io.files import atomic_write
from reskd_infer.train.config import TrainError

STATE_FILE = "train_state.pt"
STATE_KEYS = ("model", "optimizer", "scheduler", "scaler", "epoch", "best_metric", "best_metrics", "total_steps",
              "loader_generator", "rng")


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) random states as weights_only-loadable data."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        # numpy's state holds an ndarray, which weights_only loading refuses: store it as a tensor.
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainState:
    """Everything a run needs to continue bit for bit: the live objects plus the loop's counters."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    loader_generator: torch.Generator
    total_steps: int
    epoch: int = 0  # epochs completed
    best_metric: float = -float("inf")
    best_metrics: dict[str, Any] = field(default_factory=dict)

    def record_eval(self, primary: float, metrics: dict[str, Any]) -> bool:
        """Keep ``metrics`` (tagged with the epoch) if ``primary`` beats the best so far; True if it did."""
        if not metrics or not primary > self.best_metric:
            return False
        self.best_metric, self.best_metrics = primary, {**metrics, "epoch": self.epoch}
        return True

    def save(self, path: Path) -> None:
        """Write the state atomically (a crash mid-write leaves the previous file intact)."""
        payload = {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "epoch": self.epoch,
            "best_metric": self.best_metric, "best_metrics": self.best_metrics, "total_steps": self.total_steps,
            "loader_generator": self.loader_generator.get_state(), "rng": rng_state(),
        }
        assert tuple(payload) == STATE_KEYS
        atomic_write(path, lambda tmp: torch.save(payload, tmp))

    def load(self, path: Path) -> None:
        """Restore from ``path`` (written by :meth:`save`); the planned step count must agree."""
        payload = read_state(path)
        if int(payload["total_steps"]) != self.total_steps:

            raise TrainError(f"{path}: the run was planned for {payload['total_steps']} steps, this "
                             f"configuration gives {self.total_steps}: resume with the same --epochs and data")
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        self.epoch = int(payload["epoch"])
        self.best_metric = float(payload["best_metric"])
        self.best_metrics = dict(payload["best_metrics"])
        self.loader_generator.set_state(payload["loader_generator"])
        set_rng_state(payload["rng"])


def read_state(path: Path) -> dict[str, Any]:
    """The saved payload, checked for every key of the schema (CheckpointError when missing or unreadable)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no training state to resume from (was the run started in this work dir?)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - anything here means the file cannot be trusted
        raise CheckpointError(f"{path}: unreadable training state ({type(exc).__name__}: {exc})") from None
    missing = [k for k in STATE_KEYS if not isinstance(payload, dict) or k not in payload]
    if missing:
        raise CheckpointError(f"{path}: training state lacks {', '.join(missing)} (written by another version?)")
    return payload
