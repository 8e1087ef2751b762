"""No secrets in the code or in what ECM writes: credentials come from the environment."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PATTERNS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    # a literal user:password@ (a shell or template variable like $PASSWORD is not one)
    "credentials in a URL": re.compile(
        r"[a-z][a-z0-9+.-]*://([^/\s:@\"'$][^/\s:@\"']*):([^/\s@\"'$][^/\s@\"']*)@"
    ),
    "password assignment": re.compile(
        r"(?i)\b(password|passwd|secret|api_key|token)\s*[:=]\s*[\"'][^\"'{}$<]{6,}[\"']"
    ),
}
PLACEHOLDERS = {("u", "p"), ("USER", "PASSWORD")}
"""user:password pairs that are documentation or test placeholders, not credentials."""


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    files = []
    for name in out:
        p = REPO / name
        if p == Path(__file__).resolve():  # holds the patterns and a fake secret by design
            continue
        if not p.is_file() or p.stat().st_size > 2_000_000:
            continue
        head = p.read_bytes()[:4096]
        if b"\0" in head:  # binary (parquet, images)
            continue
        files.append(p)
    return files


def test_no_credentials_in_tracked_files() -> None:
    found = []
    for p in _tracked_text_files():
        text = p.read_text(encoding="utf-8", errors="replace")
        for what, pat in PATTERNS.items():
            for m in pat.finditer(text):
                if what == "credentials in a URL" and (m.group(1), m.group(2)) in PLACEHOLDERS:
                    continue
                line = text.count("\n", 0, m.start()) + 1
                found.append(f"{p.relative_to(REPO)}:{line}: {what}")
    assert not found, "\n".join(found)
    assert len(_tracked_text_files()) > 100  # the scan did read the tree


def test_the_database_password_is_never_written_to_the_instance_file(tmp_path, monkeypatch):
    from pipelines.cli import _select_instance

    secret = "s3cr3t-Pa55word"
    monkeypatch.setenv("ECM_DAGSTER_PG_URL", f"postgresql+psycopg2://ecm:{secret}@db:5432/ecm")
    target = tmp_path / "dagster.yaml"
    _select_instance(target)
    text = target.read_text()
    assert secret not in text
    assert "env: ECM_DAGSTER_PG_URL" in text  # read from the environment at run time
