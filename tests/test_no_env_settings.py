"""mgpo's modules pass settings as arguments, never through environment variables they set themselves."""

from __future__ import annotations

import re
from pathlib import Path

import mgpo

SETS_ENV = re.compile(r"os\.environ\[[^\]]+\]\s*=|os\.environ\.(setdefault|update)\(|monkeypatch|putenv")


def test_no_module_sets_an_environment_variable():
    root = Path(mgpo.__file__).parent
    offenders = [
        f"{path.relative_to(root)}:{n}"
        for path in root.rglob("*.py")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if SETS_ENV.search(line)
    ]
    assert offenders == []
