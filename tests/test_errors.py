"""The errors a user hits (issue 10's twelve wrong ones): each message says what is wrong, names the file,
comes without a traceback, and the command exits with its documented code."""

import json
import re
import socket
import warnings
from pathlib import Path

import pytest
import torch
import torchvision

from reskd_infer import ModelSpec, Recognizer, build_model, save_checkpoint
from reskd_infer.cli.export import main as export_main
from reskd_infer.cli.predict import main as predict_main
from reskd_infer.cli.train import eval_main, train_main
from reskd_infer.errors import (
    EXIT_USAGE,
    BackendUnavailableError,
    CheckpointError,
    ReskdError,
    UnreadableVideoError,
    error_dict,
    plain_warnings,
)
from reskd_infer.io.checkpoint import read_checkpoint
from trainkit import make_video_set

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    spec = ModelSpec(arch="tsn_r18", class_names=["a", "b"], input_size=32, crop_size=48, num_frames=2)
    torch.manual_seed(0)
    ckpt = save_checkpoint(build_model(spec), spec, root / "m.ckpt")
    train_list = make_video_set(root / "data", num_videos=4, frames=4, size=48)
    return root, ckpt, train_list


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text and "\x1b[" not in text, text


def test_1_unknown_arch_is_one_line_and_exit_2(small, capsys):
    root, _, train_list = small
    assert train_main(["--arch", "resnet18", "--train-list", str(train_list)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--arch resnet18: unknown architecture" in err and "tsn_r18" in err


def test_2_undecodable_clip_is_one_line_naming_list_and_line(small, tmp_path, capsys):
    root, ckpt, _ = small
    data = tmp_path / "data"
    train_list = make_video_set(data, num_videos=4, frames=4, size=48)
    (data / "videos" / "x2.mp4").write_bytes(b"not a video at all" * 10)
    rc = eval_main([str(ckpt), "--val-list", str(train_list), "--workers", "1", "--device", "cpu", "--json"])
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert rc == EXIT_USAGE and doc["error"]["type"] == "DatasetError"
    assert doc["error"]["message"].startswith(f"{train_list}:3: cannot read")
    _no_traceback(captured.out + captured.err)
    assert captured.err.count("\n") == 1


def test_3_full_model_pickle_is_refused_without_torch_text(tmp_path):
    path = tmp_path / "full.pt"
    torch.save(torchvision.models.resnet18(), path)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    message = str(info.value)
    _no_traceback(message)
    assert "full.pt: refused" in message and "nothing was executed" in message and "state_dict()" in message
    assert "two options" not in message and "weights_only" not in message


def test_4_a_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.ckpt"
    path.write_text("hello\n" * 20)
    with pytest.raises(CheckpointError, match=r"notes\.ckpt: not a checkpoint: .*text file") as info:
        read_checkpoint(path)
    assert "code" not in str(info.value) and "KeyError" not in str(info.value)


def test_5_a_torchvision_state_dict_says_how_to_use_it(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(CheckpointError, match=r"r18\.pth: a bare state dict") as info:
        read_checkpoint(path)
    assert "build_model(spec, weights=" in str(info.value) and "reskd-train --weights" in str(info.value)


def test_6_onnx_and_folders_given_as_checkpoints(small, tmp_path):
    fake_onnx = tmp_path / "model.onnx"
    fake_onnx.write_bytes(b"\x08\x08\x12\x07pytorch")
    with pytest.raises(CheckpointError, match="looks like an ONNX model") as info:
        read_checkpoint(fake_onnx)
    assert "weights_only" not in str(info.value)
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint file"):
        read_checkpoint(tmp_path)


def test_7_folder_missing_onnx_warns_and_no_fallback_fails(small, tmp_path, capsys):
    _, ckpt, train_list = small
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "model.ckpt").write_bytes(ckpt.read_bytes())
    spec = read_checkpoint(ckpt)[1]
    manifest = {"schema": "reskd-infer/export/1", "spec": spec.to_dict(),
                "artifacts": {"checkpoint": "model.ckpt", "onnx": "model.onnx"}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    video = str(train_list.parent / "videos" / "x0.mp4")
    with pytest.warns(RuntimeWarning, match=r"model\.onnx: listed in .*manifest\.json but missing.*model\.ckpt"):
        assert Recognizer(folder).backend_name == "torch"
    assert predict_main(["--no-fallback", str(folder), video]) == EXIT_USAGE
    assert "model.onnx: listed in" in capsys.readouterr().err
    (folder / "model.ckpt").unlink()
    with pytest.raises(BackendUnavailableError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Recognizer(folder)
    message = str(info.value)
    assert "model.onnx" in message and "model.ckpt" in message and "re-export" in message


def test_8_export_missing_student_exits_2(tmp_path, capsys):
    assert export_main(["--student", str(tmp_path / "nope.ckpt"), "-o", str(tmp_path / "out"), "--json"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["error"] == {"type": "CheckpointError", "message": f"{tmp_path / 'nope.ckpt'}: checkpoint not found"}


def test_9_fashion_clips_finds_the_repository_data_from_elsewhere(tmp_path, monkeypatch, capsys):
    from demo.fashion_clips import main as fashion_main

    if not (ROOT / "data" / "fashion-mnist").is_dir():
        pytest.skip("needs `make data` (Fashion-MNIST) in the repository")
    monkeypatch.chdir(tmp_path)  # no ./data here: the default must find the repository's
    assert fashion_main(["--out", str(tmp_path / "fc"), "--per-class-train", "1", "--per-class-val", "1",
                         "--frames", "2", "--size", "32", "--classes", "bag,sandal", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_train"] == 2
    assert fashion_main(["--out", str(tmp_path / "x"), "--data-dir", str(tmp_path / "nodata")]) == 2
    assert "--data-dir" in capsys.readouterr().err


def test_10_warnings_are_one_line_and_gpu_hint_replaces_the_wheel(small, tmp_path, capsys):
    _, ckpt, train_list = small
    with warnings.catch_warnings():  # restores the warning printer afterwards
        warnings.simplefilter("always")
        plain_warnings()
        warnings.warn("model.plan: built for another GPU; falling back to model.onnx", RuntimeWarning, stacklevel=1)
    assert capsys.readouterr().err == "warning: model.plan: built for another GPU; falling back to model.onnx\n"
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from reskd_infer.export.onnx import export_onnx

    spec = read_checkpoint(ckpt)[1]
    onnx_path = export_onnx(build_model(spec), spec, tmp_path / "m.onnx")
    video = str(train_list.parent / "videos" / "x0.mp4")
    assert predict_main(["--device", "cuda", str(onnx_path), video]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "must replace the CPU 'onnxruntime' package" in err and err.count("\n") == 1


def test_11_urls_are_refused_as_urls_not_turned_into_paths(small):
    _, ckpt, _ = small
    with pytest.raises(ReskdError, match="rtsp://127.0.0.1:8554/stream: this URL is not a model"):
        Recognizer("rtsp://127.0.0.1:8554/stream")
    # A video URL is opened by FFmpeg as a URL (never folded into a path): a closed port on 127.0.0.1 fails fast.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v.mp4"
    with Recognizer(ckpt) as rec, pytest.raises(UnreadableVideoError, match=re.escape(url) + ": cannot open URL"):
        rec.predict(url)


def test_12_video_docs_say_the_short_side_resize_antialiases():
    text = (ROOT / "docs" / "video.md").read_text()
    assert ModelSpec(arch="tsn_r18", class_names=["a"]).resize_antialias is True
    assert "antialiased when it shrinks" in text and "bilinear without antialiasing (the same op" not in text


def test_json_errors_carry_type_and_message():
    doc = error_dict(CheckpointError("x.ckpt: broken\nsecond line"))
    assert doc == {"type": "CheckpointError", "message": "x.ckpt: broken; second line"}
