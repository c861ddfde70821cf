"""The divergence guard: the rule on loss curves shaped like the runs this project logged, and a real run whose
loss turns NaN stopping with one line and exit 1 (without the guard the same run trains on)."""

import math

import pytest

from reskd_infer.cli.train import train_main
from reskd_infer.train.divergence import LEARNT_FRACTION, PATIENCE_STEPS, DivergenceGuard
from trainkit import make_video_set

CHANCE_8 = math.log(8)


def _feed(guard, losses, lr=0.03):
    """Feed ``losses`` step by step; the step at which the guard fired, or None."""
    for step, task in enumerate(losses, start=1):
        guard.observe({"step": step, "task": task, "lr": lr})
        if guard.reason is not None:
            return step
    return None


def test_a_learnt_run_that_climbs_back_to_chance_is_stopped_after_the_patience():
    # The collapsed TSM student's shape: from the teacher's weights at 1.8, down to 1.2, up to 5.8, then chance.
    losses = [1.8 - 0.03 * i for i in range(20)] + [3.0, 4.5, 5.8, 5.0, 4.0, 3.0] + [2.1] * 200
    guard = DivergenceGuard(8)
    fired = _feed(guard, losses)
    assert fired is not None and 26 + PATIENCE_STEPS - 10 <= fired <= 26 + PATIENCE_STEPS
    assert "task loss fell to 1.46" in guard.reason and "ln 8 = 2.08" in guard.reason and "lr 0.03" in guard.reason


def test_a_run_from_scratch_that_starts_at_chance_and_learns_is_spared():
    losses = [CHANCE_8 + 0.05] * 300 + [CHANCE_8 - 0.002 * i for i in range(600)]
    assert _feed(DivergenceGuard(8), losses) is None


def test_a_spike_shorter_than_the_patience_is_spared():
    losses = [0.5] * 50 + [CHANCE_8 + 1.0] * 20 + [0.5] * 100
    assert _feed(DivergenceGuard(8), losses) is None


def test_a_run_that_never_learnt_enough_is_spared():
    losses = [LEARNT_FRACTION * CHANCE_8 + 0.1] * 50 + [CHANCE_8 + 0.2] * 300
    assert _feed(DivergenceGuard(8), losses) is None


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_task_loss_fires_at_once(bad):
    guard = DivergenceGuard(8)
    assert _feed(guard, [1.0, 0.9, bad, 0.8]) == 3 and f"task loss is {bad}" in guard.reason


def test_an_inactive_guard_never_fires():
    assert _feed(DivergenceGuard(8, active=False), [0.2] * 20 + [math.nan] + [5.0] * 200) is None
    assert _feed(DivergenceGuard(1), [0.0] * 10 + [5.0] * 200) is None  # one class: no chance level


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return make_video_set(tmp_path_factory.mktemp("diverge"), num_videos=8, frames=4, size=40)


def _args(train_list, work, *extra):
    return ["--arch", "tsn_r18", "--train-list", str(train_list), "--input-size", "32", "--num-frames", "2",
            "--epochs", "2", "--batch-size", "4", "--workers", "0", "--device", "cpu", "--no-progress",
            "--lr", "1e30", "--warmup-epochs", "0", "--clip-grad", "0", "--work-dir", str(work), *extra]


def test_a_run_whose_loss_turns_nan_stops_in_one_line_with_exit_1_and_saves_nothing(videos, tmp_path, capsys):
    rc = train_main(_args(videos, tmp_path / "w"))
    lines = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("reskd-train: ")]
    assert rc == 1 and len(lines) == 1 and "Traceback" not in lines[0], lines
    assert lines[0].startswith(f"error: {tmp_path / 'w'}: training diverged in epoch 1/2 (step ")
    assert "the task loss is nan" in lines[0] and "--no-divergence-guard" in lines[0]
    assert not (tmp_path / "w" / "last.ckpt").exists()


def test_without_the_guard_the_same_run_trains_on(videos, tmp_path, capsys):
    assert train_main(_args(videos, tmp_path / "w", "--no-divergence-guard")) == 0
    assert (tmp_path / "w" / "last.ckpt").exists()
