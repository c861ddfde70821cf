"""A bounded byte-mutation fuzzer over the video-opening path (``probe`` and ``load_clips``).

Real encoded videos (written with PyAV) are mutated at the byte level (bit flips, interesting bytes,
deleted, duplicated and inserted chunks, truncation). Each mutant is decoded in a long-lived worker
process, so a crash inside a native library kills only the worker: the parent records the input,
restarts the worker and goes on. An input passes when decoding returns frames or raises a
``ReskdError``; it fails when anything else escapes (a Python exception of another type), the worker
dies (a native crash), or decoding takes longer than the time limit (a hang). The worker's memory is
capped (RLIMIT_AS) so a pathological file cannot take the machine down.

``make fuzz`` runs it for minutes: ``python tests/helpers/fuzzing.py --seconds 300 --out fuzz_out``; the
test suite runs a few seconds of it (tests/test_fuzz.py). Failing inputs are written to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MEMORY_LIMIT = 8 << 30  # bytes of address space for the worker (importing torch needs more than 3 GB of it)
INTERESTING = (0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE)

WORKER = r"""
import json, resource, sys, traceback
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import numpy as np
from reskd_infer import ModelSpec
from reskd_infer.errors import ReskdError
from reskd_infer.video import load_clips, probe
specs = [ModelSpec(arch="tsn_r18", class_names=["a"], input_size=16, num_frames=3),
         ModelSpec(arch="r3d_18", class_names=["a"], input_size=16, num_frames=4, frame_interval=3, num_clips=2)]
print("ready", flush=True)
for line in sys.stdin:
    path = line.strip()
    try:
        probe(path)
        shapes = [list(load_clips(path, spec).shape) for spec in specs]
        out = {"status": "ok", "shapes": shapes}
    except ReskdError as exc:
        # "guarded": the decoder raised something odd that decode_guard turned into a clean error.
        cause = exc.__cause__
        out = {"status": "error", "type": type(exc).__name__, "message": str(exc)[:300],
               "guarded": cause is not None and not isinstance(cause, ReskdError)}
    except MemoryError:
        out = {"status": "memory"}
    except BaseException as exc:
        out = {"status": "escaped", "type": type(exc).__name__, "message": str(exc)[:300],
               "traceback": traceback.format_exc()[-2000:]}
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(json.dumps(out), flush=True)
"""


def seed_videos(folder: Path) -> list[Path]:
    """Small real videos in the containers and codecs users upload most."""
    sys.path.insert(0, str(HERE))
    from videogen import textured_frames, write_video

    folder.mkdir(parents=True, exist_ok=True)
    specs = [("h264.mp4", "libx264", "yuv420p", 6), ("vp9.webm", "libvpx-vp9", "yuv420p", 5),
             ("mjpeg.avi", "mjpeg", "yuvj420p", 4), ("mpeg4.mkv", "mpeg4", "yuv420p", 6)]
    out = []
    for name, codec, pix_fmt, n in specs:
        path = folder / name
        if not path.exists():
            write_video(path, textured_frames(n, 32, 48, seed=len(out)), codec=codec, pix_fmt=pix_fmt, gop=3)
        out.append(path)
    return out


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four random byte-level mutations of ``data``."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            break
        op = rng.randrange(7)
        i = rng.randrange(len(buf))
        n = rng.randint(1, max(1, min(64, len(buf) // 8)))
        if op == 0:
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[i] = rng.choice(INTERESTING)
        elif op == 2:
            del buf[i : i + n]
        elif op == 3:
            buf[i:i] = buf[i : i + n]
        elif op == 4:
            buf[i:i] = bytes(rng.randrange(256) for _ in range(n))
        elif op == 5:
            del buf[rng.randrange(len(buf)) :]
        else:  # a 32-bit field (sizes, counts, dimensions) set to an extreme
            buf[i : i + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x00",
                                         b"\x00\x00\x01\x00"])
    return bytes(buf)


@dataclass
class FuzzReport:
    inputs: int = 0
    ok: int = 0
    clean_errors: int = 0
    guarded: int = 0  # of the clean errors, those decode_guard made from another exception type
    failures: list[dict] = field(default_factory=list)  # crashes, hangs, escaped exceptions, memory
    seconds: float = 0.0
    max_decode_s: float = 0.0
    max_rss_mb: int = 0  # the worker's peak resident memory (its baseline, importing torch, included)

    def to_dict(self) -> dict:
        return {"inputs": self.inputs, "ok": self.ok, "clean_errors": self.clean_errors, "guarded": self.guarded,
                "failures": self.failures, "seconds": round(self.seconds, 1),
                "max_decode_s": round(self.max_decode_s, 3), "max_rss_mb": self.max_rss_mb}


class Worker:
    """A decoding subprocess fed one path per line."""

    def __init__(self, memory_limit: int = MEMORY_LIMIT):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER, str(memory_limit)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        if self._readline(120) != "ready":
            raise RuntimeError("fuzz worker did not start")

    def _readline(self, timeout: float) -> str | None:
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout)
        sel.close()
        if not ready:
            return None
        line = self.proc.stdout.readline()
        return line.strip() if line else None

    def run(self, path: Path, timeout: float) -> dict:
        self.proc.stdin.write(f"{path}\n")
        self.proc.stdin.flush()
        line = self._readline(timeout)
        if line is None:
            alive = self.proc.poll() is None
            self.stop()
            return {"status": "hang" if alive else "crash", "returncode": self.proc.returncode}
        return json.loads(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def fuzz(seeds: list[Path], seconds: float = 5.0, max_inputs: int | None = None, seed: int = 0,
         timeout: float = 30.0, out_dir: Path | None = None) -> FuzzReport:
    """Mutate ``seeds`` for ``seconds`` (or ``max_inputs`` inputs) and decode every mutant."""
    rng = random.Random(seed)
    originals = [p.read_bytes() for p in seeds]
    report = FuzzReport()
    worker = Worker()
    start = time.monotonic()  # after the worker's start-up (importing torch), which can be slow on a busy machine
    with tempfile.TemporaryDirectory(prefix="reskd-fuzz-") as tmp:
        try:
            while time.monotonic() - start < seconds and (max_inputs is None or report.inputs < max_inputs):
                k = rng.randrange(len(seeds))
                data = mutate(originals[k], rng)
                path = Path(tmp) / f"mutant{seeds[k].suffix}"
                path.write_bytes(data)
                t0 = time.monotonic()
                result = worker.run(path, timeout)
                report.max_decode_s = max(report.max_decode_s, time.monotonic() - t0)
                report.inputs += 1
                report.max_rss_mb = max(report.max_rss_mb, int(result.get("max_rss_mb", 0)))
                if result["status"] == "ok":
                    report.ok += 1
                elif result["status"] == "error":
                    report.clean_errors += 1
                    report.guarded += bool(result.get("guarded"))
                else:
                    saved = None
                    if out_dir is not None:
                        out_dir.mkdir(parents=True, exist_ok=True)
                        saved = out_dir / f"failure{len(report.failures)}{seeds[k].suffix}"
                        saved.write_bytes(data)
                    report.failures.append({**result, "seed_file": seeds[k].name, "saved": str(saved)})
                    if worker.proc.poll() is not None:
                        worker = Worker()
        finally:
            worker.stop()
    report.seconds = time.monotonic() - start
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Byte-mutation fuzzing of reskd-infer's video opening path.")
    parser.add_argument("--seconds", type=float, default=300.0, help="how long to fuzz (default 300)")
    parser.add_argument("--max-inputs", type=int, default=None, help="stop after this many inputs")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the mutations")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds one input may take (a hang beyond)")
    parser.add_argument("--out", type=Path, default=Path("fuzz_out"), help="where failing inputs and the report go")
    args = parser.parse_args(argv)
    seeds = seed_videos(args.out / "seeds")
    report = fuzz(seeds, args.seconds, args.max_inputs, args.seed, args.timeout, args.out)
    (args.out / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.to_dict().items() if k != "failures"} |
                     {"failures": len(report.failures)}))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
