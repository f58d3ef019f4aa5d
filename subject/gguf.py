"""GGUF subject models: a ``.gguf`` file (or a folder holding one) dequantized once by transformers, then cached.

    >>> from autointerp.subject.gguf import find_gguf, dequantized_folder
    >>> gguf = find_gguf(Path("/work/models/smollm2"))      # the folder's one .gguf file, or None
    >>> folder = dequantized_folder(gguf)                  # <cache>/gguf/<sha256 of the file, 16 hex>/

transformers reads GGUF files (``from_pretrained(folder, gguf_file=name)``, with the ``gguf`` package) and
dequantizes every tensor to float32, which takes tens of seconds on a CPU for a 135M-parameter model. The first load
writes the dequantized model and its tokenizer (both read from the same file) as an ordinary checkpoint folder
(``config.json``, ``model.safetensors``, ``tokenizer.json``) into the cache, keyed by the sha256 of the GGUF file's
bytes, so a renamed or moved copy of the same file hits the cache and an edited one does not. Later loads read that
folder. The cache lives in ``$AUTOINTERP_CACHE`` when set, else ``$XDG_CACHE_HOME/autointerp``, else
``~/.cache/autointerp``; deleting it is always safe. A folder is written under a temporary name and renamed when
complete, so an interrupted first load leaves nothing that a later one would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from autointerp.errors import UsageError

GGUF_SUFFIX = ".gguf"
_NOT_ARCHITECTURES = {"general", "tokenizer"}  # keys of transformers' GGUF table that are not model families
_COMPLETE = "autointerp-gguf.json"  # written last: a cache folder without it is ignored


def cache_root() -> Path:
    """Where autointerp caches derived files: $AUTOINTERP_CACHE, else $XDG_CACHE_HOME/autointerp, else
    ~/.cache/autointerp."""
    if os.environ.get("AUTOINTERP_CACHE"):
        return Path(os.environ["AUTOINTERP_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "autointerp"


def find_gguf(path: Path) -> Path | None:
    """The GGUF file ``path`` names: itself when it ends in .gguf, the one .gguf of a folder without a config.json,
    else None (an ordinary checkpoint folder or a hub id). A folder holding several .gguf files is a UsageError."""
    if path.suffix.lower() == GGUF_SUFFIX:
        if not path.is_file():
            raise UsageError(f"--model {path}: no such GGUF file")
        return path
    if not path.is_dir() or (path / "config.json").is_file():
        return None
    found = sorted(p for p in path.iterdir() if p.suffix.lower() == GGUF_SUFFIX and p.is_file())
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise UsageError(f"--model {path} holds several GGUF files ({names}); pass one of them as --model")
    return found[0] if found else None


def dequantizable_architectures() -> list[str]:
    """GGUF architectures (``general.architecture``) that the installed transformers can dequantize: those of its
    legacy loader and, in transformers 5, those of its newer one."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    archs = set(GGUF_SUPPORTED_ARCHITECTURES)
    try:
        from transformers.integrations.gguf import GGUF_ARCHS

        archs |= set(GGUF_ARCHS)
    except ImportError:  # transformers 4.x has only the legacy loader
        pass
    return sorted(archs - _NOT_ARCHITECTURES)


def gguf_architecture(path: Path) -> str:
    """The file's ``general.architecture`` (e.g. "llama", "gemma3"), read from its header without its tensors."""
    try:
        from gguf import GGUFReader
    except ImportError:  # a declared dependency; only a broken install lands here
        raise UsageError("reading GGUF files needs the gguf package: pip install gguf")
    try:
        reader = GGUFReader(str(path))
        field = reader.fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode()
    except (KeyError, ValueError, IndexError, OSError) as e:
        raise UsageError(f"--model {path} is not a readable GGUF file ({type(e).__name__}: {e})"[:300])


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_architecture(path: Path) -> str:
    """The file's architecture, or a UsageError naming those transformers can dequantize."""
    arch = gguf_architecture(path)
    can = dequantizable_architectures()
    if arch not in can:
        raise UsageError(
            f"--model {path.name}: GGUF architecture {arch!r} cannot be dequantized by the installed transformers; "
            f"it can: {', '.join(can)}"
        )
    return arch


def dequantized_folder(path: Path, cache: Path | None = None) -> Path:
    """A checkpoint folder with the GGUF file's dequantized float32 weights and its tokenizer, from the cache when
    there, else written there first (see the module docstring)."""
    path = Path(path).expanduser().resolve()
    arch = check_architecture(path)
    digest = file_sha256(path)
    root = (cache or cache_root()) / "gguf"
    folder = root / digest[:16]
    if (folder / _COMPLETE).is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:16]}-", dir=root))
    try:
        _dequantize(path, tmp)
        (tmp / _COMPLETE).write_text(json.dumps(
            {"source": str(path), "sha256": digest, "architecture": arch, "bytes": path.stat().st_size}, indent=1))
        if folder.exists():  # an incomplete folder from an interrupted load
            shutil.rmtree(folder)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is as readable as any checkpoint folder
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _dequantize(path: Path, out: Path) -> None:
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, NotImplementedError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UsageError(f"--model {path.name}: transformers could not dequantize it ({first[:200]})")
    # save_pretrained refuses a model loaded from GGUF ("not serializable"), though its weights are plain float32
    # tensors by now: write the config without its quantization entry, and the weights with safetensors (which
    # stores a tied embedding / unembedding once; from_pretrained ties them again).
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(out)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(out)
    save_model(model, str(out / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(out)
