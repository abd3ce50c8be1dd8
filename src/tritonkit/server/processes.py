"""The server's processes as /proc shows them: liveness, parents, CPU time, process groups and python-backend stubs;
and how a child process ended, in words.

Read from /proc directly, so the launcher, the watchdog, the executor and the bench need no psutil.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

__all__ = [
    "child_commands",
    "cpu_seconds",
    "exit_description",
    "is_live",
    "parent_process",
    "process_group_members",
    "stub_processes",
]


def _live_stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, ...; None if gone or a zombie."""
    try:
        # The command name may contain spaces and parentheses; the fields after the last ")" are fixed.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields if fields[0] != "Z" else None


def _process_group(pid: int) -> int | None:
    fields = _live_stat_fields(pid)
    return None if fields is None else int(fields[2])


def is_live(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    return _live_stat_fields(pid) is not None


def parent_process(pid: int) -> int | None:
    """The parent of a live process, or None when it is gone."""
    fields = _live_stat_fields(pid)
    return None if fields is None else int(fields[1])


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time a live process has used so far; None if it is gone."""
    fields = _live_stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group: a server started by tritonkit and its stubs."""
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _process_group(int(entry.name)) == pgid
    ]


def child_commands(server_pid: int) -> dict[int, list[str]]:
    """The arguments of a server's live children (its process group, the server left out), by pid."""
    commands = {}
    for pid in process_group_members(server_pid):
        if pid == server_pid:
            continue
        try:
            commands[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue  # exited since the group was listed
    return commands


def stub_processes(server_pid: int, repository: Path) -> dict[tuple[str, str], int]:
    """Live python-backend stubs of a server: (model, instance) -> pid.

    A stub is a child in the server's process group; its first argument is the model file, so the model is the
    first path component under the repository.
    """
    repository = Path(repository).resolve()
    found: dict[tuple[str, str], int] = {}
    for pid, argv in child_commands(server_pid).items():
        if len(argv) < 3 or "stub" not in Path(argv[0]).name:
            continue
        try:
            model = Path(argv[1]).resolve().relative_to(repository).parts[0]
        except (ValueError, IndexError):
            continue
        # The instance name is the argument of the form <model>_<group>_<index> (e.g. tiny_0_0).
        instance = next((a for a in argv[2:] if a.startswith(f"{model}_") and "/" not in a), argv[1])
        found[(model, instance)] = pid
    return found


def exit_description(code: int) -> str:
    """A subprocess return code in words: "exited with code 2", "was killed by SIGSEGV (segmentation fault)"."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        number = signal.Signals(-code)
    except ValueError:
        return f"was killed by signal {-code}"
    return f"was killed by {number.name} ({(signal.strsignal(number) or number.name).lower()})"
