import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "helpers"))  # videogen, trainkit, the TensorRT/Triton stand-ins
# Two pytest-xdist workers share the two cores: one intra-op thread each (on these shared cores a
# second thread can make a small op hundreds of times slower); a lone process keeps two.
torch.set_num_threads(int(os.environ.get("RESKD_TEST_THREADS", "1" if "PYTEST_XDIST_WORKER" in os.environ else "2")))


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory):
    """A few real encoded clips shared by the runtime tests."""
    from videogen import textured_frames, write_video

    root = tmp_path_factory.mktemp("clips")
    write_video(root / "h264.mp4", textured_frames(20, 120, 160, seed=1))
    write_video(root / "vp9_odd.webm", textured_frames(12, 239, 321, seed=2), codec="libvpx-vp9")
    write_video(root / "mjpeg.avi", textured_frames(9, 96, 128, seed=3), codec="mjpeg", pix_fmt="yuvj420p")
    return root
