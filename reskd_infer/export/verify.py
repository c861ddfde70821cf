"""Compare two runners on the same inputs, Polygraphy style, and fail above documented tolerances.

A *runner* is any callable ``f(batch: np.ndarray (N, 3, T, S, S) float32) -> logits (N, K)``:
PyTorch eager, ONNX Runtime, a TensorRT engine. :func:`compare` feeds both runners
seeded random batches (two sizes, so the dynamic batch is exercised and a shift frozen
into a constant shows up) and the real decoded clips it is given (the exact tensors the
Recognizer serves), then reports per input the maximum absolute difference, the cosine
similarity of the logits and the top-1 agreement.

Tolerances (see :data:`FP32_TOLERANCE`, :data:`FP16_TOLERANCE`, docs/export.md):

* ``max_abs <= atol + rtol * max|reference|`` over every logit;
* ``cosine >= min_cosine`` for every input (flattened logits);
* no *decisive* top-1 disagreement: a sample may only change its top-1 class when the
  reference's own margin between the two classes is within the allowed absolute
  difference (a near tie, common for random-weight models); raw agreement is reported too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reskd_infer.errors import ExportError
from reskd_infer.spec import ModelSpec
from reskd_infer.video import video_to_batch

Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Tolerance:
    """How far a candidate may be from its reference."""

    atol: float
    rtol: float
    min_cosine: float

    def allowed_abs(self, reference: np.ndarray) -> float:
        return self.atol + self.rtol * float(np.abs(reference).max())


# Same graph, same precision: only kernel and summation-order differences are allowed.
FP32_TOLERANCE = Tolerance(atol=1e-4, rtol=1e-3, min_cosine=0.99999)
# Mixed FP16/FP32 against FP32: FP16 has 11 significant bits (about 3 decimal digits).
FP16_TOLERANCE = Tolerance(atol=1e-2, rtol=3e-2, min_cosine=0.999)


@dataclass
class InputComparison:
    """One input batch compared."""

    input: str
    batch: int
    max_abs: float
    allowed_abs: float
    cosine: float
    top1_agree: int
    top1_decisive_disagree: int


@dataclass
class VerifyReport:
    """The comparison of a candidate runner with a reference runner."""

    stage: str
    reference: str
    candidate: str
    tolerance: Tolerance
    rows: list[InputComparison] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return sum(r.batch for r in self.rows)

    @property
    def max_abs(self) -> float:
        return max((r.max_abs for r in self.rows), default=0.0)

    @property
    def min_cosine(self) -> float:
        return min((r.cosine for r in self.rows), default=1.0)

    @property
    def top1_agreement(self) -> float:
        return sum(r.top1_agree for r in self.rows) / max(1, self.samples)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage, "reference": self.reference, "candidate": self.candidate,
            "passed": self.passed, "samples": self.samples, "max_abs": self.max_abs,
            "min_cosine": self.min_cosine, "top1_agreement": self.top1_agreement,
            "tolerance": asdict(self.tolerance), "failures": list(self.failures),
            "inputs": [asdict(r) for r in self.rows],
        }


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0.0 or nb == 0.0:
        return 1.0 if na == nb else 0.0
    return float(a @ b / (na * nb))


def random_inputs(spec: ModelSpec, seed: int = 0, batches: Sequence[int] = (2, 3)) -> list[tuple[str, np.ndarray]]:
    """Seeded normal batches shaped like normalized clips, one per batch size."""
    rng = np.random.default_rng(seed)
    return [(f"random b{n}", rng.standard_normal((n, *spec.input_shape)).astype(np.float32)) for n in batches]


def clip_inputs(videos: Sequence[str | Path], spec: ModelSpec) -> list[tuple[str, np.ndarray]]:
    """The batches the Recognizer serves for real videos (decode, sample, resize, normalize)."""
    return [(Path(v).name, video_to_batch(v, spec).numpy()) for v in videos]


def compare(stage: str, reference: tuple[str, Runner], candidate: tuple[str, Runner],
            inputs: Sequence[tuple[str, np.ndarray]], tolerance: Tolerance) -> VerifyReport:
    """Run both runners on every input and judge the candidate against ``tolerance``."""
    report = VerifyReport(stage, reference[0], candidate[0], tolerance)
    for label, x in inputs:
        ref = np.asarray(reference[1](x), dtype=np.float32)
        got = np.asarray(candidate[1](x), dtype=np.float32)
        if ref.shape != got.shape:
            report.failures.append(f"{label}: output shape {got.shape} != reference {ref.shape}")
            continue
        if not np.isfinite(got).all():
            report.failures.append(f"{label}: the candidate produced NaN or inf")
            continue
        allowed = tolerance.allowed_abs(ref)
        diff = float(np.abs(ref - got).max())
        cos = min(cosine(r, g) for r, g in zip(ref, got, strict=True))
        ref_top, got_top = ref.argmax(1), got.argmax(1)
        agree = int((ref_top == got_top).sum())
        # A changed top-1 is decisive when the reference clearly preferred its class.
        margins = ref[np.arange(len(ref)), ref_top] - ref[np.arange(len(ref)), got_top]
        decisive = int(((ref_top != got_top) & (margins > 2 * allowed)).sum())
        report.rows.append(InputComparison(label, len(x), diff, allowed, cos, agree, decisive))
        if diff > allowed:
            report.failures.append(f"{label}: max abs diff {diff:.3g} > allowed {allowed:.3g}")
        if cos < tolerance.min_cosine:
            report.failures.append(f"{label}: cosine {cos:.6f} < {tolerance.min_cosine}")
        if decisive:
            report.failures.append(f"{label}: {decisive} sample(s) changed top-1 class beyond a near tie")
    return report


def require(report: VerifyReport, artifact: str | Path) -> VerifyReport:
    """Raise ExportError naming ``artifact`` when ``report`` failed."""
    if not report.passed:
        raise ExportError(f"{artifact}: verification failed ({report.candidate} vs {report.reference}): "
                          + "; ".join(report.failures) + "\n" + format_table([report]))
    return report


def format_table(reports: Sequence[VerifyReport]) -> str:
    """A fixed-width verification table, one line per input of every report."""
    header = f"{'stage':<26} {'input':<22} {'batch':>5} {'max abs':>10} {'allowed':>10} {'cosine':>10} {'top-1':>7} {'ok':>4}"
    lines = [header, "-" * len(header)]
    for rep in reports:
        for r in rep.rows:
            ok = r.max_abs <= r.allowed_abs and r.cosine >= rep.tolerance.min_cosine and not r.top1_decisive_disagree
            lines.append(f"{rep.stage:<26} {r.input[:22]:<22} {r.batch:>5} {r.max_abs:>10.3g} {r.allowed_abs:>10.3g} "
                         f"{r.cosine:>10.6f} {r.top1_agree:>3}/{r.batch:<3} {'yes' if ok else 'NO':>4}")
        lines.append(f"{rep.stage:<26} {'= ' + ('PASSED' if rep.passed else 'FAILED'):<22} {rep.samples:>5} "
                     f"{rep.max_abs:>10.3g} {'':>10} {rep.min_cosine:>10.6f} {rep.top1_agreement:>7.1%}")
    return "\n".join(lines)
