"""The card's files: ``card.json`` (the record), ``card.md`` (the table to read) and ``card.png`` (accuracy or
agreement against end-to-end videos/s, one point per model, the Pareto front drawn), and ``card.json`` in every
export folder among the models (``Recognizer(folder).card`` returns it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reskd_infer.formats import MANIFEST_NAME
from reskd_infer.io.artifacts import CARD_NAME
from reskd_infer.io.files import atomic_write


def quality_key(card: dict[str, Any]) -> str:
    """What the card's y axis and front use: ``top1`` with labels, else ``agreement`` with the reference."""
    return "top1" if card.get("labelled") and any(r.get("top1") is not None for r in card["rows"]) else "agreement"


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (higher x and higher y are better), by x."""
    front = [i for i, (x, y) in enumerate(points)
             if not any((x2 >= x and y2 >= y) and (x2 > x or y2 > y) for x2, y2 in points)]
    return sorted(front, key=lambda i: points[i][0])


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def card_markdown(card: dict[str, Any]) -> str:
    """The card as markdown: one row per model (front marked), the cascades, the failed clips, the machine."""
    key = quality_key(card)
    rows = card["rows"]
    front = set(pareto_front([(r["videos_per_s"] or 0.0, r[key] or 0.0) for r in rows]))
    lines = [f"# Deployment card: {card['clips']} clips of {card['source']}"
             f"{' (labelled)' if card['labelled'] else ' (unlabelled)'}", "",
             f"Reference (agreement and KL): `{card['reference']}`. Pareto front (by {key} and videos/s): *.", "",
             "| | model | arch | px | precision | backend | GFLOPs/clip | engine clips/s | videos/s | agreement | "
             "mean KL | top-1 |", "|" + "---|" * 12]
    for i, r in enumerate(rows):
        lines.append(f"| {'*' if i in front else ''} | `{r['model']}` | {r['arch']} | {r['input_size']} | "
                     f"{r['precision']} | {r['backend']} | {_fmt(r['gflops_per_clip'])} | {_fmt(r['clips_per_s'], 1)} | "
                     f"{_fmt(r['videos_per_s'], 1)} | {_fmt(r['agreement'])} | {_fmt(r['mean_kl'])} | {_fmt(r['top1'])} |")
    if card["cascades"]:
        lines += ["", "Cascades (the small model on every clip; top-1 margin below the threshold: the large model's "
                  "answer):", "", "| small | large | threshold | escalated | agreement | top-1 | GFLOPs/clip | "
                  "videos/s | decode |", "|" + "---|" * 9]
        for c in card["cascades"]:
            lines.append(f"| `{c['small']}` | `{c['large']}` | {c['threshold']:.4f} | {c['escalated']:.3f} | "
                         f"{_fmt(c['agreement'])} | {_fmt(c['top1'])} | {_fmt(c['gflops_per_clip'])} | "
                         f"{_fmt(c['videos_per_s'], 1)} | {c.get('decode', '-')} |")
    failed = card["failed"]
    lines += ["", f"Clips that could not be read: {len(failed)} of {card['videos']} (left out of every row)."]
    lines += [f"- `{f['video']}`: {f['error']}" for f in failed[:50]]
    if len(failed) > 50:
        lines.append(f"- ... and {len(failed) - 50} more (card.json names them all)")
    speed, box = card["speed"], card["machine"]
    lines += ["", f"Speed: {speed['method']}; {speed['rounds']} rounds after {speed['warmup']} warm-up, engine "
              f"batches of {speed['batch_size']}, {speed['videos']} clips end to end with {speed['workers']} decode "
              f"worker(s), {speed['torch_threads']} torch thread(s), on {box['cpu']} ({box['cpus']} logical CPUs)."]
    return "\n".join(lines) + "\n"


def draw_card(card: dict[str, Any], path: Path) -> Path:
    """Top-1 (labelled) or agreement with the reference against end-to-end videos/s; the Pareto front as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = quality_key(card)
    rows = card["rows"]
    points = [(r["videos_per_s"] or 0.0, r[key] or 0.0) for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for r, (x, y) in zip(rows, points, strict=True):
        ax.scatter(x, y, s=60)
        ax.annotate(f"{Path(r['model']).name} {r['input_size']}px {r['precision']}/{r['backend']}", (x, y),
                    textcoords="offset points", xytext=(5, 5), fontsize=7)
    front = pareto_front(points)
    ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "k--", lw=1, label="Pareto front")
    if card["cascades"]:
        cx = [c["videos_per_s"] for c in card["cascades"]]
        cy = [c["top1" if key == "top1" else "agreement"] for c in card["cascades"]]
        ax.scatter(cx, cy, marker="x", color="tab:red", label="cascades (small -> reference)")
    ax.set_xlabel("end-to-end videos/s (decode + preprocess + infer, median)")
    ax.set_ylabel("top-1" if key == "top1" else f"top-1 agreement with {Path(card['reference']).name}")
    ax.set_title(f"{card['clips']} clips of {Path(card['source']).name}; {card['machine']['cpu']}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _write_json(path: Path, data: dict[str, Any]) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))


def export_folders(card: dict[str, Any]) -> list[Path]:
    """The models of the card that are export folders (a folder with a manifest)."""
    return [Path(r["model"]) for r in card["rows"] if (Path(r["model"]) / MANIFEST_NAME).is_file()]


def write_card(card: dict[str, Any], out: str | Path | None, plot: bool = True) -> dict[str, Any]:
    """Write card.json, card.md and card.png (``plot``) to ``out`` (when given), and card.json into every export
    folder among the models (``this_model`` naming the folder's own row); returns where each went."""
    written: dict[str, Any] = {"folders": []}
    if out is not None:
        out = Path(out)
        written["json"] = str(_write_json(out / CARD_NAME, card))
        written["md"] = str(atomic_write(out / "card.md", lambda tmp: Path(tmp).write_text(card_markdown(card))))
        if plot:
            written["png"] = str(draw_card(card, out / "card.png"))
    for folder in export_folders(card):
        written["folders"].append(str(_write_json(folder / CARD_NAME, {**card, "this_model": str(folder)})))
    return written
