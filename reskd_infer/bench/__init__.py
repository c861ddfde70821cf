"""One timing harness: reskd-bench, reskd-doctor, the demo's speed stage and benchmarks/ all use it.

``timing``   interleaved rounds after warm-up; medians and spread (the one timing loop)
``machine``  what a figure was measured on: CPU model and ISA flags, cores, threads, engine versions
``flops``    forward FLOPs of one clip
``measure``  reskd-bench's cases and the streaming-pipeline measures (decode-only, engine-only rates)
``tables``   reskd-bench's markdown tables

``measure`` imports ``export`` to build the random-weight artifacts it times (``build_arch_artifacts``):
the one place ``bench`` reaches above ``runtime``.
"""
