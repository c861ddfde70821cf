"""Training that survives: bad clips in the lists, an unusable work dir, a full disk, and a SIGKILL
mid-epoch with distillation on followed by --resume (bit-identical final weights in deterministic CPU mode)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reskd_infer import ModelSpec, build_model, save_checkpoint
from reskd_infer.cli.train import train_main
from reskd_infer.errors import CheckpointError, DatasetError
from reskd_infer.io.checkpoint import read_checkpoint
from reskd_infer.io.digests import weights_digest as state_digest
from reskd_infer.io.files import atomic_write
from reskd_infer.train import TrainConfig, train
from reskd_infer.train.trainer import STATE_FILE
from reskd_infer.train.workdir import WorkDirError
from trainkit import make_video_set

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("reliable")
    train_list = make_video_set(root, num_videos=8, frames=4, size=40)
    lines = train_list.read_text().splitlines()
    (root / "videos" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
    bad = root / "bad.txt"
    bad.write_text("\n".join(lines[:4] + ["videos/broken.mp4 1"] + lines[4:6]) + "\n")  # line 5 is broken
    spec = ModelSpec(arch="tsn_r18", class_names=["0", "1"], input_size=48, num_frames=2)
    torch.manual_seed(0)
    teacher = save_checkpoint(build_model(spec), spec, root / "teacher.ckpt")
    return root, train_list, bad, teacher


def _cfg(data, work, **kw):
    root, train_list, _, _ = data
    base = dict(arch="tsn_r18", train_list=str(train_list), input_size=32, num_frames=2, epochs=1, batch_size=4,
                workers=0, work_dir=str(work), device="cpu", progress=False, eval_every=1)
    return TrainConfig(**{**base, **kw})


def test_bad_clip_is_logged_with_list_and_line_and_replaced(data, tmp_path):
    root, _, bad, _ = data
    result = train(_cfg(data, tmp_path / "w", train_list=str(bad), max_bad_clips=0.2, workers=1, batch_size=7))
    lines = (tmp_path / "w" / "bad_clips.txt").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{bad}:5\t{root / 'videos' / 'broken.mp4'}\t")
    assert "not a readable media file" in lines[0] or "cannot read" in lines[0]
    assert read_checkpoint(result["last"])[1].input_size == 32


def test_too_many_bad_clips_stop_the_run_in_one_line(data, tmp_path, capsys):
    _, _, bad, _ = data
    rc = train_main(["--arch", "tsn_r18", "--train-list", str(bad), "--input-size", "32", "--num-frames", "2",
                     "--epochs", "1", "--batch-size", "7", "--workers", "1", "--device", "cpu", "--no-progress",
                     "--max-bad-clips", "0.05", "--work-dir", str(tmp_path / "w")])
    lines = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("reskd-train: ")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in lines[0]  # (the run's banner line aside)
    assert "1 of 7 samples cannot be read, more than --max-bad-clips 0.05" in lines[0]


def test_check_clips_reports_before_training(data, tmp_path):
    _, train_list, bad, _ = data
    with pytest.raises(DatasetError, match="1 validation samples cannot be read"):
        train(_cfg(data, tmp_path / "w", val_list=str(bad), check_clips=True, workers=1))
    log = (tmp_path / "w" / "bad_clips.txt").read_text()
    assert log.startswith(f"{bad}:5\t") and not (tmp_path / "w" / "last.ckpt").exists()  # stopped before training


def test_unwritable_work_dir_fails_before_any_work(data, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    start = time.monotonic()
    with pytest.raises(WorkDirError, match=r"a_file/run: work dir is not writable"):
        train(_cfg(data, blocker / "run"))
    assert time.monotonic() - start < 60


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"needs permission to mount a 1 MB tmpfs (a real full disk): {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_fails_early_and_writes_nothing_half(data, tiny_disk):
    with pytest.raises(WorkDirError, match=r"MB free but a round of checkpoints needs about"):
        train(_cfg(data, tiny_disk / "run"))
    assert not (tiny_disk / "run" / "last.ckpt").exists()
    with pytest.raises(CheckpointError, match=r"big\.bin: cannot write \(No space left on device\)"):
        atomic_write(tiny_disk / "big.bin", lambda tmp: Path(tmp).write_bytes(b"\x01" * (4 << 20)))
    assert sorted(p.name for p in tiny_disk.rglob("*")) == ["run"]  # no temporary file left


def _train_cmd(data, work, *extra):
    _, train_list, _, teacher = data
    return [sys.executable, "-m", "reskd_infer.train", "--arch", "tsn_r18", "--train-list", str(train_list),
            "--teacher", str(teacher), "--input-size", "32", "--epochs", "3", "--batch-size", "2", "--workers",
            "0", "--deterministic", "--device", "cpu", "--no-progress", "--w-kd", "1", "--work-dir", str(work),
            *extra]


def test_sigkill_mid_epoch_with_distillation_then_resume_equals_an_uninterrupted_run(data, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    full, killed = tmp_path / "full", tmp_path / "killed"
    reference = subprocess.Popen(_train_cmd(data, full), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    victim = subprocess.Popen(_train_cmd(data, killed), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    metrics = killed / "metrics.jsonl"
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and victim.poll() is None and not (killed / STATE_FILE).exists():
        time.sleep(0.05)
    time.sleep(0.3)  # into the second epoch
    assert victim.poll() is None, victim.stderr.read().decode()[-2000:]
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    # Whatever the kill interrupted, every file on disk is whole and the resume state is the latest epoch.
    epochs_done = torch.load(killed / STATE_FILE, weights_only=True)["epoch"]
    assert 1 <= epochs_done < 3
    assert read_checkpoint(killed / "last.ckpt")[1].provenance["epoch"] in (epochs_done, epochs_done + 1)
    assert all(json.loads(line) for line in metrics.read_text().splitlines())
    resumed = subprocess.run(_train_cmd(data, killed, "--resume"), env=env, capture_output=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert reference.wait(timeout=600) == 0, reference.stderr.read().decode()[-2000:]
    assert not list(killed.glob(".*.tmp"))
    epoch_records = [r for r in map(json.loads, metrics.read_text().splitlines()) if "step" not in r]
    assert [r["epoch"] for r in epoch_records] == [1, 2, 3]  # (per-step records carry a "step" key)
    kd = read_checkpoint(full / "last.ckpt")[1].provenance
    assert kd.get("mode") == "reskd"  # distillation was on
    assert state_digest(read_checkpoint(killed / "last.ckpt")[0]) == state_digest(read_checkpoint(full / "last.ckpt")[0])
