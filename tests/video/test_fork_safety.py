"""Decoding in forked DataLoader workers after the parent has decoded (every reskd-train and reskd-eval run does
this): with PyAV 18.1.1's per-thread cached converter the worker's first frame waited for ever on slice threads
that fork does not copy (a CI hang, 2026-12-07). Also: our own converter gives PyAV's pixels, padding included."""

import av
import numpy as np
import torch

from reskd_infer.video import read_frames
from reskd_infer.video.decode import frame_to_rgb
from videogen import textured_frames, write_video


class _Decode(torch.utils.data.Dataset):
    def __init__(self, path):
        self.path = path

    def __len__(self):
        return 2

    def __getitem__(self, index):
        return read_frames(self.path, range(6))


def test_a_worker_forked_after_the_parent_decoded_does_not_hang(tmp_path):
    path = write_video(tmp_path / "clip.mp4", textured_frames(6, 96, 128))
    in_parent = read_frames(path, range(6))  # the parent converts frames first, as training does before its loader forks
    loader = torch.utils.data.DataLoader(_Decode(path), num_workers=1, multiprocessing_context="fork",
                                         timeout=60)  # a hang becomes a RuntimeError after 60 s, not a stuck suite
    batches = list(loader)
    assert len(batches) == 2 and np.array_equal(batches[0][0].numpy(), in_parent)


def test_our_converter_gives_pyavs_pixels_when_rows_are_padded(tmp_path):
    path = write_video(tmp_path / "odd.mp4", textured_frames(3, 50, 86))  # 86 * 3 bytes: rows padded
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            ours = frame_to_rgb(frame)
            assert ours.shape == (50, 86, 3) and ours.flags.c_contiguous
            assert np.array_equal(ours, frame.to_ndarray(format="rgb24"))
