"""``reskd-predict``: argument parsing only; every step is a call of the Python API
(:mod:`reskd_infer.runtime.sources`, :mod:`reskd_infer.runtime.corpus`, :mod:`reskd_infer.runtime.writers`).

Exit codes: 0 every video succeeded; 1 some videos failed (their errors are in the output);
2 bad arguments or unusable inputs (a glob matching nothing, a model that does not load, a
predictions file that cannot be resumed, shard files that do not merge).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from reskd_infer.card.report import card_markdown
from reskd_infer.cli.common import add_precision_argument
from reskd_infer.errors import ReskdError, UsageError, one_line, plain_warnings, report_error
from reskd_infer.io.artifacts import read_card
from reskd_infer.runtime.annotate import VideoAnnotator
from reskd_infer.runtime.cascade import Cascade
from reskd_infer.runtime.corpus import run_corpus, select_videos
from reskd_infer.runtime.live import predict_stream
from reskd_infer.runtime.recognizer import Recognizer
from reskd_infer.runtime.results import RunSummary
from reskd_infer.runtime.sources import is_live, parse_shard, shard_from_env
from reskd_infer.runtime.writers import PredictionWriter, merge_jsonl

EXIT_OK, EXIT_SOME_FAILED, EXIT_BAD_ARGS = 0, 1, 2

EPILOG = """sources: video files, folders (searched recursively for video extensions), globs ('clips/**/*.mp4',
quoted), URLs FFmpeg opens (http(s)://, rtsp://...), capture devices (/dev/video0), and --list FILE.
Live sources (rtsp, rtmp, udp, srt, /dev/video*; any URL with --stream) are predicted per sliding
window until they end or you press Ctrl-C, one line per window.

examples:
  reskd-predict student.ckpt clip.mp4
  reskd-predict export/ videos/ --output preds.jsonl            # re-run the same command to resume
  reskd-predict export/ --list test.txt --data-root /data/k400 --shard 0/4 --output out-0.jsonl
  reskd-predict --merge out-*.jsonl --output preds.jsonl
  reskd-predict export/ rtsp://camera/stream --window 2 --stride 1
  reskd-predict student/ clips/ --cascade teacher/ --threshold 0.2     # the teacher only where unsure
  reskd-predict student/ clips/ --cascade teacher/ --target-agreement 0.99 --calibrate val.txt
  reskd-predict student/ --card                                         # the card reskd-card wrote

exit codes: 0 all videos succeeded, 1 some failed (errors are in the output), 2 bad arguments or inputs."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reskd-predict", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Classify videos with a reskd-infer model (checkpoint, ONNX, TensorRT plan, export folder or "
        "grpc:// Triton URL). Frames are sampled, resized and normalized exactly as the model's spec says.")
    p.add_argument("model", nargs="?", help="a .ckpt, .onnx or .plan file, an export folder written by reskd-export, "
                   "or grpc://HOST:PORT/MODEL for a Triton server")
    p.add_argument("sources", nargs="*", metavar="SOURCE", help="video files, folders, globs, URLs or devices")
    p.add_argument("--list", dest="list_file", metavar="FILE",
                   help="a list of videos: one path per line, or a Kinetics-style list whose first column is the path")
    p.add_argument("--data-root", metavar="DIR", help="folder that --list paths are relative to (default: the list's folder)")
    p.add_argument("--topk", type=int, default=5, help="how many classes to report per video (default: 5)")
    p.add_argument("--output", "-o", metavar="FILE",
                   help="write one line per video to FILE as each is done (JSON Lines, or CSV for *.csv: video, "
                   "label_k/score_k, answered_by with --cascade, error_type, error_message); running the same "
                   "command again skips the videos already in FILE (a CSV must then have the same columns); "
                   "'{rank}' in FILE is replaced by the shard index")
    p.add_argument("--format", choices=["jsonl", "csv"], help="format of --output (default: from its suffix, else jsonl)")
    p.add_argument("--no-resume", action="store_true", help="overwrite --output instead of resuming it")
    p.add_argument("--shard", metavar="I/N", help="predict only shard I of N of the inputs (default: RANK/WORLD_SIZE "
                   "when launched by torchrun or a scheduler); merge the outputs with --merge")
    p.add_argument("--merge", nargs="+", metavar="FILE",
                   help="check and merge the JSON Lines files of several shards into --output (or stdout)")
    p.add_argument("--save-video", metavar="DIR",
                   help="write each video with its predicted label drawn on it to DIR as H.264 MP4 (needs OpenCV)")
    p.add_argument("--windows", action="store_true",
                   help="files: predict a timeline of --window second windows every --stride seconds per video "
                   "(written as 'windows' in --output and drawn by --save-video); the video's label is then "
                   "averaged over its windows")
    p.add_argument("--stream", action="store_true",
                   help="read every source as a live stream (implied for rtsp/rtmp/udp/srt URLs, /dev/video*, and '-' "
                   "for standard input) and print a prediction per sliding window until it ends or Ctrl-C")
    p.add_argument("--window", type=float, default=2.0, metavar="S",
                   help="live streams and --windows: window length in seconds (default: 2)")
    p.add_argument("--stride", type=float, default=1.0, metavar="S",
                   help="live streams and --windows: seconds between window starts (default: 1)")
    p.add_argument("--max-windows", type=int, metavar="N", help="live streams: stop after N windows")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="live streams: give up when no data came for S seconds (default: 10)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of one line per video")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary on stderr")
    p.add_argument("--batch-size", type=int, default=8, help="clips per inference batch (default: 8)")
    p.add_argument("--workers", type=int, default=2, help="decoding workers (default: 2)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, or cuda:N")
    p.add_argument("--backend", default="auto",
                   help="auto, torch, onnxruntime, openvino, tensorrt or triton (default: auto = the fastest that runs "
                   "here: TensorRT on a GPU, OpenVINO then ONNX Runtime on the CPU, PyTorch for checkpoints)")
    add_precision_argument(p)
    c = p.add_argument_group("cascade and card (docs/card.md)")
    c.add_argument("--cascade", metavar="LARGE",
                   help="MODEL answers every video; a video whose top-1 margin (top-1 minus top-2 probability) is "
                   "below the threshold is answered by LARGE instead (each record says 'answered_by')")
    c.add_argument("--threshold", type=float, metavar="T",
                   help="with --cascade: the margin below which LARGE answers (0: MODEL alone, 1: LARGE alone)")
    c.add_argument("--target-agreement", type=float, metavar="A",
                   help="with --cascade: choose the threshold with the fewest escalations at which the cascade "
                   "agrees with LARGE on at least A of the --calibrate clips (or, without --calibrate, from the "
                   "cascades in MODEL's card)")
    c.add_argument("--calibrate", metavar="LIST",
                   help="with --target-agreement: calibration clips (a list, first column the path, or a folder)")
    c.add_argument("--decode", choices=("auto", "once", "twice"), default="auto",
                   help="with --cascade: decode each video once for both models, or again for LARGE when escalated "
                   "(default auto: once when both models read the same frames and crop)")
    c.add_argument("--card", action="store_true",
                   help="print the deployment card in MODEL's export folder (written by reskd-card) and exit")
    p.add_argument("--no-fallback", action="store_true",
                   help="fail instead of falling back to another artifact when the preferred one cannot run")
    return p


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.merge:
        if args.model or args.sources:
            parser.error("--merge takes only the files to merge (and --output)")
        return
    if not args.model:
        parser.error("give a MODEL and at least one SOURCE (or --merge FILE...)")
    if args.card:
        return
    _check_cascade_args(parser, args)
    if not args.sources and not args.list_file:
        parser.error("give at least one SOURCE or --list FILE")
    if args.topk < 1:
        parser.error("--topk must be at least 1")
    if args.batch_size < 1 or args.workers < 1:
        parser.error("--batch-size and --workers must be at least 1")
    if args.window <= 0 or args.stride <= 0 or args.timeout <= 0:
        parser.error("--window, --stride and --timeout must be positive")
    if args.no_resume and not args.output:
        parser.error("--no-resume needs --output")


def _check_cascade_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    given = [f for f in ("threshold", "target_agreement", "calibrate") if getattr(args, f) is not None]
    if not args.cascade:
        if given:
            parser.error(f"--{given[0].replace('_', '-')} needs --cascade LARGE")
        return
    if (args.threshold is None) == (args.target_agreement is None):
        parser.error("--cascade needs one of --threshold T or --target-agreement A")
    if args.calibrate and args.target_agreement is None:
        parser.error("--calibrate needs --target-agreement")
    for name in ("threshold", "target_agreement"):
        value = getattr(args, name)
        if value is not None and not 0 <= value <= 1:
            parser.error(f"--{name.replace('_', '-')} must lie in [0, 1]")
    if args.windows or args.stream or any(s == "-" or is_live(s) for s in args.sources):
        parser.error("--cascade predicts files (not --windows or live streams)")


def _fail(exc: Exception, as_json: bool, **context: Any) -> int:
    """One ``error:`` line; with --json also ``{"error": {"type": ..., "message": ...}, "results": []}``."""
    report_error(exc, as_json, **context, results=[])
    return EXIT_BAD_ARGS


def merge_main(args: argparse.Namespace) -> int:
    try:
        records = merge_jsonl(args.merge, args.output)
    except ReskdError as exc:
        return _fail(exc, args.json)
    if args.output is None:
        sys.stdout.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    elif not args.quiet:
        failed = sum(r.get("error") is not None for r in records)
        print(f"merged {len(args.merge)} files: {len(records)} videos ({failed} failed) -> {args.output}",
              file=sys.stderr)
    return EXIT_OK


def _top_text(predictions: list[dict[str, Any]]) -> str:
    return "\t".join(f"{p['label']}:{p['score']:.4f}" for p in predictions)


def _print_line(record: dict[str, Any]) -> None:
    if record["error"] is not None:
        print(f"{record['video']}\tERROR\t{record['error']['message']}", file=sys.stderr)
    else:
        print(f"{record['video']}\t" + _top_text(record["predictions"]), flush=True)


def _result_handler(show: Callable[[dict[str, Any]], None] | None,
                    annotate: Callable[[dict[str, Any]], None] | None) -> Callable[[dict[str, Any]], None] | None:
    steps = [step for step in (annotate, show) if step is not None]
    if not steps:
        return None

    def handle(record: dict[str, Any]) -> None:
        for step in steps:
            step(record)

    return handle


def _open_recognizer(args: argparse.Namespace) -> Recognizer | Cascade:
    options = dict(device=args.device, backend=args.backend, fallback=not args.no_fallback, precision=args.precision)
    if not args.cascade:
        return Recognizer(args.model, **options)
    cascade = Cascade(args.model, args.cascade, threshold=args.threshold or 0.0, decode=args.decode, **options)
    try:
        if args.target_agreement is not None:
            args.calibration = _calibrate(cascade, args)
    except BaseException:
        cascade.close()
        raise
    return cascade


def _calibrate(cascade: Cascade, args: argparse.Namespace) -> dict[str, Any]:
    """The threshold for --target-agreement: from --calibrate clips, else from the cascades of MODEL's card."""
    if args.calibrate:
        is_list = Path(args.calibrate).is_file()
        videos = select_videos([] if is_list else [args.calibrate], args.calibrate if is_list else None,
                               args.data_root)
        chosen = cascade.calibrate(videos, args.target_agreement, batch_size=args.batch_size, workers=args.workers)
        chosen["source"] = args.calibrate
    else:
        chosen = threshold_from_card(cascade.small.card, args.model, args.cascade, args.target_agreement)
        cascade.threshold = chosen["threshold"]
    if not args.quiet:
        print(f"cascade threshold {chosen['threshold']:.4f}: {chosen['escalated']:.1%} of the calibration clips "
              f"escalated, agreement with {args.cascade} {chosen['agreement']:.3f} (target {args.target_agreement})",
              file=sys.stderr)
    return chosen


def _same_model(a: str, b: str) -> bool:
    return Path(a).resolve() == Path(b).resolve() or a == b


def threshold_from_card(card: dict[str, Any] | None, small: str, large: str, target: float) -> dict[str, Any]:
    """The smallest measured threshold of the card's (small, large) cascade whose agreement reaches ``target``."""
    if card is None:
        raise UsageError(f"{small}: no card.json (reskd-card writes one into export folders); give --calibrate LIST")
    points = sorted((c for c in card.get("cascades", []) if _same_model(c["small"], small)
                     and _same_model(c["large"], large)), key=lambda c: c["escalated"])
    if not points:
        raise UsageError(f"{small}: its card has no cascade into {large}; give --calibrate LIST")
    good = [c for c in points if c["agreement"] >= target]
    if not good:
        best = max(c["agreement"] for c in points)
        raise UsageError(f"{small}: no threshold in its card reaches agreement {target} with {large} (best "
                         f"{best:.3f}); give --calibrate LIST")
    return {**good[0], "source": "card"}


def _videos_and_shard(args: argparse.Namespace) -> tuple[list[str], tuple[int, int] | None]:
    """The videos of this run and its shard (None when the run is not split: a shard of 1 is the whole)."""
    shard_spec = parse_shard(args.shard) if args.shard else shard_from_env()
    if shard_spec is not None and shard_spec[1] == 1:
        shard_spec = None
    return select_videos(args.sources, args.list_file, args.data_root, shard_spec), shard_spec


def _open_writer(args: argparse.Namespace, shard_spec: tuple[int, int] | None) -> PredictionWriter | None:
    """The --output file (``{rank}`` replaced by the shard index), resumed unless --no-resume."""
    if not args.output:
        return None
    if "{rank}" in args.output:
        args.output = args.output.replace("{rank}", str(shard_spec[0] if shard_spec else 0))
    fmt = args.format or ("csv" if Path(args.output).suffix.lower() == ".csv" else "jsonl")
    return PredictionWriter(args.output, fmt, args.topk, resume=not args.no_resume, answered_by=bool(args.cascade))


def _print_summary(args: argparse.Namespace, summary: RunSummary) -> None:
    print(f"{summary.done} videos predicted ({summary.failed} failed, {summary.skipped} already in "
          f"{args.output or 'output'}) at {summary.videos_per_s:.2f} videos/s, {summary.clips_per_s:.2f} clips/s",
          file=sys.stderr)


def _run_doc(args: argparse.Namespace, runner: Recognizer | Cascade) -> dict[str, Any]:
    """What runs: the model's backend, arch and precision (a refused BF16 runs FP32); for a cascade both models'
    and the threshold."""
    def describe(rec: Recognizer) -> dict[str, Any]:
        return {"backend": rec.backend_name, "arch": rec.spec.arch,
                "precision": getattr(rec.backend, "precision", "fp32")}

    if isinstance(runner, Cascade):
        return {"model": args.model, **describe(runner.small),
                "cascade": {"large": args.cascade, **describe(runner.large), "threshold": runner.threshold,
                            "decode": runner.decode, "calibration": getattr(args, "calibration", None)}}
    return {"model": args.model, **describe(runner)}


def card_main(args: argparse.Namespace) -> int:
    """--card: print the card of MODEL's export folder (JSON with --json, else its markdown table)."""
    try:
        card = read_card(args.model) if Path(args.model).is_dir() else None
        if card is None:
            raise UsageError(f"{args.model}: no card.json here; make one with reskd-card {args.model} --videos CLIPS")
    except ReskdError as exc:
        return _fail(exc, args.json, model=args.model)
    print(json.dumps(card, indent=2) if args.json else card_markdown(card), end="" if not args.json else "\n")
    return EXIT_OK


def corpus_main(args: argparse.Namespace) -> int:
    """Files, folders, globs and lists: one record per video, written, printed or gathered into --json."""
    try:
        videos, shard_spec = _videos_and_shard(args)
        writer = _open_writer(args, shard_spec)
        annotator = VideoAnnotator(args.save_video) if args.save_video else None
        recognizer = _open_recognizer(args)
    except ReskdError as exc:
        return _fail(exc, args.json, model=args.model)
    records: list[dict[str, Any]] = []
    on_result = _result_handler(records.append if args.json else (None if writer else _print_line), annotator)
    doc = _run_doc(args, recognizer)
    try:
        with recognizer:
            summary = run_corpus(recognizer, videos, writer, on_result, shard_spec, topk=args.topk,
                                 batch_size=args.batch_size, workers=args.workers, quiet=args.quiet,
                                 windows=(args.window, args.stride) if args.windows else None)
    finally:
        if writer is not None:
            writer.close()
    if args.json:
        print(json.dumps({**doc, "output": args.output, "summary": summary.to_dict(), "results": records}, indent=2))
    if not args.quiet and (writer is not None or summary.done > 1):
        _print_summary(args, summary)
    return EXIT_SOME_FAILED if summary.failed else EXIT_OK


def _is_live_run(args: argparse.Namespace) -> bool:
    return bool(args.sources) and (args.stream or any(s == "-" or is_live(s) for s in args.sources))


def _stream_one(recognizer: Recognizer, source: str, args: argparse.Namespace, out: TextIO | None) -> None:
    """One live source's windows as they come: JSON lines (--json, --output) or one text line each."""
    for window in predict_stream(recognizer, source, args.window, args.stride, args.topk, args.max_windows,
                                 args.timeout):
        record = window.to_dict()
        if args.json or out:
            print(json.dumps(record), file=out or sys.stdout, flush=True)
        else:
            print(f"{source}\t{window.start:.2f}-{window.end:.2f}s\t" + _top_text(record["predictions"]), flush=True)


def stream_main(args: argparse.Namespace) -> int:
    """Each source as a live stream: one line (or JSON line) per window as it is ready."""
    try:
        recognizer = _open_recognizer(args)
    except ReskdError as exc:
        return _fail(exc, args.json, model=args.model)
    out = open(args.output, "a", encoding="utf-8") if args.output else None
    failed = 0
    with recognizer:
        for source in args.sources:
            try:
                _stream_one(recognizer, source, args, out)
            except ReskdError as exc:
                failed += 1
                print(f"{source}\tERROR\t{one_line(exc)}", file=sys.stderr)
            except KeyboardInterrupt:  # the user stopped the stream: a normal end
                break
    if out is not None:
        out.close()
    return EXIT_SOME_FAILED if failed else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    plain_warnings()
    if args.merge:
        return merge_main(args)
    if args.card:
        return card_main(args)
    return stream_main(args) if _is_live_run(args) else corpus_main(args)
