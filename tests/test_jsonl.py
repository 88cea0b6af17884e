"""mgpo's one JSON Lines reader: blank lines skipped, a torn tail tolerated only where mgpo appends."""

from __future__ import annotations

import pytest

from mgpo.errors import MgpoError
from mgpo.types import iter_jsonl, numbered_jsonl


def test_blank_lines_skipped_and_numbers_kept(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert list(numbered_jsonl(path)) == [(1, {"a": 1}), (3, {"a": 2})]


def test_a_torn_tail_is_skipped_only_when_allowed(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n{"a": ')
    assert list(iter_jsonl(path)) == [{"a": 1}]
    with pytest.raises(MgpoError, match=r"a\.jsonl:2: not valid JSON .*each line must be one row"):
        list(iter_jsonl(path, "one row", torn_tail=False))


def test_a_bad_line_in_the_middle_names_file_and_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 3}\n')
    with pytest.raises(MgpoError, match=r"a\.jsonl:2: not valid JSON"):
        list(iter_jsonl(path))


def test_pathological_nesting_is_one_error_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text("[" * 100_000 + "\n{}\n")
    with pytest.raises(MgpoError, match=r"a\.jsonl:1"):
        list(iter_jsonl(path))
