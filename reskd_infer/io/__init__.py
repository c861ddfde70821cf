"""Reading and writing artifacts: checkpoints, export manifests, TensorRT sidecars, digests; never executing code from a file."""
