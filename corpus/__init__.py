"""The corpus room: where the text comes from and how it is cut into token windows; imports only autointerp.errors."""

from autointerp.corpus.sources import (
    HELDOUT_BYTE_THRESHOLD,
    TEXT_SUFFIXES,
    Corpus,
    Document,
    bos_id,
    iter_token_windows,
    open_corpus,
    stdlib_part,
    stdlib_root,
)

__all__ = ["HELDOUT_BYTE_THRESHOLD", "TEXT_SUFFIXES", "Corpus", "Document", "bos_id", "iter_token_windows",
           "open_corpus", "stdlib_part", "stdlib_root"]
