"""Benchmarks of reskd-infer, run from the repository root as modules (``python -m benchmarks.speed.e2e``).

``speed/`` times the SDK, ``accuracy/`` trains and scores, ``probes/`` holds one-off studies (not run in CI),
``configs/`` the variants (YAML naming a ``_base_`` benchmark and the delta), ``results/<name>/`` the latest run.
"""
