"""Run the real ``autointerp`` command from a benchmark script, as a user would, offline."""

from __future__ import annotations

import os
import subprocess
import sys


def autointerp(*args: str) -> str:
    """``autointerp ARGS`` in a subprocess; its stdout, or exit with its stderr when it fails."""
    done = subprocess.run([sys.executable, "-m", "autointerp.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "120"})
    if done.returncode:
        sys.exit(f"autointerp {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout
