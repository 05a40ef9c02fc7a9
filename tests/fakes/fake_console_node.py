# A stand-in for a board's USB serial port with a node behind it: the node's
# console (docs/console.md: newline-delimited JSON) on a pseudo-terminal.
#   path                  what the host opens: a symlink to the current pty
#   answers               status (id, name, uptime_s ...) and send (a `sent`
#                         with a message id); every command is kept in `commands`
#   emit(event)           one event line to the host, as the node would print it
#   refuse                a function of a send command: the error the node answers
#                         it with (as console_commands.py does), or None: `sent`
#   unplug() / plug()     the port goes away (the pty closes under the host, the
#                         path disappears) and comes back on a new pty, like a
#                         USB board unplugged or reset
# Runs under CPython only (the host side's tests).
import json
import os
import pty
import queue
import select
import threading
import tty


class FakeConsoleNode:
    def __init__(self, folder, node_id="0000000a", name="gw-node"):
        self.path = str(folder / "ttyNODE")
        self.id, self.name = node_id, name
        self.commands: queue.Queue = queue.Queue()
        self.next_msg_id = 1000
        self.plugs = 0
        self.refuse = lambda cmd: None
        self._lock = threading.Lock()
        self._master = None

    def plug(self):
        master, slave = pty.openpty()
        tty.setraw(slave)
        self._master, self._slave = master, slave  # our slave end keeps the pty valid between opens
        self._stop = threading.Event()
        threading.Thread(target=self._serve, args=(master, self._stop), daemon=True).start()
        os.symlink(os.ttyname(slave), self.path)
        self.plugs += 1
        return self

    def unplug(self):
        os.unlink(self.path)
        self._stop.set()
        with self._lock:
            for fd in (self._master, self._slave):
                os.close(fd)
            self._master = None

    def emit(self, ev: dict):
        with self._lock:
            if self._master is None:
                raise OSError("unplugged")
            os.write(self._master, json.dumps(ev).encode() + b"\n")

    def _serve(self, master, stop):
        buf = b""
        while not stop.is_set():
            try:
                ready, _, _ = select.select([master], [], [], 0.1)
                if not ready:
                    continue
                buf += os.read(master, 4096)
            except (OSError, ValueError):
                return
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    cmd = json.loads(line)
                except ValueError:
                    continue
                self.commands.put(cmd)
                try:
                    self._answer(cmd)
                except OSError:
                    return

    def _answer(self, cmd):
        ref = cmd.get("ref")
        if cmd.get("cmd") == "status":
            self.emit({"event": "status", "ref": ref, "id": self.id, "name": self.name,
                       "uptime_s": 1, "counters": {}, "neighbours": []})
        elif cmd.get("cmd") == "send" and self.refuse(cmd):
            self.emit({"event": "error", "error": self.refuse(cmd), "ref": ref})
        elif cmd.get("cmd") == "send":
            self.next_msg_id += 1
            to = cmd.get("to", "all")
            self.emit({"event": "sent", "id": self.next_msg_id, "to": to, "ref": ref})
