"""The demo's picture and closing table: accuracy against end-to-end throughput, labelled with the machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reskd_infer.bench.machine import machine_info

MODELS = (("teacher", "teacher"), ("reskd_student", "ResKD student"), ("plain_student", "plain student"))


def machine() -> dict[str, Any]:
    """The machine the demo's speed figures were measured on (the SDK's one machine description)."""
    return machine_info()


def _speed_of(speed: dict[str, Any], name: str) -> dict[str, Any]:
    # The plain student is the ResKD student's network at the same resolution: same speed.
    return speed["reskd_student" if name == "plain_student" else name]


def draw(summary: dict[str, Any], path: Path) -> Path:
    """Two panels: labelled clips (top-1 against end-to-end videos/s) and real footage (agreement with the teacher)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    training, speed, footage, box = summary["training"], summary["speed"], summary.get("realfootage"), summary["machine"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4), gridspec_kw={"width_ratios": [3, 2]})
    colours = {"teacher": "tab:blue", "reskd_student": "tab:green", "plain_student": "tab:gray"}
    for name, label in MODELS:
        s = _speed_of(speed, name)
        for backend, marker in (("onnxruntime", "o"), ("torch", "s")):
            x, y = s["by_backend"][backend]["e2e_videos_per_s"], training[name]["metrics"]["top1"]
            left.scatter(x, y, s=80, marker=marker, color=colours[name],
                         label=f"{label}, {s['input_size']} px" if backend == "onnxruntime" else None)
            if backend == "onnxruntime":
                left.annotate(f"{y:.3f}", (x, y), textcoords="offset points", xytext=(6, 6), fontsize=9)
    chance = 1 / len(summary["clips"]["classes"])
    left.set_xlim(0, left.get_xlim()[1] * 1.1)
    left.set_ylim(0, 1)
    left.axhline(chance, color="k", lw=0.8, ls=":")
    left.text(0, chance, " chance", va="bottom", fontsize=8)
    left.set_xlabel("end-to-end videos/s (decode + preprocess + infer; circles ONNX Runtime, squares PyTorch)")
    left.set_ylabel("top-1 on the validation clips")
    left.set_title(f"Fashion-MNIST clips ({len(summary['clips']['classes'])} classes, "
                   f"{summary['clips']['num_val']} validation clips)", fontsize=10)
    left.legend(fontsize=8, loc="lower right")
    left.grid(alpha=0.3)
    if footage:
        keys = ("untouched_56", "distilled_56")
        values = [footage["top1_agreement"][k] for k in keys]
        bars = right.bar(["Lite0 fed 56 px\n(untouched)", "Lite0 56 px\ndistilled, no labels"], values,
                         color=["tab:gray", "tab:green"])
        right.bar_label(bars, fmt="%.3f", fontsize=9)
        right.set_ylim(0, max(0.1, max(values) * 1.3))
        right.set_ylabel("top-1 agreement with Lite0 at 224 px")
        right.set_title(f"real footage, held out ({footage['heldout_frames']} frames of "
                        f"{len(footage['heldout_clips'])} videos)", fontsize=10)
        right.grid(alpha=0.3, axis="y")
    else:
        right.axis("off")
    load = speed["setup"].get("load_average_1min")
    fig.suptitle(f"make demo on {box['cpu']} ({box['cpus']} cores" + (f", load average {load}" if load else "")
                 + f"; {speed['setup']['threads']} inference thread(s), {speed['setup']['decode_workers']} decode "
                 f"worker(s))", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table(summary: dict[str, Any]) -> str:
    """The closing table: one row per model, the figures of the plot."""
    speed = summary["speed"]
    lines = ["model            px  top-1  GFLOPs/clip  engine clips/s (ORT / torch)  videos/s end to end (ORT / torch)"]
    for name, label in MODELS:
        s = _speed_of(speed, name)
        ort, pt = s["by_backend"]["onnxruntime"], s["by_backend"]["torch"]
        lines.append(f"{label:<15} {s['input_size']:>3}  {summary['training'][name]['metrics']['top1']:.3f}  "
                     f"{s['gflops_per_clip']:>11.3f}  {ort['engine_clips_per_s']:>13.1f} / {pt['engine_clips_per_s']:<11.1f}"
                     f"  {ort['e2e_videos_per_s']:>14.1f} / {pt['e2e_videos_per_s']:.1f}")
    footage = summary.get("realfootage")
    if footage:
        agree = footage["top1_agreement"]
        lines.append(f"real footage: top-1 agreement with Lite0 at 224 px over {footage['heldout_frames']} held-out "
                     f"frames: untouched 56 px {agree['untouched_56']:.3f}, distilled 56 px {agree['distilled_56']:.3f}")
    return "\n".join(lines)
