# pollen node: what a board runs at boot. The application is in pollen_io/app.py.
import sys
from pollen_io.app import main

main()
# here when the app stopped: on a board, the host took it (Ctrl-C into the
# REPL). Its watchdog cannot be stopped: a timer feeds it from now on
# (docs/boards.md, "Watchdog")
if "pollen_io.watchdog" in sys.modules:
    sys.modules["pollen_io.watchdog"].hand_over()
