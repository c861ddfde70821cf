"""The work dir of a training run: checked before any work is done, cleaned of what a killed run left.

A run that cannot write its checkpoints should fail in its first second, not after a day of training:
the folder must be writable and hold a round of checkpoints (best.ckpt, last.ckpt, train_state.pt and
the temporary copy each atomic write makes). Files are only ever replaced atomically
(:func:`reskd_infer.io.checkpoint.atomic_write`), so a run killed at any moment leaves complete files and,
at worst, a hidden ``.NAME.XXXX.tmp`` that the next start removes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from torch import nn

from reskd_infer.errors import ReskdError
from reskd_infer.io.files import atomic_write


class WorkDirError(ReskdError):
    """The work dir cannot hold the run's files (not writable, not enough free space)."""


def checkpoint_bytes(model: nn.Module) -> int:
    """Bytes one round of saving needs: best and last checkpoints, the resume state (weights and SGD
    momentum) and one temporary copy, plus slack for metadata and logs."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return 6 * weights + (4 << 20)


def prepare_work_dir(work: Path, bytes_needed: int = 0) -> None:
    """Create ``work``, prove it writable, remove temporary files a killed run left, check free space."""
    try:
        work.mkdir(parents=True, exist_ok=True)
        probe = work / ".reskd-write-probe"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise WorkDirError(f"{work}: work dir is not writable ({exc.strerror or exc}); choose another "
                           "--work-dir") from None
    for stale in work.glob(".*.tmp"):  # an atomic write interrupted by a kill: never a real file
        stale.unlink(missing_ok=True)
    free = shutil.disk_usage(work).free
    if free < bytes_needed:
        raise WorkDirError(f"{work}: {free / 1e6:.1f} MB free but a round of checkpoints needs about "
                           f"{bytes_needed / 1e6:.1f} MB; free some space or choose another --work-dir")


def trim_log(path: Path, epochs_done: int) -> None:
    """Keep the JSON-lines log's records up to ``epochs_done``: a run killed after logging an epoch but
    before saving its resume state redoes that epoch, which must not be logged twice."""
    if not path.is_file():
        return


    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut by the kill
        if int(record.get("epoch", 0)) <= epochs_done:
            kept.append(line)
    text = "".join(f"{line}\n" for line in kept)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
