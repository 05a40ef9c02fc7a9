def pytest_addoption(parser):
    parser.addoption("--hil-port", action="append", default=[],
                     help="serial port of a real board for the hardware-in-loop tests "
                          "(give two: --hil-port A --hil-port B)")
    parser.addoption("--hil-board", action="append", default=[],
                     help="board profile id for each --hil-port, in the same order "
                          "(default: read the installed board.json)")
