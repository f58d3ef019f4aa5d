"""Start llama-cpp-python's OpenAI-compatible server on 127.0.0.1 for a GGUF file (the opt-in real-LLM test and the
benchmarks use it; a user runs the same command by hand, docs/llm-servers.md).

    from autointerp.llm.llamacpp import LlamaCppServer, available
    with LlamaCppServer("/models/SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx=4096) as server:
        server.base_url            # http://127.0.0.1:<free port>/v1
        server.command             # the command line it ran

The server is ``python -m llama_cpp.server --model FILE --n_ctx N --host 127.0.0.1 --port P`` with its defaults
otherwise: ``logits_all`` on (needed for ``/v1/completions`` with ``echo`` and ``logprobs``), one request at a time.
``n_ctx`` must hold the longest prompt: the all-at-once simulator sends about 4.3 tokens per window token, 2,800 for
ten windows of 64 tokens. Its output goes to ``log_path`` (default: a temporary file, named in any error).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def available() -> bool:
    """True when llama-cpp-python with its server extra is installed in this Python."""
    return all(importlib.util.find_spec(name) is not None for name in ("llama_cpp", "uvicorn", "fastapi"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaCppServer:
    """``python -m llama_cpp.server`` in a subprocess; a context manager that waits until ``/v1/models`` answers."""

    def __init__(self, model_path: str | Path, *, n_ctx: int = 4096, n_threads: int | None = None,
                 chat_format: str | None = None, startup_timeout_s: float = 180.0, log_path: str | None = None):
        self.model_path = Path(model_path)
        self.port = free_port()
        self.command = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model_path), "--n_ctx",
                        str(n_ctx), "--host", "127.0.0.1", "--port", str(self.port)]
        if n_threads is not None:
            self.command += ["--n_threads", str(n_threads)]
        if chat_format is not None:
            self.command += ["--chat_format", chat_format]
        self.startup_timeout_s = startup_timeout_s
        self.log_path = log_path or tempfile.mkstemp(prefix="llamacpp-", suffix=".log")[1]
        self._process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> LlamaCppServer:
        if not self.model_path.is_file():
            raise FileNotFoundError(f"no GGUF file at {self.model_path}")
        log = open(self.log_path, "wb")  # noqa: SIM115  (closed with the process)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with {self._process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.__exit__()
        raise TimeoutError(f"llama.cpp server not up after {self.startup_timeout_s:g} s; see {self.log_path}")

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
