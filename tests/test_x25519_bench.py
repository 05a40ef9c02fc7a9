"""tools/x25519_bench.py runs under both interpreters and reports what
docs/identity.md quotes (one quick run: the figures themselves are the
host's, not checked here)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_bench_reports_both_interpreters_the_heap_and_an_esp32_estimate():
    # (192K: beside a node whose core is .mpy in the heap, X25519 has no room
    # at 128K; identity.md: identities need ROMFS at 128K)
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "x25519_bench.py"), "--runs", "1",
                        "--heap", "192K", "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["cpython"]["alone"]["slices"] == 107   # 319 rungs, 3 at a time
    mp = out["micropython"]
    for where in ("alone", "beside_node"):
        assert mp[where]["longest_slice_us"] > 0 and mp[where]["whole_us"] > 0
    a = mp["alone"]
    assert 0 < a["kept_bytes"] < a["peak_bound_bytes"] < 8192 and a["slice_alloc_bytes"] > a["rung_alloc_bytes"]
    assert 1000 < mp["mpy_bytes"] < 4000
    e = mp["esp32_estimate"]
    assert e["factor"] == 110 and e["slice_stall_ms"] > 0 and e["collections_per_slice"] >= 1
