"""Console entry points, one module per command (``reskd-train``/``-eval`` in :mod:`.train`, ``reskd-export``,
``reskd-predict``, ``reskd-bench``, ``reskd-doctor``): parsing, exit codes and error printing only; every command
calls the Python API."""
