"""Shared fixtures. Unit tests load no model; integration tests build tiny random models here, in the test.

Every test runs in its own temporary working directory with AUTOINTERP_DB pointing inside it, and with the
Hugging Face hub forced offline: no test may touch the network.
"""

from __future__ import annotations

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("OMP_NUM_THREADS", "2")  # torch on two threads at most, set before anything imports it


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOINTERP_DB", str(tmp_path / "autointerp.db"))
    for key in [k for k in os.environ if k.startswith("AUTOINTERP_") and k != "AUTOINTERP_DB"]:
        monkeypatch.delenv(key)
    return tmp_path


@pytest.fixture(scope="session")
def tokenizer():
    """The bundled byte-level BPE tokenizer (ships in the repo; no download)."""
    from transformers import AutoTokenizer

    from autointerp.subject.model import BUNDLED_DIR

    return AutoTokenizer.from_pretrained(BUNDLED_DIR)


def tiny_config(arch: str, vocab: int, layers: int = 3, width: int = 32, ffn: int = 48, positions: int = 80):
    """A tiny random-init config of one supported architecture."""
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig, OPTConfig

    if arch == "opt":
        return OPTConfig(vocab_size=vocab, hidden_size=width, word_embed_proj_dim=width, ffn_dim=ffn,
                         num_hidden_layers=layers, num_attention_heads=2, max_position_embeddings=positions,
                         activation_function="relu", bos_token_id=2, eos_token_id=2, pad_token_id=1)
    if arch == "gpt2":
        return GPT2Config(vocab_size=vocab, n_embd=width, n_inner=ffn, n_layer=layers, n_head=2, n_positions=positions,
                          bos_token_id=2, eos_token_id=2)
    if arch == "gpt_neox":
        return GPTNeoXConfig(vocab_size=vocab, hidden_size=width, intermediate_size=ffn, num_hidden_layers=layers,
                             num_attention_heads=2, max_position_embeddings=positions, bos_token_id=2, eos_token_id=2)
    if arch == "llama":
        return LlamaConfig(vocab_size=vocab, hidden_size=width, intermediate_size=ffn, num_hidden_layers=layers,
                           num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=positions,
                           bos_token_id=2, eos_token_id=2, pad_token_id=1)
    if arch in ("mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text"):
        from transformers import (Gemma2Config, Gemma3TextConfig, GemmaConfig, MistralConfig, Qwen2Config,
                                  Qwen3Config)

        cls = {"mistral": MistralConfig, "qwen2": Qwen2Config, "qwen3": Qwen3Config, "gemma": GemmaConfig,
               "gemma2": Gemma2Config, "gemma3_text": Gemma3TextConfig}[arch]
        return cls(vocab_size=vocab, hidden_size=width, intermediate_size=ffn, num_hidden_layers=layers,
                   num_attention_heads=2, num_key_value_heads=2, head_dim=width // 2,
                   max_position_embeddings=positions, bos_token_id=2, eos_token_id=2, pad_token_id=1)
    if arch == "gptj":
        from transformers import GPTJConfig

        return GPTJConfig(vocab_size=vocab, n_embd=width, n_inner=ffn, n_layer=layers, n_head=2, rotary_dim=8,
                          n_positions=positions, bos_token_id=2, eos_token_id=2)
    raise ValueError(arch)


def save_tiny_model(path, arch: str, tokenizer, seed: int = 0, **kw):
    """Build a tiny random model and save it with the tokenizer, as a checkpoint folder on disk."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(arch, len(tokenizer), **kw))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


ARCHS = ("opt", "gpt2", "gpt_neox", "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text",
         "gptj")  # every family in ARCHITECTURES


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory, tokenizer):
    """{arch: folder} of tiny random checkpoints for every supported family."""
    root = tmp_path_factory.mktemp("ckpt")
    return {arch: save_tiny_model(root / arch, arch, tokenizer) for arch in ARCHS}


@pytest.fixture
def text_corpus(tmp_path):
    """A small folder corpus of real Python source (a few stdlib modules), copied into the test's directory."""
    import shutil

    from autointerp.corpus import stdlib_root

    folder = tmp_path / "corpus"
    folder.mkdir()
    for name in ("textwrap.py", "shlex.py", "fnmatch.py"):
        shutil.copy(stdlib_root() / name, folder / name)
    return folder


@pytest.fixture
def cli(capsys):
    """Run the real ``autointerp`` command in-process: ``code, out, err = cli("run", "--layer", "1", ...)``."""
    from autointerp.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster on one thread, and do not stall when another job shares the cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Test tiers. A test that builds or loads a model (it asks, directly or through another fixture, for one of these)
# is an integration test, marked ``slow``; ``pytest -m "not slow"`` runs the unit tests alone. Tests that load a
# model without these fixtures carry ``@pytest.mark.slow`` themselves.
MODEL_FIXTURES = {"tiny_checkpoints", "one_thread"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def pytest_collection_finish(session):
    """What collection imported (torch, transformers, langgraph) lives for the whole session: freeze it out of the
    garbage collector, so the collections during the tests and pytest's at the end skip it (seconds otherwise)."""
    import gc

    gc.collect()
    gc.freeze()
