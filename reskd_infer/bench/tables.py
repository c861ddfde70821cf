"""``reskd-bench``'s markdown tables (the JSON report is the record; these are for reading)."""

from __future__ import annotations

from reskd_infer.runtime.batching import STAGES


def format_pipeline(report: dict[str, object]) -> str:
    """One row per model of a ``pipeline_report``: rates, median stage times, peak RSS, errors."""
    lines = ["| model | backend | videos/s | clips/s | demux | decode | preprocess | infer | wait | peak RSS MB | "
             "errors |", "|" + "---|" * 11]
    for r in report["runs"]:  # type: ignore[union-attr]
        st = r["stages_ms"]
        lines.append(f"| {r['name']} | {r['backend']} | {r['videos_per_s']:.2f} | {r['clips_per_s']:.2f} | "
                     + " | ".join(f"{st.get(k, 0.0):.1f}" for k in STAGES)
                     + f" | {r['peak_rss_mb']:.0f} | {r['errors']} |")
    return "\n".join(lines)


def format_table(report: dict[str, object]) -> str:
    """One row per case of a ``benchmark`` report: engine median and p90, clips/s, ratio, end-to-end median."""
    lines = ["| case | backend | precision | size | frames | batch | GFLOPs/clip | engine median ms | p90 ms | "
             "clips/s | x first | end-to-end ms |", "|" + "---|" * 12]
    for r in report["cases"]:  # type: ignore[union-attr]
        e2e = r["end_to_end"]["median_ms"] if r["end_to_end"] else None
        lines.append(
            f"| {r['name']} | {r['backend']} | {r['precision']} | {r['input_size']} | {r['num_frames']} | {r['batch']} | "
            f"{r['gflops_per_clip']:.2f} | {r['engine']['median_ms']:.1f} | {r['engine']['p90_ms']:.1f} | "
            f"{r['clips_per_s']:.1f} | {r['throughput_vs_first']:.2f} | " + (f"{e2e:.1f} |" if e2e else "- |")
        )
    return "\n".join(lines)
