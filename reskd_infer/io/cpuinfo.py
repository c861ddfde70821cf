"""What the CPU is: its model name and ISA flags, read from /proc/cpuinfo (the benchmarks record them beside every
figure; the INT8 export checks them for VNNI)."""

from __future__ import annotations

from pathlib import Path


def cpuinfo() -> tuple[str | None, set[str]]:
    """The model name and flags of the first CPU in /proc/cpuinfo (Linux; elsewhere nothing)."""
    name, flags = None, set()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return name, flags
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and name is None:
            name = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return name, flags
