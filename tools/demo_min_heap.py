"""The smallest heap at which `pollen demo` runs clean, found by bisection.

    .venv/bin/python tools/demo_min_heap.py [--lo 112K] [--hi 192K] [--step-kib 4] [--runs 2] [--json]

A run is clean when its `health.clean` is true (docs/emulation.md: no task
failed, no frame was dropped for want of heap, no internal error, every node
kept hearing, running and answering) and it delivered everything (every
message, the stored one, reach 1.0, the file verified). A heap passes when
all --runs runs at it are clean: the heap's use varies from run to run with
timing, so one lucky run proves little. Assumes more heap is never worse,
checks --hi first and says so if even that fails, then --lo (and says so if
that is clean already). Each run takes about two minutes; the default
bisection does 5 to 6 steps after those two.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

POLLEN = str(Path(sys.executable).parent / "pollen")


def kib(text: str) -> int:
    t = text.strip().upper()
    return int(t[:-1]) if t.endswith("K") else int(t) // 1024


def one_run(heap_kib: int, extra: list[str]) -> dict:
    r = subprocess.run([POLLEN, "demo", "--json", "--heap", f"{heap_kib}K"] + extra,
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        return {"clean": False, "why": r.stderr.strip().splitlines()[-1:]}
    out = json.loads(r.stdout)
    f = out.get("file") or {}
    delivered = (out["unicast"]["delivered"] == out["unicast"]["sent"]
                 and out["broadcast"]["reach"] == 1.0 and out["store_and_forward"]["delivered"]
                 and (not f or f.get("verified")))
    h = out["health"]
    return {"clean": h["clean"] and delivered, "delivered": delivered, "health": h,
            "peak_heap_bytes": out["peak_heap_bytes"]}


def passes(heap_kib: int, runs: int, extra: list[str], log: list) -> bool:
    for i in range(runs):
        r = one_run(heap_kib, extra)
        log.append({"heap_kib": heap_kib, **r})
        print(f"{heap_kib}K run {i + 1}: {'clean' if r['clean'] else 'NOT clean'} "
              f"{json.dumps({k: v for k, v in r.items() if k != 'clean'})}", file=sys.stderr)
        if not r["clean"]:
            return False
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lo", default="112K", help="a heap expected to fail (default 112K)")
    ap.add_argument("--hi", default="192K", help="a heap expected to pass (default 192K)")
    ap.add_argument("--step-kib", type=int, default=4, help="resolution in KiB (default 4)")
    ap.add_argument("--runs", type=int, default=2, help="runs that must all be clean at a heap")
    ap.add_argument("--json", action="store_true", help="print one JSON object at the end")
    ap.add_argument("demo_args", nargs="*", help="more `pollen demo` options, after --")
    a = ap.parse_args()
    lo, hi = kib(a.lo), kib(a.hi)
    if not 0 < lo < hi or a.step_kib < 1 or a.runs < 1:
        ap.error("expected 0 < --lo < --hi, --step-kib >= 1 and --runs >= 1")
    log: list = []
    if not passes(hi, a.runs, a.demo_args, log):
        result = {"smallest_clean_heap_kib": None, "note": f"not clean even at {hi}K"}
    elif passes(lo, a.runs, a.demo_args, log):
        result = {"smallest_clean_heap_kib": lo, "note": f"clean already at --lo {lo}K: try a lower one"}
    else:
        while hi - lo > a.step_kib:
            mid = (lo + hi) // 2
            if passes(mid, a.runs, a.demo_args, log):
                hi = mid
            else:
                lo = mid
        result = {"smallest_clean_heap_kib": hi, "largest_failing_heap_kib": lo}
    result.update(runs_per_heap=a.runs, runs=log)
    if a.json:
        print(json.dumps(result))
    else:
        print(f"smallest heap with {a.runs} clean runs: "
              f"{str(result['smallest_clean_heap_kib']) + 'K' if result['smallest_clean_heap_kib'] else result['note']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
