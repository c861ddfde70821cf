"""Console entry points. Thin argument parsing only: every command calls the Python API."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def predict_main(argv: Sequence[str] | None = None) -> int:
    from .predict_cli import main

    return main(argv)


def export_main(argv: Sequence[str] | None = None) -> int:
    from .export.cli import main

    return main(argv)


def train_main(argv: Sequence[str] | None = None) -> int:
    from .train.cli import train_main as main

    return main(argv)


def eval_main(argv: Sequence[str] | None = None) -> int:
    from .train.cli import eval_main as main

    return main(argv)


def bench_main(argv: Sequence[str] | None = None) -> int:
    from .bench import main

    return main(argv)


def doctor_main(argv: Sequence[str] | None = None) -> int:
    from .doctor.cli import main

    return main(argv)


if __name__ == "__main__":
    sys.exit(predict_main())
