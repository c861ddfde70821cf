"""``reskd-card``: what each deployment choice costs on the user's own clips (docs/card.md)."""

from reskd_infer.card.build import CARD_SCHEMA, Clips, SpeedSettings, make_card, read_clips
from reskd_infer.card.report import card_markdown, draw_card, pareto_front, write_card

__all__ = ["CARD_SCHEMA", "Clips", "SpeedSettings", "card_markdown", "draw_card", "make_card", "pareto_front",
           "read_clips", "write_card"]
