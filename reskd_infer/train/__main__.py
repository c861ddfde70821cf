"""``python -m reskd_infer.train`` / ``torchrun --nproc-per-node N -m reskd_infer.train``: same flags as reskd-train."""

import sys

from reskd_infer.cli.train import train_main

sys.exit(train_main())
