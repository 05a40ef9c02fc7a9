def pytest_addoption(parser):
    parser.addoption("--hil-port", action="append", default=[],
                     help="serial port of a real board for the hardware-in-loop tests "
                          "(give two: --hil-port A --hil-port B)")
    parser.addoption("--hil-board", action="append", default=[],
                     help="board profile id for each --hil-port, in the same order "
                          "(default: read the installed board.json)")


# ---- a real Mosquitto broker on a free 127.0.0.1 port ---------------------------

import shutil as _shutil
import socket as _socket
import subprocess as _subprocess
import time as _time

import pytest as _pytest


class Broker:
    """A Mosquitto process with persistence (its queued messages survive a
    restart), on 127.0.0.1; start(), stop() and restart() as a test needs."""

    def __init__(self, exe, folder):
        self.exe = exe
        self.folder = folder
        s = _socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.conf = folder / "mosquitto.conf"
        import getpass
        # run as whoever runs the tests (as root it would switch to the user
        # 'mosquitto', which cannot write the test's folder: no persistence)
        self.conf.write_text(f"user {getpass.getuser()}\n"
                             f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                             f"persistence true\npersistence_location {folder}/\n"
                             f"log_dest file {folder}/mosquitto.log\n")
        self.proc = None

    def start(self):
        self.proc = _subprocess.Popen([self.exe, "-c", str(self.conf)],
                                      stdout=_subprocess.DEVNULL, stderr=_subprocess.DEVNULL)
        deadline = _time.monotonic() + 10
        while _time.monotonic() < deadline:
            try:
                _socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                _time.sleep(0.05)
        raise RuntimeError("mosquitto did not start: " + (self.folder / "mosquitto.log").read_text()[-500:])

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # it saves its persistence file on the way out
            self.proc.wait(10)
        self.proc = None

    def restart(self):
        self.stop()
        self.start()


@_pytest.fixture
def mosquitto(tmp_path):
    exe = _shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if _shutil.os.path.exists(p)), None)
    if exe is None:
        _pytest.skip("mosquitto is not installed (Debian package 'mosquitto'; .ci/run installs it)")
    folder = tmp_path / "broker"
    folder.mkdir()
    b = Broker(exe, folder)
    b.start()
    yield b
    b.stop()


@_pytest.fixture(autouse=True)
def _identity_backups_in_tmp(tmp_path_factory, monkeypatch):
    # pollen provision backs up each identity it makes in XDG_DATA_HOME
    # (docs/identity.md): the tests' go to a folder of their own, not the
    # user's home
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.getbasetemp() / "xdg-data"))
