"""Responsiveness of the explorer during a run: terminal bytes per second and key latency.

Runs the real app in a pseudo-terminal of 120×40 (as over SSH), starts a long gradient
flow (the channel-to-infinity preset with t_max = 1e60, so it keeps running),
then, after the JAX compile, measures

* bytes written to the terminal per second over a window (target < 30 KB/s), and
* keypress latency: the time from writing a key (F5, bound in the child to a ping that
  logs ``time.monotonic()``) to the app handling it (target < 100 ms).  Both processes
  read the same system-wide monotonic clock.

Usage::

    python bench/app_responsiveness.py [--window 20] [--keys 20] [--warmup 25]

Not a test: timings depend on the machine's load.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import pty
import select
import statistics
import struct
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path
from typing import ClassVar

ROOT = Path(__file__).resolve().parent.parent
F5 = b"\x1b[15~"


def child(ping_file: str) -> None:
    """The app under test: starts a long run at once; F5 logs the handling time."""
    sys.path.insert(0, str(ROOT))
    import dataclasses

    from textual.binding import Binding

    from core.config import load_config
    from explorer.app import ExplorerApp

    # A channel to infinity keeps the flow busy (ever smaller steps) for the whole window.
    cfg = load_config(ROOT / "explorer" / "presets" / "channel_to_infinity.toml")
    cfg = dataclasses.replace(
        cfg, dynamics=dataclasses.replace(cfg.dynamics, t_max=1e60, max_seconds=3600)
    )

    class BenchApp(ExplorerApp):
        BINDINGS: ClassVar[list] = [*ExplorerApp.BINDINGS, Binding("f5", "bench_ping", "ping")]

        def on_mount(self) -> None:
            super().on_mount()
            self.call_after_refresh(self.start_run, cfg)

        def action_bench_ping(self) -> None:
            now = time.monotonic()
            state = getattr(self.screen, "state", "?")
            t = getattr(getattr(self.screen, "run", None), "t", float("nan"))
            with open(ping_file, "a") as f:
                f.write(f"{now} {state} {t}\n")

    BenchApp(config=cfg).run()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window", type=float, default=20.0, help="seconds of output to count")
    ap.add_argument("--keys", type=int, default=20, help="number of key presses to time")
    ap.add_argument("--warmup", type=float, default=25.0, help="seconds for start-up and JIT")
    ap.add_argument("--size", default="120x40")
    args = ap.parse_args()
    cols, rows = (int(v) for v in args.size.split("x"))
    ping_file = tempfile.mktemp(prefix="explorer-ping-")

    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = os.environ.get("TERM", "xterm-256color")
        child(ping_file)
        os._exit(0)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    log: list[tuple[float, int]] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    return
                log.append((time.monotonic(), len(data)))

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    try:
        time.sleep(args.warmup)
        t0 = time.monotonic()
        sent = []
        gap = args.window / max(args.keys, 1)
        for _ in range(args.keys):
            time.sleep(gap * 0.8)
            sent.append(time.monotonic())
            os.write(fd, F5)
            time.sleep(gap * 0.2)
        t1 = time.monotonic()
        time.sleep(1.0)
        window = [n for t, n in log if t0 <= t < t1]
        rate = sum(window) / (t1 - t0)
        lines = Path(ping_file).read_text().splitlines() if Path(ping_file).exists() else []
        pings = [float(line.split()[0]) for line in lines]
        if lines:
            print(
                "app state (state, t) at first/last press:",
                lines[0].split()[1:],
                lines[-1].split()[1:],
            )
        lat = [1e3 * (p - s) for s, p in zip(sent, pings, strict=False)]
        load = " ".join(f"{v:.2f}" for v in os.getloadavg())
        print(f"terminal {cols}x{rows}, window {t1 - t0:.1f} s, load average {load}")
        print(f"bytes written: {sum(window)} → {rate / 1024:.1f} KiB/s (target < 30 KB/s)")
        if lat:
            lat_sorted = sorted(lat)
            p90 = lat_sorted[min(len(lat) - 1, int(0.9 * len(lat)))]
            print(
                f"key latency over {len(lat)} presses: median {statistics.median(lat):.1f} ms, "
                f"p90 {p90:.1f} ms, max {max(lat):.1f} ms (target < 100 ms)"
            )
            print("all (ms):", " ".join(f"{v:.0f}" for v in lat_sorted))
        else:
            print("no key presses were handled (app not running?)")
    finally:
        stop.set()
        os.write(fd, b"\x11")  # ctrl+q
        time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 15)
        os.waitpid(pid, 0)
        Path(ping_file).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
