"""Capture passes as Ray tasks (``autointerp sweep run PLAN --ray auto|local|ADDRESS``; ``pip install -e ".[ray]"``).

The sweep's driver stays the one writer: it opens every run, sends each group's capture to the cluster as a task
(one GPU each when the run's device is a GPU, else one CPU), and explains from the returned ``LayerCapture`` in its
own event loop, where every LLM profile's ``concurrency`` bounds the requests in flight. ``window`` captures are in
flight at once (one per GPU of the cluster, or per CPU when it has none, at most 8), so the cluster captures the
next layers while the driver explains the current one. A capture is deterministic: a task runs with the driver's
torch thread count, and gives the same windows and statistics as a capture in the driver.
"""

from __future__ import annotations

from typing import Any

from autointerp.errors import UsageError
from autointerp.pipeline.session import RunSession
from autointerp.subject.capture import LayerCapture

MAX_WINDOW = 8


def _capture_task(cfg_json: dict[str, Any], threads: int) -> LayerCapture:
    """Runs on a Ray worker: load the model, stream the corpus, return the layer's capture."""
    import torch

    from autointerp.config import Config
    from autointerp.pipeline.inputs import capture_config, load_inputs, unit_space
    from autointerp.subject.capture import capture

    torch.set_num_threads(threads)
    cfg = Config(**cfg_json)
    inputs = load_inputs(cfg, layers=[cfg.layer])
    space = unit_space(cfg, inputs.subject)
    return capture(inputs.subject, inputs.corpus, capture_config(cfg, [cfg.layer]), None, space)[cfg.layer]


class RayCaptor:
    """Submits capture tasks to a Ray cluster and hands their results to the sweep."""

    def __init__(self, ray, window: int, gpus: float):
        self.ray, self.window, self.gpus = ray, window, gpus
        self.remote = ray.remote(_capture_task)

    @classmethod
    def connect(cls, address: str) -> RayCaptor:
        """``local``: start Ray in this process (or use the one already started); ``auto`` or ``ray://...``/
        ``HOST:PORT``: join that cluster."""
        try:
            import ray
        except ImportError:
            raise UsageError('--ray needs Ray: pip install -e ".[ray]" (or pip install ray)')
        if not ray.is_initialized():
            try:
                ray.init(address=None if address == "local" else address, ignore_reinit_error=True,
                         log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise UsageError(f"--ray {address}: cannot reach a Ray cluster ({' '.join(str(e).split())[:200]}); "
                                 "start one with `ray start --head` or use --ray local")
        resources = ray.cluster_resources()
        gpus = float(resources.get("GPU", 0))
        window = max(1, min(MAX_WINDOW, int(gpus or resources.get("CPU", 1))))
        return cls(ray, window, gpus)

    def submit(self, r: RunSession):
        import torch

        on_gpu = self.gpus > 0 and r.cfg.device != "cpu"
        options = {"num_gpus": 1} if on_gpu else {"num_cpus": 1}
        cfg = r.cfg.model_copy(update={"device": "cuda" if on_gpu else "cpu"}) if r.cfg.device == "auto" else r.cfg
        return self.remote.options(**options).remote(cfg.model_dump(mode="json"), torch.get_num_threads())

    def get(self, handle, r: RunSession) -> LayerCapture:
        cap = self.ray.get(handle)
        r.use_capture(cap)
        return cap
