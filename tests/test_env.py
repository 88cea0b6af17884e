"""The integration smoke test: every dependency mgpo relies on, touched the way mgpo uses it (mgpo.env.CHECKS),
and `mgpo env`, whose report names the package at fault when one breaks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mgpo import env

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("name", list(env.CHECKS))
def test_integration_works(name: str) -> None:
    check = env.run_check(name)
    assert check.ok, f"{name}: {check.detail} — package {check.package}; fix: {check.fix}"


def test_filelock_without_private_api_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """filelock 4.3 removed filelock._api, which lmms-eval's evaluator imports: the check must name filelock."""
    import lmms_eval.evaluator as evaluator

    monkeypatch.setattr(evaluator._enable_reentrant_filelocks, "_patched", False, raising=False)
    monkeypatch.setitem(sys.modules, "filelock._api", None)  # what `import filelock._api` meets on filelock 4.3
    check = env.run_check("lmms-eval evaluator")
    assert not check.ok
    assert check.package == "filelock" and "filelock._api" in check.detail
    assert check.fix and "filelock" in check.fix


def test_out_of_bounds_version_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    if not env.requirements():
        pytest.skip("mgpo is not installed as a package here")
    real = env.version
    monkeypatch.setattr(env, "version", lambda dist: "4.3.1" if dist == "filelock" else real(dist))
    check = env.run_check("requirements")
    assert not check.ok and check.package == "filelock"
    assert "filelock 4.3.1 does not satisfy" in check.detail


def test_a_failing_check_blames_the_package_of_a_failed_import(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> str:
        import datasets.no_such_module  # noqa: F401

        return "unreachable"

    monkeypatch.setitem(env.CHECKS, "datasets parquet", ("datasets", broken))
    check = env.run_check("datasets parquet")
    assert not check.ok and check.package == "datasets" and "no_such_module" in check.detail


def test_report_is_plain_text_with_marks() -> None:
    report = env.EnvReport(
        "3.11",
        "linux",
        "0.1.0",
        {"torch": "2.14.1", "trl": None},
        {"cuda_available": False},
        [env.Check("a", "x", True, "fine"), env.Check("b", "filelock", False, "broke", "pip install f")],
    )
    text = env.format_report(report)
    assert "✓ a: fine" in text and "✗ b: broke [package: filelock]" in text and "    fix: pip install f" in text
    assert "- trl: not installed" in text and "\x1b" not in text
    assert not report.ok and report.to_dict()["ok"] is False


def test_mgpo_env_cli_json() -> None:
    proc = subprocess.run([str(BIN / "mgpo"), "env", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    assert data["ok"] is True
    for name in ("lmms-eval", "trl", "transformers", "torch"):
        assert data["packages"][name], name
    assert {c["name"] for c in data["checks"]} >= set(env.CHECKS)
    assert "cuda_available" in data["device"]
