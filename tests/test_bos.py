"""What goes in front of a window, per family (corpus.bos_id): the tokenizer's own BOS, else the document separator
<|endoftext|>, else the declared bos_token, else nothing. That capture never counts it is checked by
test_capture.py's brute-force comparison."""

from __future__ import annotations

from autointerp.corpus import bos_id


class FakeTokenizer:
    """Just what bos_id reads: a call with add_special_tokens, the vocabulary and bos_token_id."""

    def __init__(self, vocab: dict[str, int], adds: int | None = None, bos_token_id: int | None = None):
        self.vocab, self.adds, self.bos_token_id = vocab, adds, bos_token_id

    def __call__(self, text, add_special_tokens=True):
        ids = [self.vocab[c] for c in text]
        return {"input_ids": ([self.adds] if add_special_tokens and self.adds is not None else []) + ids}

    def get_vocab(self):
        return dict(self.vocab)


def test_a_tokenizer_that_adds_a_bos_gets_it(tokenizer):
    assert bos_id(FakeTokenizer({"a": 5, "<bos>": 2, "<|endoftext|>": 0}, adds=2, bos_token_id=2)) == 2  # Gemma, Llama
    assert bos_id(tokenizer) == tokenizer.bos_token_id  # the bundled OPT tokenizer adds </s>


def test_no_bos_but_a_document_separator_gets_the_separator():
    # GPT-2, Pythia, SmolLM2 (whose GGUF declares <|im_start|> as bos_token, a chat token it never adds)
    assert bos_id(FakeTokenizer({"a": 5, "<|endoftext|>": 0, "<|im_start|>": 1}, bos_token_id=1)) == 0


def test_neither_falls_back_to_the_declared_bos_then_to_none():
    assert bos_id(FakeTokenizer({"a": 5, "<s>": 1}, bos_token_id=1)) == 1
    assert bos_id(FakeTokenizer({"a": 5})) is None
