"""Writing files so that readers never see half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from reskd_infer.errors import CheckpointError


def _default_file_mode() -> int:
    # mkstemp creates 0600 files; give the final file what open() would (0666 minus the umask).
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename over ``path``: readers never see half a file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:  # on disk before the rename: a crash never leaves a renamed empty file
            os.fsync(fh.fileno())
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk, a quota, a read-only mount: nothing half-written stays behind
        Path(tmp).unlink(missing_ok=True)
        raise CheckpointError(f"{path}: cannot write ({exc.strerror or exc}); nothing was written") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
