"""bounded.py: what a user or a remote hands the host is read within a bound."""
import io
import os

import pytest

from pollen_controller.bounded import check_file, read_file, read_stream
from pollen_controller.errors import InputError


def test_a_device_a_folder_and_a_sparse_gigabyte_are_refused_before_reading(tmp_path):
    with pytest.raises(InputError, match="/dev/zero: not a regular file"):
        read_file("/dev/zero", 1000)
    with pytest.raises(InputError, match="not a regular file"):
        check_file(tmp_path, 1000)
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as f:
        f.truncate(1 << 30)
    with pytest.raises(InputError, match="file is 1073741824 bytes; the limit is 1000 .hint.$"):
        read_file(sparse, 1000, hint=" (hint)")
    with pytest.raises(InputError, match="No such file"):
        check_file(tmp_path / "nope", 10)


def test_within_the_bound_all_is_read(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(os.urandom(200000))
    assert read_file(p, 200000) == p.read_bytes()
    assert check_file(p, 200000) == 200000


def test_a_stream_is_read_one_byte_past_the_bound_at_most():
    class Endless(io.RawIOBase):
        asked = 0

        def read(self, n=-1):
            assert 0 < n <= 65536
            self.asked += n
            return b"\0" * n

    s = Endless()
    assert read_stream(s, 100000) is None and s.asked == 100001
    assert read_stream(io.BytesIO(b"abc"), 3) == b"abc"


def test_small_text_files_a_user_names_are_read_within_a_bound(tmp_path):
    # network files, config YAML, board profiles: a device or a sparse
    # gigabyte named by mistake is refused after at most the bound, not read
    # into memory until the kernel kills the process (pipes still work)
    import subprocess
    import sys
    from pathlib import Path

    from click.testing import CliRunner

    from pollen_controller.bounded import read_small
    from pollen_controller.cli.main import main

    with pytest.raises(InputError, match=r"^/dev/zero: over 1000 bytes; not a file of this kind"):
        read_small("/dev/zero", 1000)
    p = tmp_path / "ok.json"
    p.write_text("{}")
    assert read_small(p, 1000) == b"{}"
    sparse = tmp_path / "big.json"
    with open(sparse, "wb") as f:
        f.truncate(1 << 30)
    run = CliRunner().invoke
    for args in (["network", "info", "/dev/zero"], ["network", "info", str(sparse)],
                 ["network", "share", "/dev/zero"],
                 ["provision", "--port", "/nonexistent", "--network", "/dev/zero"],
                 ["config", "import", "/dev/zero", "--port", "/nonexistent"],
                 ["flash", "--board", "/dev/zero", "--port", "/nonexistent"],
                 ["flash", "--board", str(sparse), "--port", "/nonexistent"]):
        r = run(main, args)
        assert r.exit_code == 1 and "over 65536 bytes" in r.output, (args, r.output)
    # a network file through a pipe (process substitution) is still read
    pollen = str(Path(sys.executable).with_name("pollen"))
    subprocess.run([pollen, "network", "create", "v", "-o", str(tmp_path / "v.json")], check=True,
                   capture_output=True)
    r = subprocess.run(f"{pollen} network info <(cat {tmp_path / 'v.json'})", shell=True,
                       executable="/bin/bash", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "network 'v'" in r.stdout, r.stderr
