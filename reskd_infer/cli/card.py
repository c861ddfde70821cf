"""``reskd-card``: argument parsing only; the measurements are :func:`reskd_infer.card.make_card`.

Exit codes: 0 the card was written (clips that could not be read are named in it); 2 bad arguments or
inputs (a model that does not load, models whose class names differ, a list that names no clip).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import torch

from reskd_infer.card import SpeedSettings, card_markdown, make_card, read_clips, write_card
from reskd_infer.card.build import DEFAULT_SHARES
from reskd_infer.errors import EXIT_OK, EXIT_USAGE, ReskdError, plain_warnings, report_error

EPILOG = """examples:
  reskd-card teacher.ckpt student56/ student40.onnx --videos my_clips/ --out card/
  reskd-card teacher/ student/ --videos val.txt --data-root /data --labels --out card/ --json

Every export folder among the MODELs gets card.json too: Recognizer(folder).card returns it and
'reskd-predict FOLDER --card' prints it. docs/card.md says what each figure means.
exit codes: 0 written, 2 bad arguments or inputs (also: models whose class names differ)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reskd-card", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Measure what each deployment choice (resolution, precision, engine) costs on your own clips: "
        "per model GFLOPs per clip, engine clips/s, end-to-end videos/s, top-1 agreement and mean KL to a "
        "reference model, top-1 with labels; and the cascades of each cheaper model into the reference.")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="artifacts Recognizer loads: .ckpt, .onnx (FP32 or FP16), .plan, export folders")
    p.add_argument("--videos", required=True, metavar="LIST_OR_DIR",
                   help="your clips: a folder (searched recursively), a list with one path per line, or with "
                   "--labels a Kinetics-style list 'path label [label...]'")
    p.add_argument("--data-root", metavar="DIR", help="folder the list's paths are relative to (default: its folder)")
    p.add_argument("--labels", action="store_true", help="the list carries labels: the card adds top-1 (mAP for "
                   "multi-label models)")
    p.add_argument("--reference", metavar="MODEL", help="the model agreement and KL are measured against "
                   "(default: the highest-resolution MODEL; added as a row when not among them)")
    p.add_argument("--backend", default="auto", help="backend of every model: auto (default), torch, onnxruntime, "
                   "openvino, tensorrt")
    p.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda:N")
    p.add_argument("--out", metavar="DIR", help="write card.json, card.md and card.png here")
    p.add_argument("--no-plot", action="store_true", help="skip card.png (no matplotlib needed)")
    p.add_argument("--cascade-shares", default=",".join(str(s) for s in DEFAULT_SHARES), metavar="S,S,...",
                   help="escalation shares at which each cascade is measured (the thresholds escalating about "
                   "these shares of the clips; '' for no cascades; default %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds, medians (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up rounds (default 1)")
    p.add_argument("--speed-videos", type=int, default=32, metavar="N",
                   help="clips streamed end to end per timing round (N readable ones spread over the list; default 32)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per engine call (default 8)")
    p.add_argument("--workers", type=int, default=2, help="decode workers (default 2)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch (and engine) intra-op threads (0: leave the default; recorded in the card)")
    p.add_argument("--json", action="store_true", help="print the card as JSON instead of the markdown table")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    return p


def _shares(parser: argparse.ArgumentParser, text: str) -> tuple[float, ...]:
    try:
        shares = tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        parser.error(f"--cascade-shares {text!r}: expected comma-separated fractions")
    if any(not 0 < s < 1 for s in shares):
        parser.error("--cascade-shares: each share must lie strictly between 0 and 1")
    return shares


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if min(args.rounds, args.speed_videos, args.batch_size, args.workers) < 1 or args.warmup < 0:
        parser.error("--rounds, --speed-videos, --batch-size and --workers must be at least 1, --warmup at least 0")
    shares = _shares(parser, args.cascade_shares)
    if args.threads:
        torch.set_num_threads(args.threads)
    plain_warnings()
    try:
        clips = read_clips(args.videos, args.data_root, labelled=args.labels)
        card = make_card(args.models, clips, reference=args.reference, backend=args.backend, device=args.device,
                         speed=SpeedSettings(args.rounds, args.warmup, args.speed_videos, args.batch_size,
                                             args.workers),
                         cascade_shares=shares, progress=not (args.quiet or args.json))
        written = write_card(card, args.out, plot=not args.no_plot)
    except ReskdError as exc:
        report_error(exc, args.json, models=args.models)
        return EXIT_USAGE
    if args.json:
        print(json.dumps({**card, "written": written}, indent=2))
    else:
        print(card_markdown(card))
        if not args.quiet:
            where = [written.get("json"), *written["folders"]]
            print("written: " + ", ".join(w for w in where if w), file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
