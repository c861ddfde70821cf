"""One Recognizer shared by several threads returns exactly what sequential calls return, on every
backend that runs here (PyTorch and ONNX Runtime), for files and in-memory frames alike."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from reskd_infer import ModelSpec, Recognizer, build_model, save_checkpoint
from reskd_infer.export.onnx import export_onnx
from videogen import textured_frames, write_video

THREADS = 4


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("threads")
    spec = ModelSpec(arch="tsn_r18", class_names=["a", "b", "c", "d"], input_size=32, crop_size=48, num_frames=3,
                     num_clips=2)
    torch.manual_seed(1)
    model = build_model(spec).eval()
    ckpt = save_checkpoint(model, spec, root / "m.ckpt")
    onnx_path = export_onnx(model, spec, root / "m.onnx")
    videos: list[object] = []
    for i in range(4):
        videos.append(write_video(root / f"v{i}.mp4", textured_frames(6 + i, 40 + 4 * i, 64, seed=i)))
        videos.append(textured_frames(5 + i, 48, 48 + 8 * i, seed=10 + i))  # frames in memory
    return {"torch": ckpt, "onnxruntime": onnx_path, "openvino": onnx_path}, videos


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "openvino"])
def test_threads_sharing_a_recognizer_match_sequential_calls(inputs, backend):
    artifacts, videos = inputs
    with Recognizer(artifacts[backend], device="cpu", backend=backend) as rec:
        assert rec.backend_name == backend
        expected = [rec.probabilities(v) for v in videos]
        # Every thread classifies every video, in a different order, all at once (a barrier lines them up).
        barrier = threading.Barrier(THREADS)

        def work(shift: int) -> list[tuple[int, np.ndarray]]:
            barrier.wait()
            order = [(i + shift) % len(videos) for i in range(len(videos))]
            return [(i, rec.probabilities(videos[i])) for i in order]

        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(work, range(THREADS)))
        batched = rec.predict_batch(videos, topk=4, workers=THREADS)
    assert len({id(e) for e in expected}) == len(videos)
    assert not all(np.array_equal(expected[0], e) for e in expected[1:])  # the inputs really differ
    for per_thread in results:
        for i, probs in per_thread:
            assert np.array_equal(probs, expected[i]), (backend, i)
    for i, preds in enumerate(batched):
        assert preds[0].index == int(np.argmax(expected[i]))
        assert np.allclose([p.score for p in preds], np.sort(expected[i])[::-1], atol=1e-6)
