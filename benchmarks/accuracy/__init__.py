"""Accuracy benchmarks: ResKD against plain training, label-free distillation on real footage."""
