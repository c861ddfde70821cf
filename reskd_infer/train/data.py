"""Training and evaluation datasets read from annotation list files.

List files (mmaction2 style), one sample per line, paths relative to ``data_root``::

    videos/abc.mp4 3            # a video file and its label index
    videos/def.mp4 1 4          # several label indices: a multi-label sample
    frames/ghi 120 7            # a folder of extracted frames (img_00001.jpg ...), its frame count, label(s)

An unlabelled list (``reskd-train --unlabelled``, ``reskd-eval --reference``) holds no labels::

    cam1/monday.mp4             # a whole video
    cam1/tuesday.mp4 60 3600    # only its span from 60 s to 3600 s: clips are sampled inside it
    frames/ghi [120]            # a frame folder (its frame count defaults to its img_*.jpg files)

Blank lines and lines starting with ``#`` are skipped. A line whose path is a
directory is a frame folder. Paths may not contain spaces.

* Training (:class:`TrainClipDataset`): random frame sampling (``load_clips`` with an
  rng), then augmentation at the *teacher's* resolution: short-side resize,
  multi-scale crop, horizontal flip, resize to ``spec.crop_size``. Items are float
  RGB 0..255 crops ``(3, T, crop, crop)``; the trainer down-samples them to each
  network's resolution and normalizes them on the device with exactly the
  functions evaluation uses (:func:`reskd_infer.video.to_model_resolution`,
  :func:`reskd_infer.video.normalize`), so teacher and student see the same clip.
* Evaluation (:class:`EvalClipDataset`): *is* ``reskd_infer.video`` (``load_clips``
  with ``rng=None`` then ``clips_to_batch``), the runtime's preprocessing.

Every random choice comes from a generator seeded by (seed, epoch, sample index),
so augmentation does not depend on worker count or order, and a resumed run sees
the same clips as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision.io import ImageReadMode, read_image
from tqdm import tqdm

from reskd_infer.errors import DatasetError, ReskdError
from reskd_infer.spec import ModelSpec
from reskd_infer.video import clips_to_batch, load_clips, probe, read_frames
from reskd_infer.video.decode import decode_guard
from reskd_infer.video.preprocess import resize_short_side
from reskd_infer.video.sampling import sample_indices

FRAME_TEMPLATE = "img_{:05d}.jpg"  # frame k (1-based) of a frame folder
MULTI_SCALES = (1.0, 0.875, 0.75, 0.66)  # mmaction2 MultiScaleCrop scales of the short side


@dataclass(frozen=True)
class Sample:
    """One annotated sample of a list file."""

    path: Path
    labels: tuple[int, ...]
    num_frames: int = 0  # frame folders only; 0 for video files
    source: str = ""  # "list_file:line" for error messages
    span: tuple[float, float] | None = None  # unlabelled videos only: (start_s, end_s) clips are sampled in

    @property
    def is_frames(self) -> bool:
        return self.num_frames > 0


def read_classes(path: str | Path) -> list[str]:
    """Class names, one per line (blank lines ignored)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: classes file not found")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise DatasetError(f"{path}: classes file is empty")
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise DatasetError(f"{path}: duplicate class names {dupes}")
    return names


def _parse_int(token: str, what: str, where: str) -> int:
    try:
        value = int(token)
    except ValueError:
        raise DatasetError(f"{where}: {what} {token!r} is not an integer") from None
    if value < 0:
        raise DatasetError(f"{where}: {what} {value} is negative")
    return value


def parse_list(
    list_file: str | Path,
    data_root: str | Path | None = None,
    num_classes: int | None = None,
    check_files: bool = True,
    labelled: bool = True,
) -> list[Sample]:
    """Parse and validate an annotation list (``labelled`` False: an unlabelled list, one ``video
    [start_s end_s]`` or ``frame_dir [num_frames]`` per line; a frame folder's count defaults to its
    ``img_*.jpg`` files; a span limits the video's clips to that part, in seconds).

    Raises :class:`DatasetError` naming ``list_file`` and the line number for a
    malformed line, a missing video or frame folder (checked now, not mid-epoch),
    or a label outside ``[0, num_classes)``.
    """
    list_file = Path(list_file)
    root = Path(data_root) if data_root is not None else list_file.parent
    if not list_file.is_file():
        raise DatasetError(f"{list_file}: list file not found")
    samples: list[Sample] = []
    for lineno, raw in enumerate(list_file.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{list_file}:{lineno}"
        tokens = line.split()
        if not labelled:
            samples.append(_unlabelled_sample(tokens, root, where, check_files))
            continue
        if len(tokens) < 2:
            raise DatasetError(f"{where}: expected 'path label [label...]', got {line!r}")
        path = root / tokens[0]
        num_frames = 0
        label_tokens = tokens[1:]
        if path.is_dir():
            if len(tokens) < 3:
                raise DatasetError(f"{where}: a frame folder needs 'dir num_frames label [label...]', got {line!r}")
            num_frames = _parse_int(tokens[1], "frame count", where)
            if num_frames < 1:
                raise DatasetError(f"{where}: frame folder {path} has frame count 0")
            label_tokens = tokens[2:]
            if check_files and not (path / FRAME_TEMPLATE.format(1)).is_file():
                raise DatasetError(f"{where}: frame folder {path} has no {FRAME_TEMPLATE.format(1)}")
        elif check_files and not path.is_file():
            raise DatasetError(f"{where}: file not found: {path}")
        labels = tuple(_parse_int(t, "label", where) for t in label_tokens)
        if num_classes is not None:
            bad = [v for v in labels if v >= num_classes]
            if bad:
                raise DatasetError(f"{where}: label {bad[0]} out of range (there are {num_classes} classes)")
        samples.append(Sample(path=path, labels=labels, num_frames=num_frames, source=where))
    if not samples:
        raise DatasetError(f"{list_file}: no samples (the list is empty)")
    return samples


def _unlabelled_sample(tokens: list[str], root: Path, where: str, check_files: bool) -> Sample:
    """One line of an unlabelled list: ``video [start_s end_s]`` or ``frame_dir [num_frames]``."""
    path = root / tokens[0]
    if len(tokens) not in ((1, 2) if path.is_dir() else (1, 3)):
        raise DatasetError(f"{where}: an unlabelled list holds 'video [start_s end_s]' or 'frame_dir [num_frames]' "
                           f"per line, got {' '.join(tokens)!r}")
    if not path.is_dir():
        if check_files and not path.is_file():
            raise DatasetError(f"{where}: file not found: {path}")
        span = _parse_span(tokens[1:], where) if len(tokens) == 3 else None
        return Sample(path=path, labels=(), source=where, span=span)
    num_frames = (_parse_int(tokens[1], "frame count", where) if len(tokens) > 1
                  else len(list(path.glob(FRAME_TEMPLATE.replace("{:05d}", "*")))))
    if num_frames < 1:
        raise DatasetError(f"{where}: frame folder {path} has no frames")
    return Sample(path=path, labels=(), num_frames=num_frames, source=where)


def _parse_span(tokens: list[str], where: str) -> tuple[float, float]:
    """``start_s end_s`` -> (start, end) seconds, 0 <= start < end."""
    try:
        start, end = float(tokens[0]), float(tokens[1])
    except ValueError:
        raise DatasetError(f"{where}: span {' '.join(tokens)!r} is not two numbers of seconds") from None
    if not (0 <= start < end) or not np.isfinite(end):
        raise DatasetError(f"{where}: span {start:g} {end:g}: expected 0 <= start_s < end_s")
    return start, end


def span_clips(sample: Sample, spec: ModelSpec, rng: np.random.Generator | None) -> np.ndarray:
    """The clips (num_clips, T, H, W, 3) uint8 ``spec`` samples from the span of ``sample``'s video: the span's
    frames are sampled as if they were the whole video (exact sampling; keyframe sampling does not apply)."""
    assert sample.span is not None
    info = probe(sample.path)
    lo = int(np.ceil(sample.span[0] * info.fps))
    hi = min(info.num_frames, int(np.ceil(sample.span[1] * info.fps)))
    if hi <= lo:
        raise DatasetError(f"{sample.source}: span {sample.span[0]:g}-{sample.span[1]:g} s holds no frame of "
                           f"{sample.path} ({info.num_frames} frames at {info.fps:g} fps)")
    indices = sample_indices(hi - lo, spec, rng) + lo
    frames = decode_guard(sample.path, lambda: read_frames(sample.path, indices.ravel().tolist(), spec.resize_short,
                                                           spec.resize_antialias))
    return frames.reshape(*indices.shape, *frames.shape[1:])


def infer_class_names(lists: Sequence[Sequence[Sample]], classes_file: str | Path | None = None) -> list[str]:
    """``classes_file``'s names, else "0".."K-1" with K = largest label + 1."""
    if classes_file:
        return read_classes(classes_file)
    top = max(max(s.labels) for samples in lists for s in samples)
    return [str(i) for i in range(top + 1)]


def read_frame_folder(sample: Sample, indices: np.ndarray) -> np.ndarray:
    """Decode the frames ``indices`` (0-based) of a frame folder: (*indices.shape, H, W, 3) uint8 RGB."""
    cache: dict[int, np.ndarray] = {}
    for i in sorted(set(indices.ravel().tolist())):
        cache[i] = _read_image(sample.path / FRAME_TEMPLATE.format(i + 1))
    shapes = {a.shape for a in cache.values()}
    if len(shapes) > 1:
        raise DatasetError(f"{sample.source}: frames of {sample.path} have different sizes {sorted(shapes)}")
    flat = np.stack([cache[i] for i in indices.ravel().tolist()])
    return flat.reshape(*indices.shape, *flat.shape[1:])


def _read_image(path: Path) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:  # PIL is optional: torchvision's decoder reads JPEG/PNG too

        return read_image(str(path), mode=ImageReadMode.RGB).permute(1, 2, 0).numpy()
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


class _ListDataset(Dataset):
    """Shared parsing and sample loading of the train and eval datasets."""

    def __init__(self, list_file: str | Path, data_root: str | Path | None, spec: ModelSpec, labelled: bool = True):
        self.list_file = Path(list_file)
        self.spec = spec
        self.labelled = labelled
        self.samples = parse_list(list_file, data_root, num_classes=spec.num_classes, labelled=labelled)
        if not spec.multi_label:
            multi = [s.source for s in self.samples if len(s.labels) > 1]
            if multi:
                raise DatasetError(f"{multi[0]}: several labels on a line but the model is single-label "
                                   "(train with --multi-label)")

    def __len__(self) -> int:
        return len(self.samples)

    def target(self, index: int) -> torch.Tensor:
        """Class index (single-label) or multi-hot float vector (multi-label); -1 for an unlabelled sample."""
        if not self.labelled:
            return torch.tensor(-1, dtype=torch.long)  # a placeholder: the teacher's outputs are the targets
        labels = self.samples[index].labels
        if self.spec.multi_label:
            hot = torch.zeros(self.spec.num_classes)
            hot[list(labels)] = 1.0
            return hot
        return torch.tensor(labels[0], dtype=torch.long)

    def clips(self, index: int, spec: ModelSpec, rng: np.random.Generator | None) -> np.ndarray:
        """The sampled frames (num_clips, T, H, W, 3) uint8 of sample ``index``."""
        sample = self.samples[index]
        try:
            if sample.is_frames:
                return read_frame_folder(sample, sample_indices(sample.num_frames, spec, rng))
            if sample.span is not None:
                return span_clips(sample, spec, rng)
            return load_clips(sample.path, spec, rng)
        except DatasetError:
            raise
        except (ReskdError, OSError, ValueError) as exc:
            # Name the line: a corrupt file mid-epoch is otherwise hard to find in a large list.
            raise DatasetError(f"{sample.source}: cannot read {sample.path}: {exc}") from exc


class EvalClipDataset(_ListDataset):
    """Evaluation items: ``(clips (num_clips, 3, T, S, S), target)``, exactly ``Recognizer.preprocess``."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return clips_to_batch(self.clips(index, self.spec, None), self.spec), self.target(index)


BAD_CLIPS_FILE = "bad_clips.txt"
MAX_REPLACEMENTS = 20  # tries to find a readable sample in place of a bad one


class BadClipLog:
    """``bad_clips.txt`` in the work dir: one line per unreadable sample (``list_file:line<TAB>path<TAB>error``),
    written by whichever DataLoader worker met it (appends of one short line are atomic), and the budget:
    more than ``max_fraction`` of the list's samples bad fails the run with one clear line."""

    def __init__(self, path: str | Path, num_samples: int, max_fraction: float = 0.01):
        self.path = Path(path)
        self.num_samples = num_samples
        self.max_fraction = max_fraction

    def sources(self) -> set[str]:
        if not self.path.is_file():
            return set()
        return {line.split("\t", 1)[0] for line in self.path.read_text(encoding="utf-8").splitlines() if line}

    def add(self, sample: Sample, error: BaseException | str) -> int:
        """Log ``sample`` (once); returns how many samples are logged."""
        known = self.sources()
        if sample.source not in known:
            message = " ".join(str(error).split())
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(f"{sample.source}\t{sample.path}\t{message}\n")
            known.add(sample.source)
        return len(known)

    def record(self, sample: Sample, error: BaseException) -> None:
        """Log ``sample``; raise DatasetError when the bad samples exceed the budget."""
        self.check(self.add(sample, error))

    def check(self, bad: int | None = None) -> None:
        bad = len(self.sources()) if bad is None else bad
        if bad > self.max_fraction * self.num_samples:
            raise DatasetError(f"{bad} of {self.num_samples} samples cannot be read, more than --max-bad-clips "
                               f"{self.max_fraction:g} allows; the list is in {self.path}")


class TrainClipDataset(_ListDataset):
    """Training items: ``(crop (3, T, crop_size, crop_size) float RGB 0..255, target)``.

    The crop is at the teacher's resolution (``spec.crop_size``); the trainer
    down-samples it for the student. Call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, list_file: str | Path, data_root: str | Path | None, spec: ModelSpec, seed: int = 0,
                 flip: bool = True, scales: Sequence[float] = MULTI_SCALES, bad_clips: BadClipLog | None = None,
                 labelled: bool = True):
        super().__init__(list_file, data_root, spec.replace(num_clips=1), labelled)
        self.bad_clips = bad_clips  # None: an unreadable sample raises; else it is logged and replaced
        self.seed = seed
        self.epoch = 0
        self.flip = flip
        self.scales = tuple(scales)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.bad_clips is None:
            return self._item(index)
        chooser = np.random.default_rng([self.seed, self.epoch, index, 7919])  # replacements: deterministic
        candidate = index
        for _ in range(MAX_REPLACEMENTS):
            try:
                return self._item(candidate)
            except DatasetError as exc:
                self.bad_clips.record(self.samples[candidate], exc)
            candidate = int(chooser.integers(len(self.samples)))
        raise DatasetError(f"{self.samples[index].source}: no readable sample found in {MAX_REPLACEMENTS} tries "
                           f"in place of it; see {self.bad_clips.path}")

    def _item(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self.rng(index)
        frames = self.clips(index, self.spec, rng)[0]  # (T, H, W, 3)
        return augment(frames, self.spec, rng, self.scales, self.flip), self.target(index)


def multi_scale_box(height: int, width: int, rng: np.random.Generator,
                    scales: Sequence[float] = MULTI_SCALES, max_gap: int = 1,
                    center: bool = False) -> tuple[int, int, int, int]:
    """mmaction2's MultiScaleCrop box (top, left, h, w): sides are scales of the short side,
    their scale indices at most ``max_gap`` apart (bounded aspect distortion), at a random offset
    (``center``: centred as evaluation's crop, for tests that compare the two paths)."""
    base = min(height, width)
    sizes = [max(1, int(base * s)) for s in scales]
    pairs = [(h, w) for i, h in enumerate(sizes) for j, w in enumerate(sizes) if abs(i - j) <= max_gap]
    h, w = pairs[int(rng.integers(len(pairs)))]
    if center:
        return (height - h) // 2, (width - w) // 2, h, w
    top = int(rng.integers(height - h + 1))
    left = int(rng.integers(width - w + 1))
    return top, left, h, w


def augment(frames: np.ndarray | torch.Tensor, spec: ModelSpec, rng: np.random.Generator,
            scales: Sequence[float] = MULTI_SCALES, flip: bool = True, center: bool = False) -> torch.Tensor:
    """Training augmentation of one clip: uint8 (T, H, W, 3) -> float (3, T, crop_size, crop_size), 0..255.

    Short side to ``spec.resize_short``, multi-scale crop, resize to ``spec.crop_size``,
    random horizontal flip; the same box and flip for every frame of the clip.
    """
    x = torch.as_tensor(np.asarray(frames)).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    x = resize_short_side(x, spec.resize_short, spec.resize_antialias)
    top, left, h, w = multi_scale_box(x.shape[-2], x.shape[-1], rng, scales, center=center)
    x = x[..., top : top + h, left : left + w]
    if (h, w) != (spec.crop_size, spec.crop_size):
        x = F.interpolate(x, size=(spec.crop_size, spec.crop_size), mode="bilinear", align_corners=False,
                          antialias=spec.resize_antialias and min(h, w) > spec.crop_size)
    if flip and rng.random() < 0.5:
        x = x.flip(-1)
    return x.transpose(0, 1).contiguous()


# ---- errors out of DataLoader workers --------------------------------------------------------------
@dataclass(frozen=True)
class ItemFailure:
    """A sample that could not be read, carried out of a DataLoader worker as data: an exception raised
    in a worker reaches the user wrapped in the worker's traceback, this reaches them as one line."""

    index: int
    error_type: str
    message: str

    def error(self) -> DatasetError:
        return DatasetError(self.message)


class _CatchErrors(Dataset):
    """``dataset[i]``, or an :class:`ItemFailure` when reading sample ``i`` raises."""

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> object:
        try:
            return self.base[index]
        except ReskdError as exc:
            return ItemFailure(index, type(exc).__name__, " ".join(str(exc).split()))
        except Exception as exc:  # noqa: BLE001 - anything else a decoder raises must not become a worker traceback
            return ItemFailure(index, type(exc).__name__, f"sample {index}: {type(exc).__name__}: {exc}")


def _collate(items: list[object]) -> object:
    failed = [item for item in items if isinstance(item, ItemFailure)]
    return failed[0] if failed else default_collate(items)


class ListLoader(DataLoader):
    """A DataLoader whose unreadable samples raise one clean :class:`DatasetError` (naming list file and
    line) in the main process instead of a worker traceback."""

    def __init__(self, dataset: Dataset, **kwargs: object):
        super().__init__(_CatchErrors(dataset), collate_fn=_collate, **kwargs)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[object]:
        for batch in super().__iter__():
            if isinstance(batch, ItemFailure):
                raise batch.error()
            yield batch


class _Readable(Dataset):
    """Item i: the error message of sample i, or "" when it decodes (for :func:`check_clips`)."""

    def __init__(self, dataset: _ListDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> str:
        try:
            self.dataset.clips(index, self.dataset.spec, None)
        except ReskdError as exc:
            return " ".join(str(exc).split())
        return ""


def _first(items: list[str]) -> str:
    return items[0]


def check_clips(train: _ListDataset, log: BadClipLog, val: _ListDataset | None = None, workers: int = 2,
                progress: bool = True) -> int:
    """Decode every sample of ``train`` (and ``val``) in ``workers`` processes with a progress bar, log the
    unreadable ones to ``log``; raise DatasetError beyond the training budget or for any bad validation
    sample (those cannot be replaced without changing the metric). Returns how many training samples are bad."""

    bad: dict[str, int] = {"train": 0, "val": 0}
    parts = [("train", train)] + ([("val", val)] if val is not None else [])
    with tqdm(total=sum(len(d) for _, d in parts), desc="checking clips", disable=not progress,
              dynamic_ncols=True) as bar:
        for name, dataset in parts:
            loader = DataLoader(_Readable(dataset), batch_size=1, num_workers=workers, collate_fn=_first)
            for index, message in enumerate(loader):
                if message:
                    bad[name] += 1
                    log.add(dataset.samples[index], message)
                bar.update(1)
    if bad["val"]:
        raise DatasetError(f"{bad['val']} validation samples cannot be read; they are listed in {log.path}")
    log.check(bad["train"])
    return bad["train"]
