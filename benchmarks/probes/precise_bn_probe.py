"""Probe: test and val top-1 of trained checkpoints with and without ``--precise-bn`` style re-estimation.

For each checkpoint: evaluate as trained; then re-estimate its BatchNorm statistics with the trainer's
:func:`~reskd_infer.train.trainer.precise_bn` over N shuffled training batches at the student's resolution
(the training crops, down-sampled as in training) and evaluate again.

    python -m benchmarks.probes.precise_bn_probe CLIPS_DIR TRAIN_LIST N CKPT [CKPT...]     # JSON on stdout
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

from reskd_infer.io.checkpoint import load_checkpoint, save_checkpoint
from reskd_infer.train import evaluate
from reskd_infer.train.data import TrainClipDataset
from reskd_infer.train.distiller import model_input
from reskd_infer.train.trainer import precise_bn


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    torch.set_num_threads(1)
    data, train_list, n = Path(argv[0]), argv[1], int(argv[2])
    out = {}
    for ckpt in argv[3:]:
        scores = {split: evaluate(ckpt, data / f"{split}.txt", data, workers=0)["top1"] for split in ("val", "test")}
        model, spec = load_checkpoint(ckpt)
        train_set = TrainClipDataset(train_list, data, spec, seed=0)
        loader = torch.utils.data.DataLoader(train_set, batch_size=8, shuffle=True,
                                             generator=torch.Generator().manual_seed(0))
        precise_bn(model, (model_input(crops, spec) for crops, _ in loader), n)
        with tempfile.TemporaryDirectory() as tmp:
            fixed = save_checkpoint(model, spec, Path(tmp) / "bn.ckpt")
            after = {split: evaluate(fixed, data / f"{split}.txt", data, workers=0)["top1"] for split in ("val", "test")}
        out[ckpt] = {"as_trained": scores, f"precise_bn_{n}": after}
        print(ckpt, scores, after, file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
