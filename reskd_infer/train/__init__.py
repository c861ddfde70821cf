"""Training: teachers, ResKD cross-resolution distilled students and plain baselines.

Public API (also behind ``reskd-train`` / ``reskd-eval``)::

    from reskd_infer.train import TrainConfig, train, evaluate
    result = train(TrainConfig(arch="tsn_r18", train_list="train.txt", val_list="val.txt",
                               data_root="data", input_size=56, teacher="runs/teacher/best.ckpt",
                               work_dir="runs/student"))
    result["best"], result["last"], result["metrics"]       # paths and the best evaluation
    evaluate(result["best"], "val.txt", data_root="data")   # {"top1": .., "top5": .., "num_samples": ..}

    # adapt a student to footage without labels: the teacher's outputs are the targets
    train(TrainConfig(arch="tsn_r18", input_size=56, teacher="runs/teacher/best.ckpt",
                      unlabelled="my_footage.txt", init_from_teacher=True, work_dir="runs/adapted"))

``TrainConfig`` holds its options in groups (``cfg.data``, ``cfg.model``, ``cfg.optim``, ``cfg.distill``,
``cfg.run``, ``cfg.log``); flat options (``lr=0.01``, ``cfg.lr``) build and read it too.

See docs/training.md.
"""

from reskd_infer.train.config import TrainConfig, TrainError
from reskd_infer.train.evaluation import evaluate
from reskd_infer.train.losses import ResKDLoss, dense_logit_kd_loss, feature_mse_loss, resolve_kd_mode
from reskd_infer.train.trainer import train

__all__ = [
    "ResKDLoss",
    "TrainConfig",
    "TrainError",
    "dense_logit_kd_loss",
    "evaluate",
    "feature_mse_loss",
    "resolve_kd_mode",
    "train",
]
