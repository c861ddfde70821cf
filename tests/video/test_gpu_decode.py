"""GPU decode path (NVDEC via torchcodec). No GPU here: these tests check the fallback and, on the CPU as a
stand-in device (labelled), that the device-side resize and crop agree with the CPU path within one level.
The NVDEC decode itself never ran; docs/video.md says what to validate first on a GPU."""

import numpy as np
import pytest
import torch

from reskd_infer import ModelSpec
from reskd_infer.errors import BackendUnavailableError
from reskd_infer.video import load_clips
from reskd_infer.video.gpu_decode import nvdec_unavailable, read_clips_nvdec
from reskd_infer.video.preprocess import _resized_uint8, crop_frames, resize_frames, resize_frames_on_device
from videogen import textured_frames

SPEC = ModelSpec(arch="tsn_r18", class_names=["a"], num_frames=3, input_size=56)


@pytest.fixture(autouse=True)
def _no_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: these check the CPU fallback")


def test_without_a_gpu_the_cpu_decoder_is_used(clip_dir):
    assert "CUDA" in nvdec_unavailable("cuda") and "not a CUDA device" in nvdec_unavailable("cpu")
    with pytest.raises(BackendUnavailableError, match="GPU decoding unavailable"):
        read_clips_nvdec(clip_dir / "h264.mp4", SPEC)
    assert np.array_equal(load_clips(clip_dir / "h264.mp4", SPEC, device="cuda"), load_clips(clip_dir / "h264.mp4", SPEC))


def test_device_side_resize_and_crop_match_the_cpu_path_within_one_level():
    """Stand-in: the device functions run on a CPU tensor here; on a GPU they run the same torch ops."""
    frames = textured_frames(3, 120, 200)
    on_device = resize_frames_on_device(torch.from_numpy(frames).permute(0, 3, 1, 2), SPEC.resize_short)
    cpu = resize_frames(frames, SPEC.resize_short)
    assert on_device.dtype == torch.uint8 and tuple(on_device.permute(0, 2, 3, 1).shape) == cpu.shape
    assert np.abs(on_device.permute(0, 2, 3, 1).numpy().astype(int) - cpu.astype(int)).max() <= 1
    # The device branch of the shared resize (taken for GPU tensors) against the CPU branch.
    device_branch = resize_frames_on_device(torch.from_numpy(frames).permute(0, 3, 1, 2), SPEC.resize_short)
    assert (device_branch.int() - _resized_uint8(frames, SPEC).int()).abs().max() <= 1
    assert crop_frames(frames, SPEC).shape == (3, 3, SPEC.crop_size, SPEC.crop_size)
