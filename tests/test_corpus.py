from __future__ import annotations

import json

import pytest

from autointerp.corpus import iter_token_windows, open_corpus, stdlib_part
from autointerp.errors import UsageError


@pytest.mark.slow  # reads every file of the standard library
def test_stdlib_split_is_deterministic_and_disjoint():
    held = {d.name for d in open_corpus("stdlib").documents()}
    fit = {d.name for d in open_corpus("stdlib:fit").documents()}
    every = {d.name for d in open_corpus("stdlib:all").documents()}
    assert held and fit and not held & fit and held | fit == every
    assert 0.12 < len(held) / len(every) < 0.3
    assert all(stdlib_part(n) == "heldout" for n in held)
    assert stdlib_part("json/decoder.py") == stdlib_part("json/decoder.py")
    assert all("site-packages" not in n for n in every)


@pytest.mark.slow  # reads every file of the standard library
def test_order_is_seeded():
    a = [d.name for d in open_corpus("stdlib", seed=1).documents()][:20]
    assert a == [d.name for d in open_corpus("stdlib", seed=1).documents()][:20]
    assert a != [d.name for d in open_corpus("stdlib", seed=2).documents()][:20]


def test_text_file_folder_and_jsonl(tmp_path, tokenizer):
    (tmp_path / "a.txt").write_text("hello world " * 50)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.md").write_text("alpha beta " * 50)
    (tmp_path / "d" / "skip.bin").write_bytes(b"\x00\x01")
    (tmp_path / "c.jsonl").write_text(json.dumps({"text": "one two " * 40}) + "\n\n" + json.dumps({"text": "x"}) + "\n")
    assert [d.text[:5] for d in open_corpus(str(tmp_path / "a.txt")).documents()] == ["hello"]
    assert [d.name.endswith("b.md") for d in open_corpus(str(tmp_path / "d")).documents()] == [True]
    docs = list(open_corpus(str(tmp_path / "c.jsonl")).documents())
    assert len(docs) == 2 and docs[0].name in ("c.jsonl:1", "c.jsonl:3")
    windows = list(iter_token_windows(open_corpus(str(tmp_path / "a.txt")), tokenizer, 8))
    assert windows and all(len(w) == 8 for w in windows)


@pytest.mark.parametrize(
    "content, message",
    [("not json\n", "not valid JSON"), ('{"txt": "a"}\n', 'no string "text" field'), ("", "holds no documents")],
)
def test_bad_jsonl(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(UsageError, match=message):
        open_corpus(str(path))


def test_missing_and_empty(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        open_corpus(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no documents"):
        open_corpus(str(tmp_path / "empty"))


def test_local_hugging_face_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"text": ["def f(x):\n    return x\n" * 20, "import os\n" * 30]}).save_to_disk(
        tmp_path / "ds"
    )
    docs = list(open_corpus(f"hf:{tmp_path / 'ds'}").documents())
    assert sorted(d.text[:3] for d in docs) == ["def", "imp"]
    datasets.Dataset.from_dict({"body": ["x"]}).save_to_disk(tmp_path / "nocol")
    with pytest.raises(UsageError, match="no 'text' column"):
        open_corpus(f"hf:{tmp_path / 'nocol'}")
