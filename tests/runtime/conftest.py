import pytest
import torch

from reskd_infer import ModelSpec, build_model, save_checkpoint


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A random-weight r3d_18 student at 32 px (crop 64, 4 frames, interval 2): the runtime tests' model."""
    torch.manual_seed(0)
    spec = ModelSpec(arch="r3d_18", class_names=["walk", "run", "jump"], input_size=32, crop_size=64,
                     num_frames=4, frame_interval=2, num_clips=1)
    path = tmp_path_factory.mktemp("model") / "tiny.ckpt"
    save_checkpoint(build_model(spec), spec, path)
    return path
