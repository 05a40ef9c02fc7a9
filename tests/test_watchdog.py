"""The board's watchdog (firmware/pollen_io/watchdog.py, started by boot.py on
boards, handed over by main.py) on real MicroPython, with machine.WDT and
machine.Timer faked: the unix port has neither."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys
import asyncio
class WDT:
    made = []
    def __init__(self, timeout):
        WDT.made.append(self)
        self.timeout = timeout
        self.fed = 0
    def feed(self):
        self.fed += 1
class Timer:
    PERIODIC = 1
    def __init__(self, timer_id):
        self.id = timer_id
    def init(self, period, mode, callback):
        self.period, self.mode, self.callback = period, mode, callback
class Machine:
    pass
Machine.WDT, Machine.Timer = WDT, Timer
sys.modules["machine"] = Machine
from pollen_io import watchdog
watchdog.hand_over()
print("handed over before start", watchdog._timer)
watchdog.start(400)          # as boot.py does, before the app's loop runs
async def app():
    print("during the start", len(WDT.made))
    await asyncio.sleep_ms(330)
    w = WDT.made[0]
    print("running", w.timeout, w.fed)
try:
    asyncio.run(app())
finally:
    pass
fed = WDT.made[0].fed
watchdog.hand_over()         # the app stopped (Ctrl-C): main.py hands it over
t = watchdog._timer
t.callback(t)
print("handed over", t.id, t.period, t.mode, WDT.made[0].fed - fed)
"""


def test_fed_by_its_own_task_once_the_loop_runs_then_by_a_timer():
    exe = os.path.join(os.path.dirname(sys.executable), "micropython")
    r = subprocess.run([exe, "-X", "heapsize=256K", "-c", SCRIPT], capture_output=True, text=True,
                       timeout=30, cwd=ROOT, env=dict(os.environ, MICROPYPATH=".frozen:firmware"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == [
        "handed over before start None",   # never started: nothing to feed
        "during the start 0",              # started at the feeding task's first turn
        "running 400 4",                   # fed every 100 ms (a quarter of the timeout)
        "handed over -1 1000 1 1",         # the unix port is no ESP32: a virtual timer
    ], r.stdout
