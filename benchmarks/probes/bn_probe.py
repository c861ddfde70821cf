"""Diagnostic: val top-1 of checkpoints as trained and with BatchNorm statistics re-estimated.

Re-estimation: running statistics reset, cumulative average over the training list's clips (the
evaluation crops, stochastic depth off), then the trainer's ``evaluate``. Used to find why the first
trend run sat at chance (EfficientNet-Lite0's BN momentum 0.01 leaves stale statistics after a short
fine-tuning).

    python -m benchmarks.probes.bn_probe CLIPS_DIR CKPT [CKPT...]     # JSON on stdout
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

from reskd_infer.io.checkpoint import load_checkpoint, save_checkpoint
from reskd_infer.train import evaluate
from reskd_infer.train.data import EvalClipDataset


@torch.no_grad()
def reestimate_bn(model: torch.nn.Module, dataset: EvalClipDataset, batch: int = 16) -> None:
    """Reset every BatchNorm and average its statistics over the dataset's clips (train mode, no drop-connect)."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
        if hasattr(m, "drop_connect"):
            m.drop_connect = 0.0
    model.train()
    for i in range(0, len(dataset), batch):
        model.forward_features(torch.cat([dataset[j][0] for j in range(i, min(len(dataset), i + batch))]))
    model.eval()


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    torch.set_num_threads(1)
    data, out = Path(argv[0]), {}
    for ckpt in argv[1:]:
        before = evaluate(ckpt, data / "val.txt", data, workers=0)["top1"]
        model, spec = load_checkpoint(ckpt)
        reestimate_bn(model, EvalClipDataset(data / "train.txt", data, spec))
        with tempfile.TemporaryDirectory() as tmp:
            fixed = save_checkpoint(model, spec, Path(tmp) / "bn.ckpt")
            after = evaluate(fixed, data / "val.txt", data, workers=0)["top1"]
        out[ckpt] = {"top1_as_trained": before, "top1_bn_reestimated": after}
        print(ckpt, before, after, file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
