"""Checking that a command left no process behind (pollen demo, mesh up)."""
import subprocess
from pathlib import Path


def children_of(pid: int) -> list[int]:
    return [int(x) for x in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                           text=True).stdout.split()]


def still_alive(pids) -> list[int]:
    """The pids that are still running (zombies count as gone)."""
    return [c for c in pids if Path(f"/proc/{c}").exists()
            and "zombie" not in Path(f"/proc/{c}/status").read_text().lower()]
