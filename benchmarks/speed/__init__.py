"""Speed benchmarks: engines, the end-to-end pipeline, reskd-predict features."""
