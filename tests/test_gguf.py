"""GGUF subjects: a tiny Llama written here with the gguf package (no download) loads through transformers, equals
the model it was written from, is cached after the first load, and bad files give one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autointerp.corpus import bos_id
from autointerp.errors import UsageError
from autointerp.subject.capture import CaptureConfig, capture_windows
from autointerp.subject import gguf as gguf_mod
from autointerp.subject.model import load_subject

gguf = pytest.importorskip("gguf")

EOT = "<|endoftext|>"


def _byte_tokens() -> list[str]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return list(bytes_to_unicode().values())


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's layout of q/k rows (transformers undoes it when it reads the file)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_llama(path, layers: int = 2, width: int = 32, ffn: int = 48, heads: int = 4, kv_heads: int = 2,
                     seed: int = 0):
    """Write a random tiny Llama with a byte-level BPE tokenizer as an F32 GGUF file; return the HF model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    merges = ["Ġ d", "d e", "Ġd e", "Ġde f", "r e", "re t"]  # " def", "ret" as whole tokens
    tokens = [EOT] + _byte_tokens() + ["Ġd", "de", "Ġde", "Ġdef", "re", "ret"]
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokens), hidden_size=width, intermediate_size=ffn, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=128,
                         rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=0,
                         eos_token_id=0)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    sd = {k: v.numpy().astype(np.float32) for k, v in model.state_dict().items()}
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(128), w.add_block_count(layers), w.add_feed_forward_length(ffn)
    w.add_embedding_length(width), w.add_head_count(heads), w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(1e-5), w.add_rope_freq_base(10000.0), w.add_rope_dimension_count(width // heads)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2"), w.add_tokenizer_pre("gpt-2"), w.add_token_list(tokens)
    w.add_token_types([3] + [1] * (len(tokens) - 1)), w.add_token_merges(merges)
    w.add_bos_token_id(0), w.add_eos_token_id(0), w.add_add_bos_token(False)
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.add_tensor("output.weight", sd["lm_head.weight"])
    names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for i in range(layers):
        for hf, gg in names.items():
            t = sd[f"model.layers.{i}.{hf}.weight"]
            if gg == "attn_q":
                t = _permute(t, heads)
            elif gg == "attn_k":
                t = _permute(t, kv_heads)
            w.add_tensor(f"blk.{i}.{gg}.weight", np.ascontiguousarray(t))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file()
    w.close()
    return model


def write_header_only(path, arch: str) -> None:
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file()
    w.close()


@pytest.mark.slow
def test_gguf_file_loads_equal_to_its_source_then_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOINTERP_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "models" / "tiny.gguf"
    path.parent.mkdir()
    source = write_tiny_llama(path)
    subject = load_subject(str(path), device="cpu", dtype="float32")
    assert (subject.model_type, subject.n_layers, subject.n_units, subject.activation) == ("llama", 2, 48, "silu")
    assert subject.name == str(path)
    text = "x = 1; def f(x):\n    return x"
    ids = subject.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert subject.tokenizer.decode(ids) == text  # the tokenizer came from the file
    assert {subject.tokenizer.convert_tokens_to_ids(t) for t in ("Ġdef", "ret")} <= set(ids)  # its merges with it
    x = torch.tensor([ids])
    with torch.no_grad():
        assert torch.allclose(subject.model(x).logits, source(x).logits, atol=1e-4)
    # capture puts the file's document separator in front of every window (the tokenizer adds no BOS): what it keeps
    # for a window is the source model's layer-1 down-projection input over [<|endoftext|>] + window, BOS dropped
    assert bos_id(subject.tokenizer) == 0 == subject.tokenizer.convert_tokens_to_ids(EOT)
    windows = [(ids * 4)[i : i + 8] for i in range(0, 4 * len(ids) - 7, 8)]
    cap = capture_windows(subject, windows, CaptureConfig(layers=[1], window=8, firing="fixed"))[1]
    seen = []
    hook = source.model.layers[1].mlp.down_proj.register_forward_pre_hook(lambda m, args: seen.append(args[0][0, 1:]))
    try:
        with torch.no_grad():
            for window in windows:
                source(torch.tensor([[0, *window]]))
    finally:
        hook.remove()
    manual = torch.stack(seen)  # [N, W, U]
    assert cap.res_index == list(range(len(windows))) and len(windows) <= cap.config.n_random  # every window kept
    torch.testing.assert_close(torch.stack(cap.res_acts), manual, atol=1e-4, rtol=1e-4)
    for unit in range(subject.n_units):  # and each unit's top windows, at their corpus index
        kept = cap.top_index[unit] >= 0
        torch.testing.assert_close(cap.top_acts[unit][kept], manual[cap.top_index[unit][kept], :, unit],
                                   atol=1e-4, rtol=1e-4)
    # the cache: one folder named by the file's hash, read on the next load without dequantizing again
    (folder,) = (tmp_path / "cache" / "gguf").iterdir()
    assert folder.name == gguf_mod.file_sha256(path)[:16]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    monkeypatch.setattr(gguf_mod, "_dequantize", lambda *a: pytest.fail("dequantized again"))
    again = load_subject(str(path.parent), device="cpu", dtype="float32")  # the folder holding the file
    assert again.weights_hash() == subject.weights_hash()


@pytest.mark.slow  # waits on timeouts, latencies or leases: seconds of wall time
def test_unsupported_architecture_is_one_line_naming_the_supported(tmp_path):
    path = tmp_path / "odd.gguf"
    write_header_only(path, "rwkv6")
    with pytest.raises(UsageError) as e:
        load_subject(str(path), device="cpu")
    msg = str(e.value)
    assert "'rwkv6'" in msg and "llama" in msg and "gemma3" in msg and "\n" not in msg


def test_gguf_paths(tmp_path):
    (tmp_path / "two").mkdir()
    for name in ("a.gguf", "b.gguf"):
        write_header_only(tmp_path / "two" / name, "llama")
    with pytest.raises(UsageError, match="several GGUF files"):
        load_subject(str(tmp_path / "two"), device="cpu")
    with pytest.raises(UsageError, match="no such GGUF file"):
        load_subject(str(tmp_path / "missing.gguf"), device="cpu")
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf file")
    with pytest.raises(UsageError, match="not a readable GGUF file"):
        load_subject(str(tmp_path / "junk.gguf"), device="cpu")


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("AUTOINTERP_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert gguf_mod.cache_root() == tmp_path / "xdg" / "autointerp"
    monkeypatch.setenv("AUTOINTERP_CACHE", str(tmp_path / "mine"))
    assert gguf_mod.cache_root() == tmp_path / "mine"
