"""Statistics of seeded accuracy runs: mean, std and every seed; Welch's t-test between two arms."""

from __future__ import annotations

import statistics
from typing import Any


def summarize(values: list[float], val_values: list[float] | None = None) -> dict[str, Any]:
    """Mean, std and every seed's test top-1 (and validation top-1 when given), rounded to 4 digits."""
    out: dict[str, Any] = {"top1_mean": round(statistics.fmean(values), 4),
                           "top1_std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
                           "seeds": [round(v, 4) for v in values]}
    if val_values:
        out["val_top1_mean"] = round(statistics.fmean(val_values), 4)
        out["val_seeds"] = [round(v, 4) for v in val_values]
    return out


def welch(a: list[float], b: list[float]) -> dict[str, float] | None:
    """Welch's unequal-variance t-test of mean(a) vs mean(b): t, df, two-sided p and one-sided p (a > b)."""
    if len(a) < 2 or len(b) < 2 or (statistics.stdev(a) == 0 and statistics.stdev(b) == 0):
        return None
    from scipy import stats  # scipy is not a dependency of the package: only the accuracy benchmarks need it

    res = stats.ttest_ind(a, b, equal_var=False)
    one = stats.ttest_ind(a, b, equal_var=False, alternative="greater")
    return {"t": round(float(res.statistic), 3), "df": round(float(res.df), 2), "p_two_sided": round(float(res.pvalue), 5),
            "p_one_sided_kd_greater": round(float(one.pvalue), 5)}


def paired(a: list[float], b: list[float]) -> dict[str, float] | None:
    """Paired t-test of a vs b, matched by position (the same seed): mean difference, t, df, two-sided p and
    one-sided p (a > b)."""
    if len(a) != len(b):
        raise ValueError(f"paired test needs equal lengths, got {len(a)} and {len(b)}")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    if len(diffs) < 2 or statistics.stdev(diffs) == 0:
        return None
    from scipy import stats  # scipy is not a dependency of the package: only the accuracy benchmarks need it

    res = stats.ttest_rel(a, b)
    one = stats.ttest_rel(a, b, alternative="greater")
    return {"mean_diff": round(statistics.fmean(diffs), 4), "t": round(float(res.statistic), 3),
            "df": len(diffs) - 1, "p_two_sided": round(float(res.pvalue), 5),
            "p_one_sided_greater": round(float(one.pvalue), 5)}


def binomial_se(top1: float, clips: int) -> float:
    """The sampling error of a top-1 measured on ``clips`` independent clips: sqrt(p (1 - p) / n)."""
    return round((top1 * (1.0 - top1) / clips) ** 0.5, 4)
