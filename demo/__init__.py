"""`make demo`: the main job end to end on the shipped data (``python -m demo --help``)."""

from demo.cli import main

__all__ = ["main"]
