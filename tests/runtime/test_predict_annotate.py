"""--save-video: the predicted label drawn with OpenCV, encoded as H.264 with PyAV; the test reopens
the written file and finds the label's pixels changed where the text was drawn, and only there."""

import json

import av
import numpy as np
import pytest
import torch

from reskd_infer import ModelSpec, build_model, save_checkpoint
from reskd_infer.cli.predict import main as predict_main
from reskd_infer.runtime.annotate import annotate_video, draw_label
from videogen import textured_frames, write_video


def _decode(path):
    with av.open(str(path)) as container:
        codec = container.streams.video[0].codec_context.name
        return codec, np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture(scope="module")
def grey_clip(tmp_path_factory):
    """A flat mid-grey clip (20 frames, 8 fps), so any drawn pixel stands out."""
    frames = np.full((20, 120, 161, 3), 128, np.uint8)  # odd width: the encoder needs even sizes
    return write_video(tmp_path_factory.mktemp("annotate") / "grey.webm", frames, codec="libvpx-vp9")


def test_label_pixels_change_where_drawn_and_only_there(grey_clip, tmp_path):
    record = {"video": str(grey_clip), "predictions": [{"label": "run", "index": 1, "score": 0.875}],
              "windows": [{"start": 0.0, "end": 1.5, "predictions": [{"label": "walk", "index": 0, "score": 0.6}]},
                          {"start": 1.5, "end": 2.5, "predictions": [{"label": "jump", "index": 2, "score": 0.7}]}]}
    out = annotate_video(grey_clip, record, tmp_path / "grey_annotated.mp4")
    codec, frames = _decode(out)
    _, original = _decode(grey_clip)
    assert codec == "h264" and frames.shape == (20, 120, 160, 3)
    x0, y0, x1, y1 = draw_label(np.full((120, 160, 3), 128, np.uint8), "walk 0.60 [0.0-1.5s]")
    diff = np.abs(frames.astype(int) - original[:, :, :160].astype(int)).max(axis=-1)
    assert (diff[:, y0:y1, x0:x1] > 60).mean() > 0.5  # black box and white text over grey
    assert diff[:, y1 + 8 :, :].max() <= 12  # the rest of the picture is the input, up to coding noise
    # The timeline: frames 0-11 (0..1.4 s) show the first window, frames 12-19 the second: other text.
    text_rows = frames[:, y0:y1, x0:x1].astype(int)
    assert np.abs(text_rows[3] - text_rows[8]).max() <= 40
    assert np.abs(text_rows[3] - text_rows[15]).max() > 100


def test_save_video_flag_writes_one_annotated_file_per_video(grey_clip, tmp_path, capsys):
    torch.manual_seed(0)
    spec = ModelSpec(arch="r3d_18", class_names=["walk", "run"], input_size=32, crop_size=64, num_frames=4,
                     frame_interval=2)
    model = tmp_path / "m.ckpt"
    save_checkpoint(build_model(spec), spec, model)
    (tmp_path / "sub").mkdir()
    other = write_video(tmp_path / "sub" / "grey.mp4", textured_frames(10, 96, 128))  # same stem, another folder
    out_dir = tmp_path / "annotated"
    assert predict_main([str(model), str(grey_clip), str(other), "--save-video", str(out_dir), "--json", "-q"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["annotated"] for r in results] == [str(out_dir / "grey.mp4"), str(out_dir / "grey_2.mp4")]
    for r in results:
        codec, frames = _decode(r["annotated"])
        assert codec == "h264" and len(frames) in (20, 10)
        assert frames[:, :8, :20].mean() < 60  # the black label box at the top left
