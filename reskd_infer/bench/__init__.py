"""One timing harness: interleaved rounds, medians, machine info, FLOPs (reskd-bench, doctor, demo, benchmarks/)."""
