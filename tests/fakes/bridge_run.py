"""What the Meshtastic bridge tests' harnesses share (tests/test_bridge_meshtastic*.py):
a bridge running on a thread (self.thread, stopped by self.stop) attached through
self.link to a fake pollen node's console (self.node, a FakeConsoleNode)."""
import time


class BridgeRun:
    def pollen_sends(self, n, timeout_s=10.0):
        """The next n send commands the bridge gave the pollen node: (to, text, when)."""
        out, end = [], time.monotonic() + timeout_s
        while len(out) < n:
            cmd = self.node.commands.get(timeout=max(0.01, end - time.monotonic()))
            if cmd.get("cmd") == "send":
                out.append((cmd["to"], cmd["text"], time.monotonic()))
        return out

    def close(self):
        self.stop.set()
        self.thread.join(10)
        self.link.close()
