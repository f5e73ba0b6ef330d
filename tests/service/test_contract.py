"""The proto contract checked by buf: lint (STANDARD rules) and no breaking change against the previous commit."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"


def _buf() -> str:
    buf = shutil.which("buf")
    if buf is None:
        if os.environ.get("CI"):
            pytest.fail("buf not found: it is installed by the dev extra (buf-bin)")
        pytest.skip("buf not installed (pip install -e '.[dev]')")
    return buf


def _run(*args: str, cwd: Path = PROTOS) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_buf(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def _previous_commit() -> str:
    """HEAD~1 when the clone has it (else HEAD: a shallow clone compares the working tree with the last commit)."""
    has_parent = subprocess.run(["git", "rev-parse", "--verify", "HEAD~1"], cwd=ROOT, capture_output=True).returncode
    return "HEAD~1" if has_parent == 0 else "HEAD"


def test_buf_lint_passes() -> None:
    result = _run("lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_breaking_change_against_the_previous_commit() -> None:
    result = _run("breaking", "--against", f"{ROOT / '.git'}#ref={_previous_commit()},subdir=protos")
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_catches_a_removed_field(tmp_path: Path) -> None:
    changed = tmp_path / "protos"
    shutil.copytree(PROTOS, changed)
    proto = changed / "retrieval" / "v1" / "retrieval.proto"
    text = proto.read_text()
    assert "  string request_id = 7;\n" in text
    proto.write_text(text.replace("  string request_id = 7;\n", "", 1))
    result = _run("breaking", "--against", str(PROTOS), cwd=changed)
    assert result.returncode != 0 and "request_id" in result.stdout + result.stderr
