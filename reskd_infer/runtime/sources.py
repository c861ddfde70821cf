"""Video sources as practitioners give them, expanded into a deterministic list of inputs.

A source is one of:

* a video file (kept even when missing: predicting it then yields an error result);
* a directory, searched recursively for files with a video extension (sorted);
* a glob (``clips/**/*.mp4``; ``**`` recurses), its video files sorted;
* a URL FFmpeg opens (``http(s)://``, ``rtsp://``, ``rtmp://``, ``udp://``...), kept as is;
* a V4L2 capture device (``/dev/video0``), kept as is;
* ``list_file=``: one path per line, or a Kinetics/mmaction2-style list whose first
  column is the path (labels after it are ignored), relative to ``data_root``
  (default: the list file's folder). Blank lines and ``#`` comments are skipped.

The expansion keeps the order sources were given in and drops repeats, so every
machine that expands the same sources gets the same list, and :func:`shard` splits
it the same way everywhere.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from reskd_infer.errors import SourceError
from reskd_infer.video.decode import VIDEO_EXTENSIONS
from reskd_infer.video.remote import is_url

# Protocols that carry a live feed: read continuously and predicted per window.
LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "udp", "rtp", "srt", "tcp"})
_GLOB_CHARS = re.compile(r"[*?\[]")

T = TypeVar("T")


def is_capture_device(source: str | Path) -> bool:
    """True for V4L2 capture devices such as ``/dev/video0``."""
    return str(source).startswith("/dev/video")


def is_live(source: str | Path) -> bool:
    """True for sources that are live feeds (RTSP, RTMP, UDP, SRT..., capture devices).

    ``http(s)://`` URLs are predicted like files unless the caller asks for streaming,
    since most of them serve a finished file.
    """
    if is_capture_device(source):
        return True
    return is_url(source) and str(source).split("://", 1)[0].lower() in LIVE_SCHEMES


def _videos_under(folder: Path, extensions: frozenset[str]) -> list[str]:
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        found += [os.path.join(root, f) for f in sorted(files) if Path(f).suffix.lower() in extensions]
    return found


def read_source_list(list_file: str | Path, data_root: str | Path | None = None) -> list[str]:
    """The paths a list file names (first column of each line), joined to ``data_root``."""
    list_file = Path(list_file)
    if not list_file.is_file():
        raise SourceError(f"{list_file}: list file not found")
    root = Path(data_root) if data_root is not None else list_file.parent
    paths = []
    for line in list_file.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        first = line.split()[0]
        paths.append(first if is_url(first) or os.path.isabs(first) else str(root / first))
    if not paths:
        raise SourceError(f"{list_file}: list file names no video")
    return paths


def _expand_one(source: str, extensions: frozenset[str]) -> list[str]:
    if is_url(source) or is_capture_device(source):
        return [source]
    path = Path(source)
    if path.is_dir():
        found = _videos_under(path, extensions)
        if not found:
            raise SourceError(f"{source}: folder holds no video file ({', '.join(sorted(extensions))})")
        return found
    if not path.exists() and _GLOB_CHARS.search(source):
        found = sorted(p for p in glob.glob(source, recursive=True)
                       if os.path.isfile(p) and Path(p).suffix.lower() in extensions)
        if not found:
            raise SourceError(f"{source}: pattern matches no video file")
        return found
    return [source]  # a file, or a missing one: predicting it reports the error per video


def expand_sources(sources: str | Path | Iterable[str | Path] = (), list_file: str | Path | None = None,
                   data_root: str | Path | None = None,
                   extensions: Iterable[str] = VIDEO_EXTENSIONS) -> list[str]:
    """Every video the sources name, in order, each once. Raises :class:`SourceError`
    for a list file that is missing or empty, a folder without videos, a glob matching
    nothing, or no source at all."""
    if isinstance(sources, (str, Path)):
        sources = [sources]
    exts = frozenset(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    out: list[str] = []
    for source in sources:
        out += _expand_one(str(source), exts)
    if list_file is not None:
        out += read_source_list(list_file, data_root)
    if not out:
        raise SourceError("no video source given")
    return list(dict.fromkeys(out))


# ---- shards -------------------------------------------------------------------------------------
def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise SourceError(f"shard {text!r}: expected 'i/n', e.g. 0/4")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise SourceError(f"shard {text!r}: need 0 <= i < n")
    return index, count


def shard_from_env(environ: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """(RANK, WORLD_SIZE) as set by torchrun or a scheduler, or None when not launched that way."""
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    return parse_shard(f"{env['RANK']}/{env['WORLD_SIZE']}")


def shard(items: Sequence[T], index: int, count: int) -> list[T]:
    """Items ``index, index + count, ...``: the shards are disjoint, cover every item, and
    differ in size by at most one."""
    if count < 1 or not 0 <= index < count:
        raise SourceError(f"shard {index}/{count}: need 0 <= i < n")
    return list(items[index::count])
