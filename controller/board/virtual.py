"""A virtual board: a real MicroPython unix-port process behind a
pseudo-terminal, using its own folder as its filesystem.

The process's console is one pty; a second pty is bridged to it and its
/dev/pts path is what a user or `pollen flash/provision/console --port` opens,
exactly like a board's USB serial port (mpremote talks the raw REPL to it).
Like a board, it "boots" main.py when there is one and drops to the REPL when
main returns; Ctrl-D at the REPL reboots it (the process is started again in
the same folder). Ctrl-C from the host while a program runs (the app) is a
keyboard interrupt, as a board's USB console makes it: the process gets
SIGINT (the unix port's console is a raw pty, which would pass the byte to
the app as input) and the app stops into the REPL.
"""
from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import threading
import tty
from pathlib import Path

from pollen_controller.emulation.node_process import die_with_parent, micropython_binary


class VirtualBoard:
    def __init__(self, folder: Path, heap: str = "256K"):
        self.folder = Path(folder)
        self.heap = heap
        self.proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ready = threading.Event()  # the board has said something since its boot
        self._tail = b""
        self._running = False  # a program (main.py) runs: Ctrl-C interrupts it
        self.boots = 0

    # ---- lifecycle ----------------------------------------------------------

    def start(self) -> str:
        """Start the board; returns the port path to open."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._mcu_master, mcu_slave = pty.openpty()
        self._host_master, host_slave = pty.openpty()
        for fd in (mcu_slave, host_slave):
            tty.setraw(fd)
        self._mcu_slave = mcu_slave
        self._host_slave = host_slave  # kept open so the port stays valid between opens
        self.port = os.ttyname(host_slave)
        self._boot()
        threading.Thread(target=self._bridge, daemon=True).start()
        threading.Thread(target=self._supervise, daemon=True).start()
        # Input that arrives before the REPL has set up its terminal is thrown
        # away (a real board's USB port is not there before it boots): wait
        # for its prompt, or for the app's first line when it runs main.py.
        self._ready.wait(10)
        return self.port

    def _boot(self):
        with self._lock:
            args = [micropython_binary(), "-X", f"heapsize={self.heap}"]
            if (self.folder / "main.py").exists():
                args += ["-i", "main.py"]  # run the app, then the REPL (as a board does)
            self._ready.clear()
            self._tail = b""
            self._app = (self.folder / "main.py").exists()
            self._running = self._app
            env = dict(os.environ, MICROPYPATH=".frozen:.:lib")
            self.proc = subprocess.Popen(args, cwd=self.folder, env=env, stdin=self._mcu_slave,
                                         stdout=self._mcu_slave, stderr=self._mcu_slave,
                                         preexec_fn=die_with_parent)
            self.boots += 1

    def _supervise(self):
        while not self._stop.is_set():
            p = self.proc
            try:
                p.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
            if not self._stop.is_set():
                self._boot()  # Ctrl-D at the REPL or a crash: the board reboots

    def _bridge(self):
        a, b = self._mcu_master, self._host_master
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([a, b], [], [], 0.2)
            except (OSError, ValueError):
                return
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue  # no reader on the other end right now
                if data:
                    if fd == a:
                        self._heard(data)
                    elif b"\x03" in data and self._running:
                        data = self._interrupt(data)
                    try:
                        os.write(b if fd == a else a, data)
                    except OSError:
                        pass

    def _heard(self, data: bytes):
        """The board's output: has it started, is it at the REPL?"""
        self._tail = (self._tail + data)[-16:]
        if b"\n>>> " in self._tail:  # a JSON line cannot hold a raw newline
            self._running = False
        if not self._ready.is_set() and (b">>> " in self._tail or self._app and b"\n" in self._tail):
            self._ready.set()

    def _interrupt(self, data: bytes) -> bytes:
        """Ctrl-C while the app runs: a keyboard interrupt, not input. Before
        the app has said anything it is dropped (as a board's USB port is not
        there yet): the process may not handle SIGINT yet."""
        p = self.proc
        if self._ready.is_set() and p is not None and p.poll() is None:
            p.send_signal(signal.SIGINT)
        return data.replace(b"\x03", b"")

    def stop(self):
        self._stop.set()
        p = self.proc
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()
        for fd in (self._mcu_master, self._host_master, self._mcu_slave, self._host_slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
