"""``TrainConfig`` in groups: flat options still build, read and write it, every flag and YAML key of the
flat configuration is still accepted (flat, or under its group), and ``--preset`` still overrides."""

from __future__ import annotations

import dataclasses

import pytest

from reskd_infer.cli.train import build_train_parser, config_from_args
from reskd_infer.errors import ReskdError
from reskd_infer.train import TrainConfig
from reskd_infer.train.config import FIELD_GROUP, GROUPS, DataConfig, OptimConfig, resolve_config

# The options of the flat TrainConfig this grouping replaced (main before issue 23): each is still a flag,
# a YAML key and a flat attribute.
FLAT_OPTIONS = (
    "arch", "train_list", "val_list", "data_root", "classes", "input_size", "num_frames", "frame_interval",
    "keyframe_sampling", "crop_size", "epochs", "batch_size", "eval_batch_size", "lr", "weight_decay", "momentum",
    "warmup_epochs", "clip_grad", "clip_mode", "preset", "kd_loss", "w_kd", "kd_warmup_epochs", "kd_warmup_from",
    "w_logit", "kd_mode", "temperature", "teacher", "no_kd", "weights", "init_from_teacher", "pretrained_imagenet",
    "seed", "workers", "eval_every", "work_dir", "resume", "stop_after_epoch", "device", "deterministic",
    "multi_label", "multi_label_loss", "flip", "bn_momentum", "precise_bn", "log_every", "amp", "dataset",
    "progress", "max_bad_clips", "check_clips", "extra_provenance")


def test_flat_options_build_read_and_write_the_groups():
    flat = TrainConfig(arch="tsn_r50", train_list="t.txt", lr=0.02, kd_loss="mse", seed=3, progress=False)
    grouped = TrainConfig(data=DataConfig(train_list="t.txt"), optim=OptimConfig(lr=0.02))
    grouped.arch, grouped.kd_loss, grouped.seed, grouped.progress = "tsn_r50", "mse", 3, False
    assert flat == grouped
    assert (flat.lr, flat.optim.lr, flat.model.arch, flat.distill.kd_loss, flat.run.seed) == (0.02, 0.02, "tsn_r50",
                                                                                               "mse", 3)
    changed = dataclasses.replace(flat, lr=0.5, batch_size=2)
    assert (changed.lr, changed.batch_size, flat.lr, flat.batch_size) == (0.5, 2, 0.02, 8)
    assert changed.optim is not flat.optim and flat.replace(seed=4).seed == 4
    assert set(FIELD_GROUP) == set(FLAT_OPTIONS) | {"unlabelled", "freeze_bn", "freeze_head", "logit_calibration",
                                                         "divergence_guard"}
    assert list(flat.to_dict()) == list(GROUPS) and flat.to_dict()["optim"]["lr"] == 0.02
    assert flat.flat_dict()["lr"] == 0.02 and set(flat.flat_dict()) == set(FIELD_GROUP)
    with pytest.raises(TypeError, match="unexpected option 'learning_rate'"):
        TrainConfig(learning_rate=0.1)
    with pytest.raises(AttributeError, match="no option 'learning_rate'"):
        flat.learning_rate = 0.1


def test_every_flat_flag_is_still_a_flag():
    flags = {a.dest for a in build_train_parser()._actions}
    assert set(FLAT_OPTIONS) - {"extra_provenance"} <= flags


def test_yaml_keys_flat_or_grouped_give_the_same_config(tmp_path):
    (tmp_path / "flat.yaml").write_text("arch: tsn_r18\ntrain-list: t.txt\nlr: 1e-2\nkd_loss: mse\nno_kd: true\n"
                                        "workers: 0\n")
    (tmp_path / "grouped.yaml").write_text("model: {arch: tsn_r18}\ndata: {train-list: t.txt, workers: 0}\n"
                                           "optim: {lr: 1e-2}\ndistill: {kd_loss: mse, no_kd: true}\n")
    flat, grouped = (config_from_args(["--config", str(tmp_path / n)]) for n in ("flat.yaml", "grouped.yaml"))
    assert flat == grouped and grouped.lr == 0.01 and grouped.no_kd is True
    assert config_from_args(["--config", str(tmp_path / "grouped.yaml"), "--lr", "0.5"]).optim.lr == 0.5
    (tmp_path / "wrong.yaml").write_text("optim: {arch: tsn_r18}\n")
    with pytest.raises(ReskdError, match="'optim' has no option 'arch'"):
        config_from_args(["--config", str(tmp_path / "wrong.yaml")])


def test_the_paper_preset_still_overrides_its_four_options():
    cfg = resolve_config(TrainConfig(train_list="t.txt", preset="paper", kd_loss="pooled", w_logit=1.0))
    assert (cfg.kd_loss, cfg.w_kd, cfg.kd_warmup_epochs, cfg.w_logit, cfg.clip_mode) == ("mse", 100.0, 0.0, 0.0,
                                                                                         "global")
    assert cfg.distill.kd_loss == "mse" and cfg.optim.clip_mode == "global" and cfg.model.freeze_bn is False
