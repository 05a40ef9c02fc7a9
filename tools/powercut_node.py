"""An emulated node whose power tools/powercut.py can cut at its n-th storage
rename or unlink, with no change to the firmware: strace (the Debian package)
runs the node, or attaches to it, and kills it (SIGKILL) at that system call,
before it happens (error injected, then the kill) or just after.

A pollen record is written to "<name>.tmp" and renamed over "<name>"
(pollen_io/filestore.py), so the cut points are: the temporary file written
but not renamed (rename, before), the new record in place (rename, after),
a record about to go or just gone (unlink, before/after). A temporary file
half written is not among them (the host's write() does not tear); the node
sweeps every *.tmp at start, whatever is in it.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

from pollen_controller.emulation.node_process import NodeProcess

SYSCALLS = ("rename", "unlink")
_LINE = re.compile(r'^(?:\d+ +)?(rename|unlink)\("([^"]*)"(?:, "([^"]*)")?\) += \?')


def strace_usable() -> str | None:
    """None if strace can trace and kill here, else why not."""
    exe = shutil.which("strace")
    if exe is None:
        return "strace is not installed (Debian package strace)"
    r = subprocess.run([exe, "-qq", "-o", os.devnull, "true"], capture_output=True, text=True)
    return None if r.returncode == 0 else f"strace cannot trace here: {r.stderr.strip()[:200]}"


def _inject(syscall, n, when):
    # before: the call fails (EIO) and the kill comes on its way out; after: it succeeds first
    assert syscall in SYSCALLS and n >= 1 and when in ("before", "after")
    return ["-e", f"trace={syscall}",
            "-e", f"inject={syscall}:{'error=EIO:' if when == 'before' else ''}signal=KILL:when={n}"]


class CutNode(NodeProcess):
    """NodeProcess, plus: arm=(syscall, n, "before"|"after") before start() runs
    that life under strace; arm_running() arms a running node (counting from then)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.arm = None      # for the next start
        self.armed = None    # what the running life is armed with
        self._tracer = None  # strace attached by arm_running()

    @property
    def log(self) -> Path:
        return self.folder / "strace.log"

    def start(self):
        self.armed, self.arm = self.arm, None
        self.log.unlink(missing_ok=True)
        if self.armed is None:
            return super().start()
        # the node's own command, run by strace. -D: strace is a grandchild,
        # so the node keeps its pid (and dies with us)
        self.write_config()
        self.spawn(["strace", "-D", "-qq", "-y", "-s", "0", "-o", str(self.log)]
                   + _inject(*self.armed) + self.launch_argv())

    def arm_running(self, syscall, n, when):
        if not self.running or self.armed is not None:
            return False
        self.log.unlink(missing_ok=True)
        self._tracer = subprocess.Popen(
            ["strace", "-qq", "-y", "-s", "0", "-o", str(self.log)] + _inject(syscall, n, when)
            + ["-p", str(self.proc.pid)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.armed = (syscall, n, when)
        return True

    def stop(self, hard=False, timeout_s=3.0):
        super().stop(hard, timeout_s)
        self.disarm()

    def disarm(self):
        t, self._tracer = self._tracer, None
        if t is not None and t.poll() is None:
            t.send_signal(signal.SIGTERM)   # detaches; the node goes on if it lives
            try:
                t.wait(2)
            except subprocess.TimeoutExpired:
                t.kill()
                t.wait()

    def killed_by_strace(self) -> bool:
        return self.armed is not None and self.proc is not None and self.proc.poll() == -9 \
            and self.cut_point() is not None

    def cut_point(self):
        """(syscall, record name, "before"|"after") of the call strace cut at, or None."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return None
        for line in reversed(text.splitlines()):
            m = _LINE.match(line)
            if m:
                path = m.group(3) or m.group(2)
                return m.group(1), path.rsplit("/", 1)[-1], self.armed[2] if self.armed else "?"
        return None
