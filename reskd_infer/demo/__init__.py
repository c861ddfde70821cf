"""`make demo`: the main job end to end on the shipped data (``python -m reskd_infer.demo --help``)."""

from .cli import main

__all__ = ["main"]
