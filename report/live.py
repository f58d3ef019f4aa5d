"""What ``serve`` adds to a unit page: a text typed by the reviewer, run through the subject model, and what each of
the unit's explanations predicts on it.

    >>> live = Live()                                            # loads nothing until asked
    >>> tokens, acts = live.activations(run, unit, "def f(self):")   # the unit's activation on each token
    >>> live.simulate("Fires on the token \"def\".", tokens)      # ([10.0, 0.0, ...], None) from the baseline

The model is the one the unit's latest run used (``runs.model``), loaded once and checked against the unit's weights
hash, so a checkpoint that changed since the run is refused rather than shown. A dictionary feature runs through
the run's dictionary folder (``runs.config["dictionary"]``), checked the same way by its kind. The simulator is the
baseline unless ``serve`` was handed another (``autointerp serve --simulator PROFILE``).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import torch

from autointerp.errors import UsageError
from autointerp.scoring.baseline import BaselineSimulator
from autointerp.scoring.simulator import Simulator
from autointerp.subject.model import Subject, load_subject
from autointerp.subject.unit_tools import text_activations
from autointerp.subject.units import NEURONS, UnitSpace, load_unit_space

MAX_TEXT_CHARS = 4000  # longer texts are cut before tokenizing


class Live:
    def __init__(self, device: str = "cpu", simulator: Simulator | None = None):
        self.device = device
        self.simulator = simulator or BaselineSimulator()
        self._subjects: dict[str, Subject] = {}
        self._spaces: dict[tuple[str, int, str], UnitSpace] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None  # one loop for every simulation: LLM clients bind to it

    def _subject(self, run: dict[str, Any], model_hash: str) -> Subject:
        name = run["model"]
        if name not in self._subjects:
            self._subjects[name] = load_subject(name, self.device)
        subject = self._subjects[name]
        if subject.weights_hash() != model_hash:
            raise UsageError(f"the model {name!r} on this machine is not the one this unit was captured from "
                             f"(weights {subject.weights_hash()[:12]}, unit {model_hash[:12]})")
        return subject

    def _space(self, run: dict[str, Any], subject: Subject, layer: int, kind: str) -> UnitSpace:
        if kind == "neuron":
            return NEURONS
        path, site = (run.get("config") or {}).get("dictionary"), (run.get("config") or {}).get("site")
        if not path:
            raise UsageError(f"the run that captured this {kind} feature names no dictionary folder")
        key = (str(path), layer, kind)
        if key not in self._spaces:
            space = load_unit_space(path, layer, subject, site)  # the site the run read (its own when None)
            if space.kind != kind:
                raise UsageError(f"the dictionary at {path} is now {space.kind}, not {kind}: it changed since the run")
            self._spaces[key] = space
        return self._spaces[key]

    def activations(self, run: dict[str, Any], unit: dict[str, Any], text: str) -> tuple[list[str], list[float]]:
        """The unit's activation on each token of ``text`` (``subject.unit_tools.text_activations``)."""
        with self._lock, torch.inference_mode():
            subject = self._subject(run, unit["model_hash"])
            space = self._space(run, subject, unit["layer"], unit["kind"])
            tokens, acts = text_activations(subject, unit["layer"], unit["unit"], text[:MAX_TEXT_CHARS], space)
            return tokens, [round(a, 5) for a in acts]

    def simulate(self, explanation: str, tokens: list[str]) -> tuple[list[float] | None, str | None]:
        """The simulator's prediction (0..10 per token) from the explanation alone, or None and why."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._loop.run_forever, name="live-simulator", daemon=True).start()
        try:
            future = asyncio.run_coroutine_threadsafe(self.simulator.simulate(explanation, [tokens]), self._loop)
            result = future.result(timeout=300)
        except Exception as e:  # an LLM simulator's endpoint may be down: show why, keep serving
            return None, f"{type(e).__name__}: {e}"
        return result.predictions[0], result.errors[0]

    def close(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop = None
