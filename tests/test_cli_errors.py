"""The `pollen` command's one error handler (cli/main.py): a failure the user
can act on is one line, `pollen: message`, exit status 1; a bug keeps its
traceback. The host's error classes are one family (controller/errors.py)."""
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import pollen_controller
from pollen_controller.errors import BoardError, PollenError

POLLEN = str(Path(sys.executable).with_name("pollen"))


def _pollen_with(module, function, error, *args):
    # `pollen ARGS` in a fresh interpreter with module.function raising error:
    # what a user would see if that library call failed that way
    code = (f"import {module} as m\n"
            "from pollen_controller import errors\n"
            "from pollen import files, ids\n"
            f"def fail(*a, **k):\n    raise {error}\n"
            f"m.{function} = fail\n"
            "from pollen_controller.cli.main import main\n"
            f"main({list(args)!r}, prog_name='pollen')\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("error", ["errors.BoardError", "errors.NetworkError", "OSError",
                                   "ids.ConfigError", "files.FileError"])
def test_a_failure_to_report_is_one_line_and_exit_1(error):
    r = _pollen_with("pollen_controller.board.network_files", "parse_share_string",
                     f"{error}('board x: does not answer')", "network", "import", "pollen1:x")
    assert (r.returncode, r.stderr, r.stdout) == (1, "pollen: board x: does not answer\n", "")


@pytest.mark.parametrize("error, last_line", [("ValueError('bug')", "ValueError: bug"),
                                              ("RuntimeError('bug')", "RuntimeError: bug"),
                                              ("KeyError('bug')", "KeyError: 'bug'")])
def test_a_bug_keeps_its_traceback(error, last_line):
    r = _pollen_with("pollen_controller.sim.scenario", "load_scenario", error, "sim", "line-10")
    assert r.returncode != 0
    assert "Traceback (most recent call last)" in r.stderr
    assert r.stderr.splitlines()[-1] == last_line
    assert not [s for s in r.stderr.splitlines() if s.startswith("pollen: ")]  # not one line


@pytest.mark.parametrize("args, message", [
    (["sim", "nosuch"], "pollen: scenario 'nosuch': not found"),
    (["network", "import", "garbage"], "pollen: network string: expected it to start with"),
    (["network", "import", "pollen1:abc"], "pollen: network string: damaged"),
    (["network", "import", "pollen2:abcd"], "pollen: network string: its checksum does not match"),
    (["network", "create", "us", "--region", "US915"], "pollen: network new network: config "
                                                       "field 'preset'"),
    (["build", "--board", "nosuch"], "pollen: board 'nosuch': unknown board"),
    (["flash", "--board", "nosuch", "--port", "/nonexistent"], "pollen: board 'nosuch': unknown"),
    (["console", "--port", "/nonexistent"], "pollen: /nonexistent: cannot open the port"),
    (["catalog", "--port", "/nonexistent"], "pollen: /nonexistent: cannot open the port"),
    (["history", "--db", "nohist.db"], "pollen: nohist.db: no history here yet"),
    (["network", "create", "x", "-o", "/proc/x.json"], "pollen: [Errno 2] No such file"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    r = subprocess.run([POLLEN, *args], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 1 and r.stderr.startswith(message), r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_bad_settings_from_the_core_are_one_line(tmp_path):
    # the core's ConfigError (pollen.ids) cannot be a PollenError: the CLI names it
    subprocess.run([POLLEN, "network", "create", "v", "-o", "v.json"], cwd=tmp_path, check=True,
                   capture_output=True)
    r = subprocess.run([POLLEN, "provision", "--port", "/nonexistent", "--network", "v.json",
                        "--name", "a", "--node-id", "zz"], capture_output=True, text=True,
                       cwd=tmp_path, timeout=60)
    assert (r.returncode, r.stderr) == (1, "pollen: config field '--node-id': expected a node id "
                                           "of up to 8 hex digits, got 'zz'\n")
    r = subprocess.run([POLLEN, "provision", "--port", "/nonexistent", "--network", "v.json",
                        "--name", "a", "--radio", "udp:abc"], capture_output=True, text=True,
                       cwd=tmp_path, timeout=60)
    assert r.returncode == 1
    assert r.stderr.startswith("pollen: --radio: expected 'lora' or 'udp:PORT'")


def test_every_host_error_class_is_a_pollen_error():
    found = []
    for m in pkgutil.walk_packages(pollen_controller.__path__, "pollen_controller."):
        module = importlib.import_module(m.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__.startswith("pollen_controller"):
                found.append(cls)
                assert issubclass(cls, PollenError), cls
    assert BoardError in found and len(set(found)) >= 15
    from pollen_controller.board import profiles, transport

    assert profiles.BoardError is transport.BoardError is BoardError   # one class
