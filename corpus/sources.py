"""Corpora: where the text comes from, and how it is cut into fixed-length token windows.

    >>> from autointerp.corpus import open_corpus
    >>> corpus = open_corpus("stdlib")            # the held-out part of this interpreter's standard library
    >>> next(iter(corpus.documents())).name       # documents are (name, text) pairs

Corpus specs (``--corpus``):

- ``stdlib`` (default): the Python standard-library source files (``*.py``) of the *running* interpreter, held-out
  part. ``stdlib:fit`` is the other part (the bundled model and its tokenizer were trained on it) and
  ``stdlib:all`` is both. The split is deterministic and independent of the machine: a file belongs to the held-out
  part when the first byte of ``sha256(relative/posix/path)`` is below 52 (about 20%). ``site-packages`` is excluded.
- a path to a ``.txt`` (or any text) file: one document;
- a path to a folder: every ``*.txt``, ``*.md``, ``*.py`` file below it (sorted), one document each;
- a path to a ``.jsonl`` file: one document per line, read from its ``text`` field;
- ``hf:NAME[:SPLIT]`` or ``hf:PATH``: a Hugging Face dataset (``datasets`` extra), its ``text`` column.

Documents are visited in an order shuffled by the run's seed, so that ``--tokens N`` reads a sample of the whole
corpus rather than its alphabetically first files. Each document is tokenized without special tokens and cut into
consecutive, non-overlapping windows of exactly ``window`` content tokens; a shorter tail is dropped. When the
model's tokenizer prepends a BOS token, each window is fed to the model as ``[BOS] + content``; the BOS position
is never part of any statistic (docs/methods.md: BOS is never counted).
"""

from __future__ import annotations

import hashlib
import json
import random
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from autointerp.errors import UsageError

HELDOUT_BYTE_THRESHOLD = 52  # sha256(path)[0] < 52  <=>  held-out (52/256 = 20.3%)
TEXT_SUFFIXES = (".txt", ".md", ".py", ".rst")


@dataclass(frozen=True)
class Document:
    name: str  # where it came from: a relative path, "file.jsonl:17", ...
    text: str


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_part(relpath: str) -> str:
    """``"heldout"`` or ``"fit"`` for a path relative to the stdlib root (posix form)."""
    return "heldout" if hashlib.sha256(relpath.encode()).digest()[0] < HELDOUT_BYTE_THRESHOLD else "fit"


class Corpus:
    """A named, seeded, re-iterable source of documents."""

    def __init__(self, spec: str, names: list[str], loader, seed: int = 0):
        self.spec = spec
        self._names = names
        self._loader = loader
        self.seed = seed

    def __len__(self) -> int:
        return len(self._names)

    def with_seed(self, seed: int) -> Corpus:
        """The same documents, visited in another seeded order."""
        return Corpus(self.spec, self._names, self._loader, seed)

    def documents(self) -> Iterator[Document]:
        order = list(self._names)
        random.Random(self.seed).shuffle(order)
        for name in order:
            text = self._loader(name)
            if text and text.strip():
                yield Document(name, text)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise UsageError(f"cannot read corpus file {path}: {e.strerror}; check the path and its permissions")


def _stdlib(part: str, seed: int) -> Corpus:
    root = stdlib_root()
    names = []
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root).as_posix()
        if "site-packages" in rel or "dist-packages" in rel:
            continue
        if part == "all" or stdlib_part(rel) == part:
            names.append(rel)
    return Corpus(f"stdlib:{part}", names, lambda rel: _read_text(root / rel), seed)


def _jsonl(path: Path, seed: int) -> Corpus:
    texts: dict[str, str] = {}
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                raise UsageError(f"{path}:{i} is not valid JSON; a .jsonl corpus needs one JSON object per line")
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise UsageError(f'{path}:{i} has no string "text" field; each line must look like {{"text": "..."}}')
            texts[f"{path.name}:{i}"] = obj["text"]
    return Corpus(str(path), list(texts), texts.__getitem__, seed)


def _hf(spec: str, seed: int) -> Corpus:
    try:
        import datasets
    except ImportError:
        raise UsageError("hf: corpora need the datasets extra: pip install 'autointerp[datasets]'")
    name, _, split = spec.partition(":")
    split = split or "train"
    try:
        if Path(name).exists():
            ds = datasets.load_from_disk(name)
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[split]
        else:
            ds = datasets.load_dataset(name, split=split)
    except Exception as e:  # datasets raises many kinds; all mean "could not load it"
        raise UsageError(f"cannot load Hugging Face dataset {name!r} (split {split!r}): {e}".splitlines()[0])
    if "text" not in ds.column_names:
        raise UsageError(f"dataset {name!r} has no 'text' column (columns: {', '.join(ds.column_names)})")
    col = ds["text"]
    return Corpus(f"hf:{spec}", [str(i) for i in range(len(ds))], lambda i: col[int(i)], seed)


def open_corpus(spec: str = "stdlib", seed: int = 0) -> Corpus:
    """Resolve a corpus spec (see the module docstring). Raises UsageError when it is empty or unreadable."""
    if spec in ("stdlib", "stdlib:heldout"):
        corpus = _stdlib("heldout", seed)
    elif spec in ("stdlib:fit", "stdlib:all"):
        corpus = _stdlib(spec.split(":")[1], seed)
    elif spec.startswith("hf:"):
        corpus = _hf(spec[3:], seed)
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            raise UsageError(
                f"corpus {spec!r} not found; give 'stdlib', a text file, a folder of text files, a .jsonl file, "
                "or hf:DATASET"
            )
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
            corpus = Corpus(str(path), [str(p) for p in files], lambda p: _read_text(Path(p)), seed)
        elif path.suffix == ".jsonl":
            corpus = _jsonl(path, seed)
        else:
            corpus = Corpus(str(path), [str(path)], lambda p: _read_text(Path(p)), seed)
    if len(corpus) == 0:
        raise UsageError(f"corpus {spec!r} holds no documents; point --corpus at text files with content")
    return corpus


def iter_token_windows(corpus: Corpus, tokenizer, window: int, max_windows: int | None = None) -> Iterator[list[int]]:
    """Yield lists of exactly ``window`` content token ids (no special tokens), document by document."""
    produced = 0
    for doc in corpus.documents():
        ids = tokenizer(doc.text, add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids) - window + 1, window):
            yield ids[start : start + window]
            produced += 1
            if max_windows is not None and produced >= max_windows:
                return


DOCUMENT_SEPARATOR = "<|endoftext|>"


def bos_id(tokenizer) -> int | None:
    """The token put in front of every window (never counted, never shown), as each family was trained:

    1. the BOS its tokenizer adds itself (OPT ``</s>``, Llama, Mistral, Gemma ``<bos>``);
    2. else ``<|endoftext|>``, the document separator of families trained without a BOS (GPT-2, Pythia, Qwen2,
       SmolLM2): what the model saw before the first token of a document. Without it the first content token
       becomes the attention sink, and its MLP activations are outliers (SmolLM2-135M layer 13: 0.06x the mean
       |activation| of the other positions; with the separator, 0.71x);
    3. else the tokenizer's declared bos_token; else None (the first content token is then the sink).
    """
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    without = tokenizer("a", add_special_tokens=False)["input_ids"]
    if len(with_special) > len(without) and with_special[-len(without) :] == without:
        return with_special[0]
    vocab = tokenizer.get_vocab()
    if DOCUMENT_SEPARATOR in vocab:
        return vocab[DOCUMENT_SEPARATOR]
    return getattr(tokenizer, "bos_token_id", None)
