"""Prediction files that survive a killed run: JSON Lines (or CSV), one line per video,
flushed as each video is done; resume, and merging the files of several shards.

A JSON Lines record (:meth:`reskd_infer.runtime.results.VideoResult.to_dict`, tagged with its shard)::

    {"video": "clips/a.mp4", "predictions": [{"label": "run", "index": 1, "score": 0.91}, ...],
     "error": null, "timings": {"decode": 41.2, ...}, "shard": "0/4"}

``error`` is ``{"type": "UnreadableVideoError", "message": "..."}`` for a video that
failed (``predictions`` is then empty); ``windows`` (start/end seconds and predictions)
is present when a timeline was asked for; ``shard`` when the run was one shard of n;
``answered_by`` (``"small"`` or ``"large"``) in a cascade's records. A CSV file has one row per
video (``video``, ``label_k``/``score_k`` for k up to top-k, ``answered_by`` for a cascade, then
``error_type``/``error_message``); a resumed CSV must have the header this run would write.

A killed run leaves at most one partial last line; :func:`completed_videos` (used on
resume) cuts it off, so the file again holds whole records only, each video once.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from reskd_infer.errors import OutputError

FORMATS = ("jsonl", "csv")


def result_record(result: Any, shard: tuple[int, int] | None = None) -> dict[str, Any]:
    """The record of one result (its ``to_dict``, or a dict already shaped like one), tagged with its shard."""
    record = dict(result) if isinstance(result, dict) else result.to_dict()
    if shard is not None:
        record["shard"] = f"{shard[0]}/{shard[1]}"
    return record


# ---- resume -------------------------------------------------------------------------------------
def _cut_partial_line(path: Path) -> int:
    """Drop a last line without its newline (a write cut short by a kill); returns bytes dropped."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return 0
        back = min(size, 1 << 16)
        while True:
            f.seek(size - back)
            tail = f.read(back)
            cut = tail.rfind(b"\n")
            if cut >= 0 or back == size:
                keep = size - back + cut + 1 if cut >= 0 else 0
                break
            back = min(size, back * 4)
        f.truncate(keep)
    return size - keep


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a JSON Lines predictions file; :class:`OutputError` names a bad line."""
    path = Path(path)
    if not path.is_file():
        raise OutputError(f"{path}: predictions file not found")
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            if not line.endswith("\n"):
                raise OutputError(f"{path}:{lineno}: partial last line (the run was killed); "
                                  "re-run the same command to resume and complete it")
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise OutputError(f"{path}:{lineno}: not a JSON line ({exc})") from None
            if not isinstance(record, dict) or not isinstance(record.get("video"), str):
                raise OutputError(f"{path}:{lineno}: record has no 'video' string")
            records.append(record)
    return records


def _csv_videos(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    if rows and rows[0][:1] == ["video"]:
        rows = rows[1:]
    return [row[0] for row in rows if row]


def completed_videos(path: str | Path, fmt: str = "jsonl") -> set[str]:
    """Videos already in a predictions file (after cutting off a partial last line)."""
    path = Path(path)
    if not path.exists():
        return set()
    _cut_partial_line(path)
    if fmt == "csv":
        return set(_csv_videos(path))
    return {r["video"] for r in read_jsonl(path)}


def _check_csv_header(path: Path, expected: list[str]) -> None:
    """Refuse to resume a CSV written with other columns (another --topk, or with/without a cascade)."""
    with open(path, encoding="utf-8", newline="") as f:
        header = next(csv.reader(f), None)  # the first row only: the videos were read once already
    if header is not None and header != expected:
        raise OutputError(f"{path}: its columns ({','.join(header)}) differ from this run's "
                          f"({','.join(expected)}); resume with the same --topk and --cascade, or pass --no-resume")


# ---- writing ------------------------------------------------------------------------------------
def csv_header(topk: int, answered_by: bool = False) -> list[str]:
    cols = ["video"]
    for k in range(1, topk + 1):
        cols += [f"label_{k}", f"score_{k}"]
    return cols + ["answered_by"] * answered_by + ["error_type", "error_message"]


def csv_row(record: dict[str, Any], topk: int, answered_by: bool = False) -> list[str]:
    row = [record["video"]]
    preds = record.get("predictions") or []
    for k in range(topk):
        row += [preds[k]["label"], f"{preds[k]['score']:.6f}"] if k < len(preds) else ["", ""]
    if answered_by:
        row.append(record.get("answered_by") or "")
    error = record.get("error") or {}
    return row + [error.get("type", ""), error.get("message", "")]


class PredictionWriter:
    """Append records to a predictions file, one flushed line per video.

    With ``resume=True`` (the default) an existing file is kept: :attr:`done` holds the
    videos it already has and :meth:`write` refuses to write them again. ``resume=False``
    starts the file afresh. ``answered_by`` adds that column to a CSV file (a cascade's records).
    """

    def __init__(self, path: str | Path, fmt: str = "jsonl", topk: int = 5, resume: bool = True,
                 answered_by: bool = False):
        if fmt not in FORMATS:
            raise OutputError(f"unknown output format {fmt!r}; expected one of {', '.join(FORMATS)}")
        self.path, self.fmt, self.topk, self.answered_by = Path(path), fmt, topk, answered_by
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: set[str] = completed_videos(self.path, fmt) if resume else set()
        fresh = not resume or not self.path.exists() or self.path.stat().st_size == 0
        header = csv_header(topk, answered_by)
        if fmt == "csv" and not fresh:
            _check_csv_header(self.path, header)
        self._file = open(self.path, "w" if not resume else "a", encoding="utf-8", newline="")
        if fmt == "csv" and fresh:
            self._write_line(header)

    def _write_line(self, row: list[str]) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(row)
        self._file.write(buf.getvalue())

    def write(self, record: dict[str, Any]) -> bool:
        """Write one record and flush it; False (nothing written) if the video is already in the file."""
        if record["video"] in self.done:
            return False
        if self.fmt == "csv":
            self._write_line(csv_row(record, self.topk, self.answered_by))
        else:
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        self.done.add(record["video"])
        return True

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_jsonl(results: Iterable[Any], path: str | Path, resume: bool = True,
                shard: tuple[int, int] | None = None) -> int:
    """Write results (``predict_iter``'s, or record dicts) to a JSON Lines file as they come;
    returns how many lines were written (videos already in the file are skipped)."""
    written = 0
    with PredictionWriter(path, "jsonl", resume=resume) as writer:
        for result in results:
            written += writer.write(result_record(result, shard))
    return written


# ---- merging shards -----------------------------------------------------------------------------
def _check_shards(seen: dict[str, str], counts: set[int]) -> None:
    if len(counts) > 1:
        raise OutputError(f"shard files come from runs split differently (n = {sorted(counts)})")
    if counts:
        n = counts.pop()
        missing = sorted(set(range(n)) - {int(s.split("/")[0]) for s in seen})
        if missing:
            raise OutputError(f"shards {', '.join(f'{i}/{n}' for i in missing)} are missing from the merge")


def merge_jsonl(inputs: Sequence[str | Path], output: str | Path | None = None) -> list[dict[str, Any]]:
    """Check and merge the predictions files of several shards.

    Raises :class:`OutputError` when a file is corrupt or partial, a video appears twice,
    or (for sharded runs) the files come from different splits or a shard is missing.
    Writes the merged records to ``output`` atomically when given, and returns them.
    """
    if not inputs:
        raise OutputError("nothing to merge: no input file")
    merged: list[dict[str, Any]] = []
    where: dict[str, str] = {}
    shards: dict[str, str] = {}
    for path in inputs:
        for record in read_jsonl(path):
            video = record["video"]
            if video in where:
                raise OutputError(f"{path}: video {video!r} is also in {where[video]}")
            where[video] = str(path)
            if "shard" in record:
                shards[record["shard"]] = str(path)
            merged.append(record)
    _check_shards(shards, {int(s.split("/")[1]) for s in shards})
    if output is not None:
        output = Path(output)
        tmp = output.with_name(output.name + ".tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in merged), encoding="utf-8")
        os.replace(tmp, output)
    return merged
