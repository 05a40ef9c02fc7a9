"""How nodes move in a scenario: a Mover is a node's path (straight lines at
constant speed between timed waypoints), made by trajectory() from a start
and legs; random_legs() and cycle() are the legs of a random-waypoint node
and of a data mule going round its path."""

from __future__ import annotations

import math
from bisect import bisect_right


class Mover:
    # A node's path: straight lines at constant speed between timed waypoints
    # ((t_ms, x_m, y_m), ...), t_ms increasing; before the first and after the
    # last it stands still.
    def __init__(self, waypoints):
        self.waypoints = tuple(waypoints)
        self._times = [w[0] for w in self.waypoints]

    def position(self, t_ms):
        w = self.waypoints
        i = bisect_right(self._times, t_ms) - 1
        if i < 0:
            return w[0][1], w[0][2]
        if i >= len(w) - 1:
            return w[-1][1], w[-1][2]
        t0, x0, y0 = w[i]
        t1, x1, y1 = w[i + 1]
        f = (t_ms - t0) / (t1 - t0)
        return x0 + f * (x1 - x0), y0 + f * (y1 - y0)


def trajectory(start, legs, end_ms):
    # legs yields (x_m, y_m, speed_mps, pause_ms) until the time reaches end_ms
    t_ms, (x, y) = 0, start
    points = [(0, x, y)]
    stalled = 0
    for nx, ny, speed_mps, pause_ms in legs:
        travel_ms = round(math.dist((x, y), (nx, ny)) / speed_mps * 1000)
        stalled = stalled + 1 if travel_ms == pause_ms == 0 else 0
        if stalled > 100:   # nowhere to go (an area of one point) and no pauses
            break
        if travel_ms > 0:
            t_ms += travel_ms
            points.append((t_ms, nx, ny))
        x, y = nx, ny
        if pause_ms > 0:
            t_ms += pause_ms
            points.append((t_ms, x, y))
        if t_ms >= end_ms:
            break
    return Mover(points)


def random_legs(rng, area, speed_mps, pause_s):
    # random waypoint: a random point of the area, a random speed, a random pause
    x0, y0, x1, y1 = area
    while True:
        yield (rng.uniform(x0, x1), rng.uniform(y0, y1), rng.uniform(*speed_mps),
               round(rng.uniform(*pause_s) * 1000))


def cycle(points):
    # the points in order, forever
    while True:
        yield from points
