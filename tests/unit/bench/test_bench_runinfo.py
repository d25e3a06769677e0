"""What a results file says it was measured on (bench/runinfo.py): parsers and the gathered record."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench.runinfo import (
    cpu_model,
    git_state,
    memory_total_bytes,
    package_versions,
    parse_nats_version,
    parse_weed_version,
)

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
processor\t: 1
model name\t: AMD EPYC 7B13
"""


def test_cpu_model_and_memory_come_from_proc_text() -> None:
    assert cpu_model(CPUINFO) == "AMD EPYC 7B13"
    assert cpu_model("processor\t: 0\nFeatures\t: fp asimd\n") == ""
    assert memory_total_bytes("MemTotal:       24641296 kB\nMemFree:  1 kB\n") == 24641296 * 1024
    assert memory_total_bytes("") == 0


def test_server_versions_are_read_from_their_own_words() -> None:
    assert parse_nats_version("nats-server: v2.15.1\n") == "2.15.1"
    assert parse_weed_version("version 8000GB 4.48 pypi linux amd64\n\nFor enterprise users...") == "4.48"
    assert parse_weed_version("version 30GB 3.71 abcdef linux amd64") == "3.71"
    assert parse_nats_version("") == parse_weed_version("no such thing") == ""


def test_package_versions_name_python_and_mark_absent_packages() -> None:
    versions = package_versions(("grpcio", "no-such-distribution-xyz"))
    assert versions["python"].startswith("3.11")
    assert versions["grpcio"]
    assert versions["no-such-distribution-xyz"] is None


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, timeout=30)


def test_git_state_names_the_commit_and_sees_a_dirty_tree(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("one\n")
    _git(tmp_path, "add", "a.txt")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "first")
    clean = git_state(tmp_path)
    assert len(clean["commit"]) == 40
    assert clean["subject"] == "first"
    assert clean["dirty"] is False
    (tmp_path / ".gitignore").write_text("results/\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "latest.json").write_text("{}")
    _git(tmp_path, "add", ".gitignore")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "ignore")
    assert git_state(tmp_path)["dirty"] is False  # an ignored results file is not a change
    (tmp_path / "a.txt").write_text("two\n")
    (tmp_path / "new_module.py").write_text("not committed yet\n")
    dirty = git_state(tmp_path)
    assert dirty["dirty"] is True
    assert sorted(dirty["changed_files"]) == ["a.txt", "new_module.py"]
    assert dirty["commit"] != clean["commit"]
