"""k-sparse probing of a layer's units for a concept (docs/methods.md §6, Gurnee et al. 2023).

    >>> from autointerp.subject.probing import ProbeSettings, probe_concept, load_span_concept
    >>> res = probe_concept(subject, open_corpus("stdlib"), layer=3, concept="string")
    >>> [(r.k, round(r.f1, 3), r.units[:4]) for r in res.results]       # test-split F1 for k = 1, 2, 4, ...
    >>> probe_concept(subject, None, 3, load_span_concept("my_concept.jsonl"), ProbeSettings(method="adaptive"))
    >>> probe_concept(subject, corpus, 8, "comment", space=load_unit_space("runs/l8-sae", 8, subject))  # SAE features
    >>> [r.best.f1 for r in probe_layers(subject, corpus, range(16), "comment")]  # every layer, one set of passes

**Built-in concepts** (Python source): every character is labelled from Python's ``tokenize`` (and ``ast`` for
docstrings) over the whole document, then a model token is positive when its character span (the tokenizer's
``offset_mapping``) overlaps at least one positive character. ``comment``: COMMENT tokens; ``string``: string literals
from the opening quote to the closing one, f-strings whole, docstrings (their whitespace and doctests) included;
``docstring``: the string literal that opens a module, class or function body. A string prefix (``r``, ``b``, ``f``,
``rb``, ...) is not labelled: a model token holding only the prefix comes before the quote, and a causal model's state
there cannot know a string follows (a token that holds the quote is positive). ``keyword``: NAME tokens that are
Python keywords; ``identifier``: the other NAME tokens; ``number``: NUMBER tokens; ``operator``: OP tokens
(punctuation included); ``indent_ge2``: the characters of every token emitted while at least two indented blocks are
open (NEWLINE/NL excluded). Names, operators and keywords inside f-string replacement fields are labelled as string
only, so labels do not depend on the Python version. Documents that do not tokenize or parse are skipped. Lines are
those ``tokenize`` reads, ended by ``"\\n"`` only (a form feed or another Unicode line separator inside a line does not
start a new one).

**User concepts**: a JSONL file of ``{"text": ..., "spans": [[start, end], ...]}`` (character offsets, end
exclusive, into ``text``); a token is positive when it overlaps a span. The texts come with the concept; no corpus
is needed.

**Data.** Each document is tokenized without special tokens and cut into windows of ``window`` tokens (a shorter
tail is kept, so short user texts count). A window is fed as [BOS] + context + window, where the context is the
``context`` tokens that precede it in its document (default: as many as the model's positions leave room for, at
most ``MAX_CONTEXT``; fewer at the start of a document): whether a token is inside a comment or a string depends on
text before it, sometimes far before it (a long docstring), which a window cut from the middle of a file would
otherwise hide. Only the window's tokens are samples; the BOS and the context never are. At most
``windows_per_document`` windows (``WINDOWS_PER_DOCUMENT``, the first ones; None: all) are taken from each document,
so that a few long files cannot make the whole sample, and windows are read in corpus order until exactly
``max_tokens`` tokens (``DEFAULT_TOKENS``) are collected (the last window is cut short): the cap keeps the [tokens,
units] matrix and the fits small on CPU. Windows are split 70/30 into train/test at random (seeded): no window has
tokens on both sides. ``probe_layers`` reads several layers from the same forward passes, so every layer is probed
on the same tokens with the same split.

**Probes.** Units are ranked on the train split by |mean(x | y=1) - mean(x | y=0)| of their raw activations.
The sizes k are 1, 2, 4, 8, ... and, last, every unit of the layer (``default_ks``): the dense probe is the ceiling
that the sparse ones are read against. ``method="mean_diff"``: for each k, an L2 logistic regression (C=1) on the
k top-ranked units. ``"adaptive"`` (adaptive thresholding): start from the max(ks) top-ranked units; for k from
large to small, fit an elastic-net logistic regression (l1_ratio 0.9, C=0.1) on the current support and keep its
k largest |coefficients| as the next support; each support is then scored with the same L2 probe. Features are
standardised with train statistics.
Precision, recall and F1 of the positive class are on the test split (0 where undefined).
"""

from __future__ import annotations

import ast
import io
import json
import keyword
import tokenize
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Literal

import numpy as np

from autointerp.corpus import Corpus
from autointerp.errors import UsageError
from autointerp.subject.hooks import batches, run_batch
from autointerp.subject.model import Subject
from autointerp.subject.units import NEURONS, UnitSpace

BUILTIN_CONCEPTS = ("comment", "string", "docstring", "keyword", "identifier", "number", "operator", "indent_ge2")
MAX_CONTEXT = 448  # default cap on the preceding tokens fed before a probed window
DEFAULT_TOKENS = 100_000  # labelled tokens collected by default: about 200 documents at 8 windows of 64 each
WINDOWS_PER_DOCUMENT = 8  # the first windows of each document taken by default
TRAIN_SHARE = 0.7
Method = Literal["mean_diff", "adaptive"]


def _penalty_deprecated() -> bool:
    """scikit-learn 1.8 deprecates ``penalty``: the elastic net is then asked for by ``l1_ratio`` alone."""
    import sklearn

    return tuple(int(v) for v in sklearn.__version__.split(".")[:2]) >= (1, 8)


# -- labels --------------------------------------------------------------------------------------------------------
def _prefix_len(literal: str) -> int:
    """Characters before a string literal's opening quote (its prefix: r, b, f, u, rb, ...)."""
    return len(literal) - len(literal.lstrip("rRbBfFuU"))


def python_char_labels(text: str) -> dict[str, np.ndarray] | None:
    """{concept: [len(text)] bool} for every built-in concept, or None when ``text`` is not valid Python."""
    # Lines as tokenize reads them: ended by "\n" only (str.splitlines also splits at form feeds and other
    # separators, which would shift every label after one).
    lines = io.StringIO(text).readlines()
    starts = np.concatenate([[0], np.cumsum([len(line) for line in lines])])
    labels = {name: np.zeros(len(text), dtype=bool) for name in BUILTIN_CONCEPTS}
    fstring_start = getattr(tokenize, "FSTRING_START", None)
    fstring_end = getattr(tokenize, "FSTRING_END", None)
    depth, open_fstrings, fstring_from = 0, 0, 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            a, b = starts[tok.start[0] - 1] + tok.start[1], starts[tok.end[0] - 1] + tok.end[1]
            if tok.type == tokenize.INDENT:
                depth += 1
                continue
            if tok.type == tokenize.DEDENT:
                depth -= 1
                continue
            if depth >= 2 and tok.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER):
                labels["indent_ge2"][a:b] = True
            if tok.type == fstring_start:
                open_fstrings += 1
                fstring_from = a + _prefix_len(tok.string) if open_fstrings == 1 else fstring_from
            elif tok.type == fstring_end:
                open_fstrings -= 1
                if open_fstrings == 0:
                    labels["string"][fstring_from:b] = True
            elif open_fstrings:
                continue
            elif tok.type == tokenize.COMMENT:
                labels["comment"][a:b] = True
            elif tok.type == tokenize.STRING:
                labels["string"][a + _prefix_len(tok.string) : b] = True
            elif tok.type == tokenize.NUMBER:
                labels["number"][a:b] = True
            elif tok.type == tokenize.OP:
                labels["operator"][a:b] = True
            elif tok.type == tokenize.NAME:
                labels["keyword" if keyword.iskeyword(tok.string) else "identifier"][a:b] = True
        tree = ast.parse(text)
    except (SyntaxError, tokenize.TokenError, ValueError):
        return None

    def offset(row: int, byte_col: int) -> int:  # ast columns are UTF-8 byte offsets
        return int(starts[row - 1]) + len(lines[row - 1].encode()[:byte_col].decode(errors="ignore"))

    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                a = offset(first.lineno, first.col_offset)
                labels["docstring"][a + _prefix_len(text[a : a + 3]) : offset(first.end_lineno,
                                                                            first.end_col_offset)] = True
    return labels


def span_char_labels(text: str, spans: Iterable[Sequence[int]]) -> np.ndarray:
    """[len(text)] bool: True inside any [start, end) span."""
    labels = np.zeros(len(text), dtype=bool)
    for start, end in spans:
        labels[start:end] = True
    return labels


def token_labels(tokenizer, text: str, char_labels: np.ndarray) -> tuple[list[int], np.ndarray]:
    """(token ids, [n_tokens] bool): a token is positive when its character span overlaps a positive character."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    cum = np.concatenate([[0], np.cumsum(char_labels, dtype=np.int64)])
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    return list(enc["input_ids"]), cum[offsets[:, 1]] - cum[offsets[:, 0]] > 0


@dataclass(frozen=True)
class SpanConcept:
    """A user concept: texts with labelled character spans."""

    name: str
    documents: tuple[tuple[str, tuple[tuple[int, int], ...]], ...]


def load_span_concept(path: str | Path, name: str | None = None) -> SpanConcept:
    """Read a JSONL of {"text": str, "spans": [[start, end], ...]}; the concept is named after the file."""
    path = Path(path)
    docs = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UsageError(f"cannot read concept file {path}: {e.strerror}; check the path")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            text, spans = obj["text"], tuple((int(a), int(b)) for a, b in obj["spans"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise UsageError(f'{path}:{i} must look like {{"text": "...", "spans": [[start, end], ...]}}')
        if not isinstance(text, str) or any(not 0 <= a <= b <= len(text) for a, b in spans):
            raise UsageError(f"{path}:{i}: every span must satisfy 0 <= start <= end <= len(text)")
        docs.append((text, spans))
    if not docs:
        raise UsageError(f"concept file {path} holds no example; add JSON lines with text and spans")
    return SpanConcept(name or path.stem, tuple(docs))


def labelled_documents(corpus: Corpus | None, concept: str | SpanConcept) -> Iterator[tuple[str, np.ndarray]]:
    """(text, [len(text)] bool character labels) of every document of a span concept, or of every corpus document
    that parses as Python for a built-in one."""
    if isinstance(concept, SpanConcept):
        for text, spans in concept.documents:
            yield text, span_char_labels(text, spans)
        return
    if concept not in BUILTIN_CONCEPTS:
        raise UsageError(f"unknown concept {concept!r}; built in: {', '.join(BUILTIN_CONCEPTS)}, or a JSONL file")
    if corpus is None:
        raise UsageError(f"the built-in concept {concept!r} needs a corpus of Python source")
    for doc in corpus.documents():
        labels = python_char_labels(doc.text)
        if labels is not None:
            yield doc.text, labels[concept]


# -- activations -----------------------------------------------------------------------------------------------------
def context_size(subject: Subject, window: int, context: int | None = None) -> int:
    """Preceding tokens fed before each probed window: ``context`` (default ``MAX_CONTEXT``), or fewer when the
    model's positions (BOS + context + window) run out."""
    context = MAX_CONTEXT if context is None else context
    if subject.max_positions is not None:
        context = min(context, subject.max_positions - 1 - window)  # the BOS takes one position
    return max(0, context)


@dataclass(frozen=True)
class ProbeSettings:
    """How the probes sample labelled tokens and fit (the module docstring's **Data** and **Probes**). ``collect``
    and ``collect_layers`` read the first five fields; ``probe_concept`` and ``probe_layers`` read them all."""

    window: int = 64  # tokens per sampled window
    max_tokens: int = DEFAULT_TOKENS  # labelled tokens collected in all (the last window is cut short)
    windows_per_document: int | None = WINDOWS_PER_DOCUMENT  # the first windows taken from each document; None: all
    context: int | None = None  # preceding tokens fed before each window; None: MAX_CONTEXT (see ``context_size``)
    batch_size: int = 32  # windows per forward pass
    ks: Sequence[int] | None = None  # probe sizes; None: ``default_ks`` of the layer's units
    method: Method = "mean_diff"  # how the k units are chosen: "mean_diff" or "adaptive"
    seed: int = 0  # the train/test split and the fits


@dataclass(frozen=True)
class ProbeWindow:
    """One sampled window: its token ids and labels, the ids fed before it, and where it sits in its document
    (``doc``: the document's number among those given; ``start``: its first token's index in that document)."""

    ids: list[int]
    labels: np.ndarray
    context: list[int]
    doc: int
    start: int


def cut_windows(tokenizer, documents: Iterable[tuple[str, np.ndarray]], window: int, max_tokens: int,
                windows_per_document: int | None, context: int) -> list[ProbeWindow]:
    """The windows the probes sample, in corpus order (see the module docstring's **Data**); ``context`` is already
    the number of preceding tokens to feed (``context_size``)."""
    windows, n = [], 0
    for doc, (text, char_labels) in enumerate(documents):
        ids, labels = token_labels(tokenizer, text, char_labels)
        starts = range(0, len(ids), window)
        for start in starts if windows_per_document is None else starts[:windows_per_document]:
            end = min(start + window, len(ids), start + max_tokens - n)
            windows.append(ProbeWindow(ids[start:end], labels[start:end], ids[max(0, start - context) : start], doc,
                                       start))
            n += end - start
            if n == max_tokens:
                return windows
    return windows


def collect(subject: Subject, documents: Iterable[tuple[str, np.ndarray]], layer: int,
            settings: ProbeSettings = ProbeSettings(), *, space: UnitSpace = NEURONS
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X [N, units] float32 activations of ``space``'s units, y [N] bool labels, group [N] window number) for
    labelled documents: ``collect_layers`` for one layer."""
    xs, y, group = collect_layers(subject, documents, [layer], settings, space=space)
    return xs[layer], y, group


def collect_layers(subject: Subject, documents: Iterable[tuple[str, np.ndarray]], layers: Sequence[int],
                   settings: ProbeSettings = ProbeSettings(), *, space: UnitSpace = NEURONS,
                   on_tokens: Callable[[int], None] | None = None
                   ) -> tuple[dict[int, np.ndarray], np.ndarray, np.ndarray]:
    """({layer: X [N, units] float32 activations of ``space``'s units}, y [N] bool labels, group [N] window number)
    for labelled documents, every layer from the same forward passes, sampled as ``settings`` say (its window,
    max_tokens, windows_per_document, context and batch_size). Each window is fed after up to ``settings.context``
    tokens that precede it in its document (default: ``MAX_CONTEXT``; never more than the model's positions allow,
    ``context_size``); only the window's own tokens are samples. ``on_tokens(n)`` is called after each batch with
    the samples it added."""
    layers = sorted(set(layers))
    window, batch_size = settings.window, settings.batch_size
    windows = cut_windows(subject.tokenizer, documents, window, settings.max_tokens, settings.windows_per_document,
                          context_size(subject, window, settings.context))
    if not windows:
        raise UsageError("no labelled text to probe on; check the corpus or the concept file")
    starts = np.concatenate([[0], np.cumsum([len(w.ids) for w in windows])])  # each window's first row
    n_units = space.n_units(subject)
    xs = {layer: np.empty((int(starts[-1]), n_units), dtype=np.float32) for layer in layers}  # filled in place

    def shape(i: int) -> tuple[int, int]:
        return len(windows[i].context), len(windows[i].ids)

    order = sorted(range(len(windows)), key=shape)  # equal (context, window) lengths batch together
    with space.hooks(subject, layers) as store:
        for (_, width), same in groupby(order, key=shape):
            members = list(same)
            fed = [windows[i].context + windows[i].ids for i in members]
            for b, (_, inputs) in enumerate(batches(subject, fed, batch_size)):
                run_batch(subject, inputs)
                for layer in layers:
                    acts = space.content(store, layer, inputs, width).numpy()  # the window's positions only
                    for i, a in zip(members[b * batch_size :], acts):
                        xs[layer][starts[i] : starts[i + 1]] = a
                if on_tokens is not None:
                    on_tokens(width * len(inputs))
    y = np.concatenate([w.labels for w in windows])
    group = np.concatenate([np.full(len(w.ids), i) for i, w in enumerate(windows)])
    return xs, y, group


# -- probes ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProbeK:
    """A k-sparse probe scored on the test split."""

    k: int
    units: tuple[int, ...]  # the units the probe reads, most important first
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class ProbeResult:
    concept: str
    layer: int
    method: Method
    n_train: int  # tokens
    n_test: int
    positive_rate_train: float
    positive_rate_test: float
    ranking: tuple[tuple[int, float], ...]  # (unit, |mean difference|) of the top units on the train split
    results: tuple[ProbeK, ...]  # one per k, increasing k
    kind: str = "neuron"  # the units' kind (UnitSpace.kind): neurons, or a dictionary's features
    context: int = 0  # preceding tokens fed before each window (at most; fewer at the start of a document)

    @property
    def best(self) -> ProbeK:
        return max(self.results, key=lambda r: (r.f1, -r.k))


def _l2_probe(X_tr, y_tr, X_te, y_te, units: Sequence[int], seed: int) -> tuple[float, float, float]:
    from sklearn.linear_model import LogisticRegression  # scikit-learn loads in seconds: only when probing
    from sklearn.metrics import precision_recall_fscore_support
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X_tr[:, units])
    clf = LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit(scaler.transform(X_tr[:, units]), y_tr)
    p, r, f, _ = precision_recall_fscore_support(y_te, clf.predict(scaler.transform(X_te[:, units])),
                                                 average="binary", zero_division=0)
    return float(p), float(r), float(f)


def _elastic_net(seed: int):
    from sklearn.linear_model import LogisticRegression

    kw = dict(C=0.1, l1_ratio=0.9, solver="saga", max_iter=300, tol=1e-3, random_state=seed)
    return LogisticRegression(**kw) if _penalty_deprecated() else LogisticRegression(penalty="elasticnet", **kw)


def split_by_window(group: np.ndarray, seed: int = 0) -> np.ndarray:
    """[N] bool train mask: a seeded 70% of the windows (at least one) train, the rest test."""
    windows = np.unique(group)
    chosen = np.random.default_rng(seed).permutation(windows)[: max(1, int(round(TRAIN_SHARE * len(windows))))]
    return np.isin(group, chosen)


def default_ks(n_units: int) -> tuple[int, ...]:
    """1, 2, 4, ... below ``n_units``, then ``n_units`` itself (the dense probe over every unit)."""
    return tuple(2**i for i in range(max(1, n_units).bit_length()) if 2**i < n_units) + (max(1, n_units),)


def fit_probes(X: np.ndarray, y: np.ndarray, group: np.ndarray, ks: Sequence[int] | None = None,
               method: Method = "mean_diff", seed: int = 0) -> tuple[list[ProbeK], dict]:
    """The probing of the module docstring on ready data; returns (results by increasing k, split facts).
    ``ks`` defaults to ``default_ks`` of the number of units."""
    ks = default_ks(X.shape[1]) if ks is None else ks
    train = split_by_window(group, seed)
    X_tr, y_tr, X_te, y_te = X[train], y[train], X[~train], y[~train]
    if y_tr.all() or not y_tr.any():
        raise UsageError("the train split holds only one class; probe on more text or a more balanced concept")
    diff = np.abs(X_tr[y_tr].mean(0) - X_tr[~y_tr].mean(0))
    ranked = np.argsort(-diff, kind="stable")
    ks = sorted({min(k, X.shape[1]) for k in ks})
    results = []
    if method == "mean_diff":
        for k in ks:
            units = ranked[:k]
            results.append(ProbeK(k, tuple(int(u) for u in units), *_l2_probe(X_tr, y_tr, X_te, y_te, units, seed)))
    elif method == "adaptive":
        from sklearn.preprocessing import StandardScaler

        support = ranked[: ks[-1]]
        for k in reversed(ks):
            scaler = StandardScaler().fit(X_tr[:, support])
            coef = _elastic_net(seed).fit(scaler.transform(X_tr[:, support]), y_tr).coef_[0]
            support = support[np.argsort(-np.abs(coef), kind="stable")[:k]]
            results.append(ProbeK(k, tuple(int(u) for u in support),
                                  *_l2_probe(X_tr, y_tr, X_te, y_te, support, seed)))
        results.reverse()
    else:
        raise UsageError(f"unknown probing method {method!r}; use mean_diff or adaptive")
    facts = {"n_train": int(train.sum()), "n_test": int((~train).sum()),
             "positive_rate_train": float(y_tr.mean()), "positive_rate_test": float(y_te.mean()) if len(y_te) else 0.0,
             "ranking": tuple((int(u), float(diff[u])) for u in ranked[: ks[-1]])}
    return results, facts


def probe_concept(subject: Subject, corpus: Corpus | None, layer: int, concept: str | SpanConcept,
                  settings: ProbeSettings = ProbeSettings(), *, space: UnitSpace = NEURONS) -> ProbeResult:
    """Collect the activations of ``layer``'s units (``space``: the MLP neurons by default, or a dictionary's
    features) on labelled text and fit k-sparse probes as ``settings`` say (see the module docstring)."""
    return probe_layers(subject, corpus, [layer], concept, settings, space=space)[0]


def probe_layers(subject: Subject, corpus: Corpus | None, layers: Sequence[int], concept: str | SpanConcept,
                 settings: ProbeSettings = ProbeSettings(), *, space: UnitSpace = NEURONS,
                 on_progress: Callable[[str, int], None] | None = None) -> list[ProbeResult]:
    """``probe_concept`` for several layers at once: one set of forward passes over the same labelled tokens and
    the same train/test split, then the probes of each layer; results in increasing layer order. ``on_progress``
    hears ("tokens", n) as samples are collected, then ("layers", count) once and ("layer", layer) as each layer's
    probes are fitted."""
    for layer in layers:
        subject.check_layer(layer)
    report = on_progress or (lambda event, n: None)
    documents = labelled_documents(corpus, concept)
    xs, y, group = collect_layers(subject, documents, layers, settings, space=space,
                                  on_tokens=lambda n: report("tokens", n))
    name = concept.name if isinstance(concept, SpanConcept) else concept
    fed = context_size(subject, settings.window, settings.context)
    report("layers", len(xs))
    out = []
    for layer, X in xs.items():
        results, facts = fit_probes(X, y, group, settings.ks, settings.method, settings.seed)
        out.append(ProbeResult(concept=name, layer=layer, method=settings.method, results=tuple(results),
                               kind=space.kind, context=fed, **facts))
        report("layer", layer)
    return out
