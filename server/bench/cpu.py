"""CPU time per request by process group (server, PostgreSQL, load generator), and the server's resident
memory, read from /proc.

Throughput alone does not say where a scenario's cost goes; on a small machine the server, the
database and the load generator share the cores, so the report shows each one's CPU per request.
Linux only: elsewhere the figures are simply absent.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...


def _processes() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command name, CPU seconds used so far)."""
    found: dict[int, tuple[int, str, float]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        fields = _stat_fields(pid)
        try:
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if fields is not None:
            found[pid] = (int(fields[1]), name, (int(fields[11]) + int(fields[12])) / _TICKS)
    return found


def _tree(root: int, processes: dict[int, tuple[int, str, float]]) -> set[int]:
    members = {root}
    grew = True
    while grew:
        children = {pid for pid, (parent, _, _) in processes.items() if parent in members} - members
        members |= children
        grew = bool(children)
    return members


def snapshot(server_pid: int | None, others: Mapping[str, int] | None = None) -> dict[str, dict[int, float]] | None:
    """CPU seconds used so far, per process: the server's process tree, PostgreSQL's processes, us, and
    the tree of each of `others` (group name -> pid; e.g. a PSP sandbox in its own process)."""
    if not _PROC.is_dir():
        return None
    processes = _processes()
    server = _tree(server_pid, processes) if server_pid is not None else set()
    groups = {
        "server": {pid: processes[pid][2] for pid in server if pid in processes},
        "postgres": {pid: cpu for pid, (_, name, cpu) in processes.items() if name == "postgres"},
        "client": {pid: cpu for pid, (_, _, cpu) in processes.items() if pid == os.getpid()},
    }
    for group, root in (others or {}).items():
        groups[group] = {pid: processes[pid][2] for pid in _tree(root, processes) if pid in processes}
    return groups


def tree(root: int) -> set[int]:
    """The process and its descendants (empty where there is no /proc)."""
    return _tree(root, _processes()) if _PROC.is_dir() else set()


def rss_mib(pids: Iterable[int]) -> float:
    """The resident memory of these processes together, in MiB (VmRSS; processes gone count 0)."""
    total_kib = 0
    for pid in pids:
        try:
            status = (_PROC / str(pid) / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
                break
    return total_kib / 1024


def used_between(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU seconds each group used between two snapshots: processes that started meanwhile count in full;
    one that ended meanwhile (an idle pooled backend closing) is left out rather than subtracted."""
    return {group: sum(cpu - before[group].get(pid, 0.0) for pid, cpu in after[group].items()) for group in before}
