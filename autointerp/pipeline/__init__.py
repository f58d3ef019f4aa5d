"""The orchestrator, the only part that imports every room: one module per command, the CLI a thin layer over them.

- ``run`` (``pipeline/run.py``): corpus -> subject capture -> explain -> judge -> db, driven by ``RunSession``
  (``pipeline/session.py``: the one owner of a run's life), through the stages of ``pipeline/stages.py``;
- ``inputs.py``: the one preamble (a config's subject, corpus, units and capture settings, each check in one place);
- ``analyze``, ``probe`` (``pipeline/analyses.py``): statistical analyses and sparse probes of layers;
- ``train_dictionary``, ``evaluate_dictionary`` (``pipeline/dictionaries.py``): SAEs and baseline dictionaries;
- ``components.py``: the registries of explainers and simulators, the scoring stage and the LLM context they share.
"""

from autointerp.pipeline.analyses import AnalysisResult, analyze, probe
from autointerp.pipeline.components import EXPLAINERS, SIMULATORS, LLMContext, make_explainer, make_simulator
from autointerp.pipeline.dictionaries import (
    DICTIONARY_FAMILIES,
    FIT_CORPUS,
    DictionaryReport,
    DictionarySettings,
    evaluate_dictionary,
    train_dictionary,
)
from autointerp.pipeline.run import RunSummary, UnitOutcome, run
from autointerp.pipeline.session import OpenOptions, RunSession
from autointerp.subject.units import parse_layers, parse_units

__all__ = [
    "DICTIONARY_FAMILIES", "EXPLAINERS", "FIT_CORPUS", "SIMULATORS", "AnalysisResult", "DictionaryReport",
    "DictionarySettings", "LLMContext", "OpenOptions", "RunSession", "RunSummary", "UnitOutcome", "analyze",
    "evaluate_dictionary", "make_explainer", "make_simulator", "parse_layers", "parse_units", "probe", "run",
    "train_dictionary",
]
