# The board's watchdog (machine.WDT; docs/boards.md, "Watchdog"): it
# resets a board whose app stopped running (a driver that never returns, a
# hang), so a node in the field comes back by itself. Loaded on boards only
# (boot.py): the emulation has none, and its heap pays nothing for it.
#
# A task of its own feeds it while asyncio's loop runs: the watchdog is
# started at that task's first turn, so once the node's start (its longest
# step) is over. A hardware watchdog cannot be stopped once started (ESP32,
# RP2040): when the host takes the board (Ctrl-C into the REPL, as pollen
# flash and provision do), main.py hands it to a timer that feeds it until
# the board is reset.
import sys
import asyncio
from machine import WDT, Timer

_wdt = None
_timer = None


def start(timeout_ms):
    asyncio.create_task(_feed(timeout_ms))  # runs once the app's loop does


async def _feed(timeout_ms):
    global _wdt
    await asyncio.sleep_ms(0)  # the app's task, queued after this one, starts the node first
    _wdt = WDT(timeout=timeout_ms)
    while True:
        _wdt.feed()
        await asyncio.sleep_ms(timeout_ms // 4)


def hand_over(period_ms=1000):
    global _timer
    if _wdt is None:
        return  # never started: nothing to feed
    # ESP32's timers are hardware ones (0..3); RP2040's virtual (-1)
    _timer = Timer(0 if sys.platform == "esp32" else -1)
    _timer.init(period=period_ms, mode=Timer.PERIODIC, callback=lambda t: _wdt.feed())
