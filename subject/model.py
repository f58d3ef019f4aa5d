"""Loading a subject model and finding its MLP units. Hook names are built here and nowhere else.

    >>> from autointerp.subject.model import load_subject
    >>> subject = load_subject("bundled")          # or "gpt2", "EleutherAI/pythia-70m", "/path/to/checkpoint"
    >>> subject.n_layers, subject.n_units, subject.module_name(13)
    (16, 256, 'model.decoder.layers.13.fc2')

A unit is one coordinate of the MLP's post-nonlinearity activation, read as the *input* of the down / output
projection (docs/methods.md: "the post-nonlinearity coordinate between the two FFN matrices"). For gated MLPs (Llama,
Mistral, Qwen2, Gemma) that input is ``act(gate) * up``, which is what the down projection reads.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import NamedTuple
from pathlib import Path

import torch

from autointerp.errors import UsageError
from autointerp.subject.gguf import dequantized_folder, find_gguf

BUNDLED_DIR = Path(__file__).parent / "bundled"

class Architecture(NamedTuple):
    """Where one model family keeps what autointerp hooks and reads: every module path is built from here."""

    down_proj: str  # the down / output projection of layer {layer}; its input is the unit vector
    ffn_width_key: str  # config key of the FFN width (units per layer)
    blocks: str  # the ModuleList of decoder blocks
    final_norm: str  # the norm applied before the unembedding
    attn_out: str  # the module whose output is the attention's contribution to the residual stream
    mlp_out: str  # the module whose output is the MLP's contribution to the residual stream


def _hf_layers(post_norms: bool = False) -> Architecture:
    """Llama-style families (model.layers.N.{self_attn,mlp}); Gemma 2 and 3 normalise each sublayer's output before
    adding it to the residual stream (post_attention_layernorm, post_feedforward_layernorm): that norm's output is
    what the stream receives, so it is the family's attn_out / mlp_out."""
    base = "model.layers.{layer}."
    return Architecture(base + "mlp.down_proj", "intermediate_size", "model.layers", "model.norm",
                        base + ("post_attention_layernorm" if post_norms else "self_attn"),
                        base + ("post_feedforward_layernorm" if post_norms else "mlp"))


ARCHITECTURES: dict[str, Architecture] = {
    "opt": Architecture("model.decoder.layers.{layer}.fc2", "ffn_dim", "model.decoder.layers",
                        "model.decoder.final_layer_norm", "model.decoder.layers.{layer}.self_attn",
                        "model.decoder.layers.{layer}.fc2"),
    "gpt2": Architecture("transformer.h.{layer}.mlp.c_proj", "n_inner", "transformer.h", "transformer.ln_f",
                         "transformer.h.{layer}.attn", "transformer.h.{layer}.mlp"),
    "gpt_neox": Architecture("gpt_neox.layers.{layer}.mlp.dense_4h_to_h", "intermediate_size", "gpt_neox.layers",
                             "gpt_neox.final_layer_norm", "gpt_neox.layers.{layer}.attention",
                             "gpt_neox.layers.{layer}.mlp"),
    "llama": _hf_layers(),
    "mistral": _hf_layers(),
    "qwen2": _hf_layers(),
    "qwen3": _hf_layers(),
    "gemma": _hf_layers(),
    "gemma2": _hf_layers(post_norms=True),
    "gemma3_text": _hf_layers(post_norms=True),
    "gptj": Architecture("transformer.h.{layer}.mlp.fc_out", "n_inner", "transformer.h", "transformer.ln_f",
                         "transformer.h.{layer}.attn", "transformer.h.{layer}.mlp"),
}
RELU_ACTIVATIONS = {"relu"}


@dataclass
class Subject:
    """A loaded causal LM with the facts the runner needs about its MLP units."""

    model: torch.nn.Module
    tokenizer: object
    name: str  # what the user passed to --model ("bundled" for the shipped model)
    model_type: str
    n_layers: int
    n_units: int  # units per layer (FFN width)
    activation: str  # the MLP nonlinearity, e.g. "relu", "gelu_new", "silu"
    device: torch.device
    dtype: torch.dtype

    def module_name(self, layer: int) -> str:
        return ARCHITECTURES[self.model_type].down_proj.format(layer=layer)

    def down_proj(self, layer: int) -> torch.nn.Module:
        return self.model.get_submodule(self.module_name(layer))

    def check_layer(self, layer: int) -> None:
        if not 0 <= layer < self.n_layers:
            raise UsageError(
                f"--layer {layer} is out of range: {self.name} has layers 0..{self.n_layers - 1} (0-based)"
            )

    @property
    def is_relu(self) -> bool:
        return self.activation in RELU_ACTIVATIONS

    @property
    def d_model(self) -> int:
        """Width of the residual stream."""
        return int(self.model.config.hidden_size)  # every family maps its own name (n_embd, d_model) to this

    @property
    def max_positions(self) -> int | None:
        cfg = self.model.config
        for key in ("max_position_embeddings", "n_positions"):
            if getattr(cfg, key, None):
                return int(getattr(cfg, key))
        return None

    def weights_hash(self) -> str:
        """sha256 over parameter names, shapes and bytes: the identity of the weights, whatever the path."""
        h = hashlib.sha256()
        for name, p in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(str(tuple(p.shape)).encode())
            h.update(p.detach().to("cpu", torch.float32).numpy().tobytes())
        return h.hexdigest()[:16]


def _activation_name(config) -> str:
    for key in ("activation_function", "hidden_act", "hidden_activation"):
        value = getattr(config, key, None)
        if isinstance(value, str):
            return value
    return "unknown"


def _ffn_width(config, model_type: str) -> int:
    key = ARCHITECTURES[model_type].ffn_width_key
    width = getattr(config, key, None)
    if width is None:  # GPT-2 and GPT-J leave n_inner unset to mean 4 * d_model
        width = 4 * config.hidden_size
    return int(width)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UsageError(f"--device {device!r} is not a torch device; use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    return dev


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise UsageError(f"--dtype {dtype!r} is not supported; use auto, float32, bfloat16 or float16")
    return table[dtype]


def _read_from_cache(hub_id: str) -> bool:
    """For a hub id: True when it is read from the Hugging Face cache alone (it is there, or ``HF_HUB_OFFLINE`` is
    set), False when the hub has it to download. Neither cached nor on a reachable hub: a UsageError at once, where
    the hub client would retry each file five times (waiting 1, 2, 4, 8 and 8 s) and print every retry."""
    from huggingface_hub import constants, model_info, try_to_load_from_cache
    from huggingface_hub.errors import RepositoryNotFoundError

    if constants.HF_HUB_OFFLINE or isinstance(try_to_load_from_cache(hub_id, "config.json"), str):
        return True
    try:
        model_info(hub_id, timeout=10)
    except RepositoryNotFoundError:  # also a gated or private one without a login
        raise UsageError(f"--model {hub_id!r}: the Hugging Face hub has no such model (a private or gated one needs "
                         "`hf auth login`); give a local checkpoint folder, a .gguf file or a hub id") from None
    except Exception as e:  # no network: a name that does not resolve, a refused connection, a proxy, a timeout
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"--model {hub_id!r} is not in the Hugging Face cache and the hub cannot be reached "
                         f"({first[:120]}); give a local checkpoint folder or a .gguf file, or download it where "
                         "there is a network and copy the cache (HF_HOME)") from None
    return False


def load_subject(name: str = "bundled", device: str = "auto", dtype: str = "auto") -> Subject:
    """Load any causal LM through ``from_pretrained``: ``bundled``, a hub id, a local checkpoint folder, or a GGUF
    file (or a folder holding one), dequantized once and cached (``autointerp.subject.gguf``).

    A hub id in the Hugging Face cache is read from it with no network (the snapshot a run used stays the one it
    reads); one that is not is downloaded, unless ``HF_HUB_OFFLINE=1`` or the hub cannot be reached: then a
    UsageError, at once.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # autointerp draws its own progress; keep errors on one clean line
    path = str(BUNDLED_DIR) if name == "bundled" else name
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    local = Path(path).expanduser()
    looks_local = name.startswith((".", "/", "~")) or local.exists()  # a hub id is neither
    gguf = find_gguf(local) if looks_local else None
    if gguf is not None:
        path = str(dequantized_folder(gguf))
    elif looks_local and not local.is_dir():
        raise UsageError(f"--model {name!r}: no such checkpoint folder; give a folder with config.json, a .gguf "
                         "file or a hub id")
    cached_only = {} if looks_local else {"local_files_only": _read_from_cache(name)}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **cached_only)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **cached_only)
    except Exception as e:  # a missing, damaged or foreign file raises anything (OSError, SafetensorError, KeyError...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(
            f"cannot load model {name!r} ({first[:200]}); give a local checkpoint folder or a hub id that is "
            "already in the Hugging Face cache (this machine may be offline)"
        )
    model_type = model.config.model_type
    if model_type not in ARCHITECTURES:
        raise UsageError(
            f"model type {model_type!r} is not supported yet; supported: {', '.join(sorted(ARCHITECTURES))}"
        )
    model.to(dev).eval()
    n_layers = int(getattr(model.config, "num_hidden_layers", None) or model.config.n_layer)
    return Subject(
        model=model,
        tokenizer=tokenizer,
        name=name,
        model_type=model_type,
        n_layers=n_layers,
        n_units=_ffn_width(model.config, model_type),
        activation=_activation_name(model.config),
        device=dev,
        dtype=torch_dtype,
    )
