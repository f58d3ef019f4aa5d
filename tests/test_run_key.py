"""A run's identity (its run key, what resume matches on) holds what decides its results and nothing else: a model
profile's operational settings (timeouts, concurrency, retries, prices, the key's variable) resume the same run."""

from __future__ import annotations

import asyncio

import pytest

from autointerp.config import Config
from autointerp.llm.profiles import ADDED_LATER, OPERATIONAL, ModelProfile
from autointerp.pipeline.components import LLMContext, make_explainer, make_scoring, make_simulator

BASE = {"model": "gpt-x", "base_url": "http://127.0.0.1:9/v1"}  # local: no key needed, nothing is sent


def run_key(**profile) -> str:
    """The key ``open_run`` computes for an LLM explainer and simulator of the profile ``BASE | profile``."""
    cfg = Config(layer=1, explainer="m", simulator="m", models={"m": ModelProfile(**{**BASE, **profile})})
    llm = LLMContext(cfg)
    try:
        return cfg.run_key("weights-hash", make_explainer(cfg, llm).config(), make_simulator(cfg, llm).config())
    finally:
        asyncio.run(llm.aclose())


OPERATIONAL_CHANGES = [
    {"timeout_s": 600.0}, {"concurrency": 1}, {"concurrency": 32}, {"price_in_per_mtok": 3.0},
    {"price_out_per_mtok": 15.0}, {"tokens_per_s": 40.0}, {"prompt_tokens_per_s": 900.0},
    {"echoed_tokens_per_s": 5.0}, {"max_retries": 0}, {"retry_timeouts": True}, {"api_key_env": "OTHER_KEY"},
    {"stream": False}, {"stream_trust": 0},
    {"timeout_s": 5.0, "concurrency": 2, "price_in_per_mtok": 0.5, "price_out_per_mtok": 2.0},
]
OUTPUT_CHANGES = [
    {"model": "gpt-y"}, {"temperature": 0.7}, {"base_url": "http://127.0.0.1:10/v1"}, {"max_tokens": 64},
    {"supports_logprobs": False}, {"supports_tools": False}, {"simulator_method": "all_at_once"},
    {"simulator_format": "compact"}, {"simulator_grammar": True}, {"response_format": "json_schema"},
]
JUDGE_CHANGES = [{"judge_grammar": True}]  # the judge's profile: part of the classifiers' config in the key


@pytest.mark.parametrize("change", OPERATIONAL_CHANGES, ids=lambda c: ",".join(c))
def test_operational_settings_resume_the_same_run(change):
    assert run_key(**change) == run_key()


@pytest.mark.parametrize("change", OUTPUT_CHANGES, ids=lambda c: ",".join(c))
def test_what_decides_the_answers_starts_another_run(change):
    assert run_key(**change) != run_key()


def test_every_profile_field_is_identity_or_operational_and_the_snapshot_keeps_them_all():
    assert OPERATIONAL < set(ModelProfile.model_fields)
    profile = ModelProfile(**BASE, timeout_s=123.0, **{name: not default for name, default in ADDED_LATER.items()})
    assert set(profile.identity()) == set(ModelProfile.model_fields) - OPERATIONAL
    assert set(ModelProfile(**BASE).identity()) == set(ModelProfile.model_fields) - OPERATIONAL - set(ADDED_LATER)
    snapshot = Config(layer=1, models={"m": profile}).snapshot()  # saved with the run: the whole profile
    assert snapshot["models"]["m"]["timeout_s"] == 123.0 and set(snapshot["models"]["m"]) == set(ModelProfile.model_fields)


def test_the_classifiers_samples_are_identity_only_when_a_classifier_judges():
    """Detection and fuzzing draw from the range and silent samples; the simulation score never reads them."""
    def key(scorers: dict | None, **capture) -> str:
        return Config(layer=1, **capture).run_key("weights-hash", {"kind": "baseline"}, {"kind": "baseline"},
                                                  scorers=scorers)

    judged = {"detection": {"n_per_class": 50}}
    assert key(None, range_windows=40) == key(None) == key(None, silent_windows=0)
    assert key(judged, range_windows=40) != key(judged) != key(judged, silent_windows=40)


@pytest.mark.parametrize("change", JUDGE_CHANGES, ids=lambda c: ",".join(c))
def test_what_decides_the_judges_answers_starts_another_run(change):
    """An LLM judge's profile is in the classifiers' config, which the key holds."""
    def key(**profile) -> str:
        cfg = Config(layer=1, judge="m", models={"m": ModelProfile(**{**BASE, **profile})})
        llm = LLMContext(cfg)
        try:
            scoring = make_scoring(cfg, make_simulator(cfg, llm), llm)
            return cfg.run_key("weights-hash", {"kind": "baseline"}, {"kind": "baseline"},
                               scorers={c.name: c.config() for c in scoring.classifiers})
        finally:
            asyncio.run(llm.aclose())

    assert key(**change) != key() == key(timeout_s=5.0)
