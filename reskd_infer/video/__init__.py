"""Video input: decoding (PyAV), frame sampling, and the one preprocessing function."""

from reskd_infer.video.clips import load_clips
from reskd_infer.video.decode import DECODER_NAME, VideoInfo, probe, read_clips, read_frames
from reskd_infer.video.preprocess import (
    clips_to_batch,
    crop_frames,
    frames_to_tensor,
    normalize,
    to_model_resolution,
)
from reskd_infer.video.sampling import dense_indices, sample_indices, segment_indices


def video_to_batch(video, spec, device=None, rng=None):
    """A video file or frames -> the model's input batch (num_clips, 3, T, S, S): what training
    evaluation and the runtime both feed the model."""
    return clips_to_batch(load_clips(video, spec, rng), spec, device)


__all__ = [
    "DECODER_NAME",
    "VideoInfo",
    "clips_to_batch",
    "crop_frames",
    "dense_indices",
    "frames_to_tensor",
    "load_clips",
    "normalize",
    "probe",
    "read_clips",
    "read_frames",
    "sample_indices",
    "segment_indices",
    "to_model_resolution",
    "video_to_batch",
]
