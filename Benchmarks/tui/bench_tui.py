"""Figures of the terminal UI (`parley chat`), for docs/BENCHMARKS.md.

  python3 Benchmarks/tui/bench_tui.py --parley .build/release/parley [--long-events 100000]

The chat runs on a pseudo-terminal of 100×30 that this script reads, against a node started beforehand
(`parley node`), as a user with a node running would meet it:
- keystroke echo: from writing one character to the terminal to its echo on the input line (median and p99 of 200);
- opening a long room: from Ctrl-N (the next room) to the room's newest message drawn, in a room of 100,000 messages
  (signed here by the vector generator's independent `Device`, then `parley import`ed), opened cold (by a chat
  started on another room) each time, median of 5;
- idle CPU over 10 s and resident memory of the chat process.
`scripts/bench tui` runs it on the release build.
"""
import argparse
import fcntl
import os
import pty
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time

import pyte

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "web"))
from bench_web import long_room_home, run  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


class Chat:
    def __init__(self, parley, home, room=None):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.environ["TERM"] = "xterm-256color"
            os.execv(parley, [parley, "--home", home, "chat"] + ([room] if room else []))
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        os.kill(self.pid, signal.SIGWINCH)
        self.seen = b""
        # What the terminal shows: ncurses writes only the cells that change, so text is looked for on this screen.
        self.screen = pyte.Screen(100, 30)
        self.stream = pyte.ByteStream(self.screen)

    def _read(self):
        data = os.read(self.fd, 1 << 16)
        self.seen += data
        self.stream.feed(data)

    def shows(self, needle, seconds=30, title=False):
        """Waits until the screen shows `needle` (in the title bar when `title`); returns when."""
        deadline = time.monotonic() + seconds
        while not (self.screen.display[0].startswith(needle) if title else any(needle in line for line in self.screen.display)):
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"the screen never showed {needle!r}:\n" + "\n".join(self.screen.display))
            if select.select([self.fd], [], [], left)[0]:
                self._read()
        return time.monotonic()

    def read_until(self, needle, seconds=30):
        deadline = time.monotonic() + seconds
        while needle not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"never saw {needle!r}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                self._read()
        return time.monotonic()

    def drain(self, quiet=0.3):
        while select.select([self.fd], [], [], quiet)[0]:
            self._read()
        self.seen = b""

    def cpu(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mib(self):
        with open(f"/proc/{self.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

    def stop(self):
        os.write(self.fd, b"\x03")
        os.waitpid(self.pid, 0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--parley", required=True)
    parser.add_argument("--long-events", type=int, default=100_000)
    arguments = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="parley-tui-bench-")
    node = None
    try:
        home, room = long_room_home(arguments.parley, directory, arguments.long_events)
        run(arguments.parley, home, "room", "create", "aaa-small")
        node = subprocess.Popen([arguments.parley, "--home", home, "node"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not os.path.exists(os.path.join(home, "node.json")):
            time.sleep(0.05)
        chat = Chat(arguments.parley, home)
        chat.shows("connected")
        chat.drain()
        echoes = []
        for index in range(200):
            letter = b"abcdefghijklmnopqrstuvwxyz"[index % 26:index % 26 + 1]
            chat.seen = b""
            started = time.monotonic()
            os.write(chat.fd, letter)
            echoes.append((chat.read_until(letter) - started) * 1000)
            chat.drain(0.01)
        os.write(chat.fd, b"\x15")  # Ctrl-U: the line empty again
        chat.drain()
        echoes.sort()
        print(f"keystroke echo: p50 {statistics.median(echoes):.2f} ms, p99 {echoes[int(len(echoes) * 0.99) - 1]:.2f} ms (target ≤ 16 ms)")
        newest = f"message {arguments.long_events - 1} of the long room"
        # The long room opened cold: a chat started on the small room each time, then Ctrl-N (the next room).
        opens = []
        for _ in range(5):
            cold = Chat(arguments.parley, home, room="aaa-small")
            cold.shows("connected")
            cold.shows(" aaa-small", title=True)
            cold.drain()
            started = time.monotonic()
            os.write(cold.fd, b"\x0e")
            opens.append((cold.shows(newest) - started) * 1000)
            cold.stop()
        print(f"opening the room of {arguments.long_events} messages, cold: median {statistics.median(opens):.0f} ms, worst {max(opens):.0f} ms "
              "(target ≤ 200 ms)")
        before = chat.cpu()
        time.sleep(10)
        print(f"idle: {(chat.cpu() - before) / 10 * 100:.2f}% of a core over 10 s; resident memory {chat.rss_mib():.1f} MiB (target ≤ 40 MiB)")
        chat.stop()
    finally:
        if node:
            node.send_signal(signal.SIGTERM)
            node.wait(30)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
