"""The audit log: fields, content only on request, 0600 files, rotation by size."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from mcp_router.audit import AuditEntry, AuditLog
from mcp_router.shared_config import AuditConfig
from tests.shared.support import FakeClock

ENTRY = AuditEntry(client="alice", tool="chat_completion", outcome="ok", trace_id="t1",
                   route="coding", provider="deepseek", model="deepseek-chat",
                   cost_usd=Decimal("0.000123"), pii={"email": 2}, prompt="my question",
                   answer="the answer")


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_each_call_is_one_json_line_without_content_by_default(tmp_path: Path):
    with AuditLog(tmp_path, AuditConfig(), FakeClock(wall=1_750_000_000.25)) as log:
        log.write(ENTRY)
        log.write(AuditEntry(client="bob", tool="cost_report", outcome="ok"))
    first, second = lines(tmp_path / "audit.jsonl")
    assert first == {
        "ts": "2025-06-15T15:06:40.250+00:00", "client": "alice", "tool": "chat_completion",
        "route": "coding", "provider": "deepseek", "model": "deepseek-chat", "outcome": "ok",
        "cost_usd": "0.000123", "cached": False, "trace_id": "t1", "pii": {"email": 2},
        "error": None}
    assert second["client"] == "bob" and second["cost_usd"] is None
    assert "my question" not in (tmp_path / "audit.jsonl").read_text()


def test_lines_are_on_disk_as_soon_as_written(tmp_path: Path):
    log = AuditLog(tmp_path, AuditConfig(), FakeClock())
    log.write(ENTRY)
    assert len(lines(tmp_path / "audit.jsonl")) == 1
    log.close()


def test_content_is_written_only_when_enabled_and_scrubbed(tmp_path: Path):
    config = AuditConfig(include_content=True)
    with AuditLog(tmp_path, config, FakeClock(), scrub=lambda s: s.replace("the", "***")) as log:
        log.write(ENTRY)
        log.write(AuditEntry(client="a", tool="chat_completion", outcome="error",
                             error="upstream said the key was wrong " + "x" * 1000))
    first, second = lines(tmp_path / "audit.jsonl")
    assert (first["prompt"], first["answer"]) == ("my question", "*** answer")
    assert isinstance(second["error"], str)
    assert second["error"].startswith("upstream said *** key") and len(second["error"]) == 300


def test_the_file_is_private_even_when_it_existed_with_loose_mode(tmp_path: Path):
    path = tmp_path / "audit.jsonl"
    path.write_text("")
    os.chmod(path, 0o644)
    with AuditLog(tmp_path, AuditConfig(), FakeClock()) as log:
        log.write(ENTRY)
    assert mode(path) == 0o600


def test_rotates_by_size_and_keeps_backups_private(tmp_path: Path):
    config = AuditConfig(max_bytes=600, backups=2)
    with AuditLog(tmp_path, config, FakeClock()) as log:
        for i in range(20):
            log.write(AuditEntry(client=f"c{i}", tool="chat_completion", outcome="ok"))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    for name in files:
        assert mode(tmp_path / name) == 0o600
        assert (tmp_path / name).stat().st_size < 600
    newest = lines(tmp_path / "audit.jsonl")
    assert newest[-1]["client"] == "c19"
    kept = [e["client"] for f in reversed(files) for e in lines(tmp_path / f)]
    assert kept == [f"c{i}" for i in range(20 - len(kept), 20)]  # oldest dropped, order kept


def test_servers_sharing_a_home_rotate_one_log_in_order(tmp_path: Path):
    # Each host starts its own server; all of them append to one audit.jsonl.
    config = AuditConfig(max_bytes=600, backups=3)
    with AuditLog(tmp_path, config, FakeClock()) as desktop, \
            AuditLog(tmp_path, config, FakeClock()) as editor:
        for i in range(14):
            (desktop if i % 3 else editor).write(
                AuditEntry(client=f"c{i}", tool="chat_completion", outcome="ok"))
    files = ["audit.jsonl.3", "audit.jsonl.2", "audit.jsonl.1", "audit.jsonl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)
    assert all((tmp_path / name).stat().st_size < 600 for name in files)
    kept = [e["client"] for f in files for e in lines(tmp_path / f)]
    assert kept == [f"c{i}" for i in range(14 - len(kept), 14)]  # oldest dropped, order kept


def test_a_disabled_log_writes_nothing(tmp_path: Path):
    with AuditLog(tmp_path / "home", AuditConfig(enabled=False), FakeClock()) as log:
        log.write(ENTRY)
    assert not (tmp_path / "home").exists()


def test_the_file_is_created_on_the_first_line_not_before(tmp_path: Path):
    home = tmp_path / "home"
    with AuditLog(home, AuditConfig(), FakeClock()) as log:
        assert not home.exists()
        log.write(ENTRY)
        assert mode(home / "audit.jsonl") == 0o600


def test_without_backups_a_full_file_starts_again_empty(tmp_path: Path):
    config = AuditConfig(max_bytes=600, backups=0)
    with AuditLog(tmp_path, config, FakeClock()) as log:
        for i in range(20):
            log.write(AuditEntry(client=f"c{i}", tool="chat_completion", outcome="ok"))
    assert [p.name for p in tmp_path.iterdir()] == ["audit.jsonl"]
    assert (tmp_path / "audit.jsonl").stat().st_size < 600
    assert lines(tmp_path / "audit.jsonl")[-1]["client"] == "c19"


def test_a_reopened_log_counts_the_lines_already_in_the_file(tmp_path: Path):
    config = AuditConfig(max_bytes=600, backups=1)
    for i in range(20):  # a server started again for every call
        with AuditLog(tmp_path, config, FakeClock()) as log:
            log.write(AuditEntry(client=f"c{i}", tool="chat_completion", outcome="ok"))
    assert (tmp_path / "audit.jsonl").stat().st_size < 600
    assert (tmp_path / "audit.jsonl.1").stat().st_size < 600


def test_a_log_that_cannot_be_written_warns_once_and_never_fails_the_call(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    (tmp_path / "audit.jsonl").mkdir()  # something in the file's place
    with AuditLog(tmp_path, AuditConfig(), FakeClock()) as log:
        log.write(ENTRY)
        log.write(ENTRY)
    warnings = [r for r in caplog.records if r.name == "mcp_router.audit"]
    assert len(warnings) == 1 and "cannot be written" in warnings[0].getMessage()


def test_writing_resumes_once_the_file_can_be_written_again(tmp_path: Path):
    (tmp_path / "audit.jsonl").mkdir()
    with AuditLog(tmp_path, AuditConfig(), FakeClock()) as log:
        log.write(AuditEntry(client="lost", tool="chat_completion", outcome="ok"))
        (tmp_path / "audit.jsonl").rmdir()
        log.write(AuditEntry(client="kept", tool="chat_completion", outcome="ok"))
    assert [e["client"] for e in lines(tmp_path / "audit.jsonl")] == ["kept"]


FULL_DISK = textwrap.dedent("""
    import resource, sys
    from pathlib import Path
    from mcp_router.audit import AuditEntry, AuditLog
    from mcp_router.clock import LoopClock
    from mcp_router.shared_config import AuditConfig

    home = Path(sys.argv[1])
    with AuditLog(home, AuditConfig(), LoopClock()) as log:
        log.write(AuditEntry(client="before", tool="chat_completion", outcome="ok"))
        size = (home / "audit.jsonl").stat().st_size
        # the disk fills 40 bytes into the next line (Python ignores SIGXFSZ: a short write)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 40, resource.RLIM_INFINITY))
        log.write(AuditEntry(client="torn", tool="chat_completion", outcome="ok"))
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
        log.write(AuditEntry(client="after", tool="chat_completion", outcome="ok"))
""")


def test_a_line_the_disk_fills_up_in_is_dropped_whole_and_warned_of(tmp_path: Path):
    done = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [e["client"] for e in lines(tmp_path / "audit.jsonl")] == ["before", "after"]
    assert done.stderr.count("cannot be written") == 1, done.stderr
