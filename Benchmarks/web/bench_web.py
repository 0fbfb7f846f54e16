"""Figures of the web page (`parley web`) in headless Chromium, for docs/BENCHMARKS.md.

  python3 Benchmarks/web/bench_web.py --parley .build/release/parley [--long-events 100000]

- first paint: from navigating to the address `parley web` printed to the browser's first contentful paint, and to
  the room list drawn (median of 10 loads in a running browser, each without the cookie of the one before);
- delivery to the page: Alice's node and Bob's share a folder bucket; for each message Alice sends, the time from
  Bob's node announcing it on its stream (the moment it is stored there) to Bob's page showing it (median, p95);
- a long room: Chromium's JS heap (performance.memory after a forced GC) and the most message nodes in the page while
  scrolling from the newest message back through 2,000 older ones, in a room of 100,000 messages (signed here by the
  vector generator's independent `Device`, then `parley import`ed).
`scripts/bench web` runs it on the release build.
"""
import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "vectors", "tools"))
from generate import Device  # noqa: E402


def long_room_home(parley, directory, count):
    """A home whose user is a member of a room of `count` messages by two other users, one a second apart."""
    home, room = os.path.join(directory, "reader"), "long"
    run(parley, home, "init", "--user", "reader")
    reader_key = json.loads(run(parley, home, "whoami", "--json"))["signing_key"]
    founder, other = Device("founder", name="web bench founder"), Device("other", name="web bench other")
    start = int(time.time() * 1000) - count * 1000
    path = os.path.join(directory, "long.jsonl")
    with open(path, "w") as lines:
        def write(event):
            lines.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
        write(founder.sign(room, "m.room.create", {"version": 1}, ts=start))
        write(founder.sign(room, "m.room.member", {"devices": [founder.binding()], "membership": "join", "user_id": "founder"}, ts=start))
        write(founder.sign(room, "m.room.member", {"devices": [other.binding(False)], "membership": "invite", "user_id": "other"}, ts=start))
        write(other.sign(room, "m.room.member", {"devices": [other.binding()], "membership": "join", "user_id": "other"}, ts=start + 1))
        write(founder.sign(room, "m.room.member", {"devices": [{"signing_key": reader_key}], "membership": "invite", "user_id": "reader"},
                           ts=start + 1))
        for index in range(count):
            device = founder if index % 2 == 0 else other
            write(device.sign(room, "m.room.message", {"body": f"message {index} of the long room, with some ordinary words in it",
                                                       "msgtype": "text"}, ts=start + 2 + index * 1000))
    run(parley, home, "import", path)
    run(parley, home, "room", "join", room)
    return home, room


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,860",
                     "--enable-precise-memory-info", "--js-flags=--expose-gc"]:
        options.add_argument(argument)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


class Node:
    def __init__(self, parley, home, log):
        self.log = open(log, "w")
        self.process = subprocess.Popen([parley, "--home", home, "web", "--no-open", "--interval", "0.2"],
                                        stdout=subprocess.DEVNULL, stderr=self.log, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with open(log) as printed:
                found = [line for line in printed if line.startswith("Web page: ")]
            if found:
                self.address = found[0][len("Web page: "):].strip()
                self.base, self.token = self.address.split("/?", 1)[0], self.address.split("token=", 1)[1]
                return
            time.sleep(0.05)
        raise RuntimeError(f"parley web printed no address; see {log}")

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)
        self.log.close()


def run(parley, home, *args):
    done = subprocess.run([parley, "--home", home, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"parley {' '.join(args)}: {done.stderr}")
    return done.stdout


def wait(page, condition, seconds=60):
    return WebDriverWait(page, seconds, poll_frequency=0.01).until(lambda p: condition(p))


def first_paint(node, loads=10):
    """In one running browser, as a user opening the printed address: a fresh tab without the cookie each time."""
    paints, ready = [], []
    page = browser()
    try:
        for _ in range(loads + 1):
            page.get("about:blank")
            page.delete_all_cookies()
            started = time.time()
            page.get(node.address)
            wait(page, lambda p: p.find_elements(By.CSS_SELECTOR, "#room-list li[data-room-id]"))
            listed = time.time()
            paints.append(page.execute_script(
                "const e = performance.getEntriesByName('first-contentful-paint')[0]; return e ? e.startTime : null"))
            ready.append((listed - started) * 1000)
    finally:
        page.quit()
    # The first load also starts the browser's renderer: left out.
    return statistics.median(paints[1:]), statistics.median(ready[1:])


def delivery(parley, directory, messages=100):
    alice_home, bob_home = os.path.join(directory, "alice"), os.path.join(directory, "bob")
    bucket = "file://" + os.path.join(directory, "bucket")
    run(parley, alice_home, "init", "--user", "alice")
    run(parley, bob_home, "init", "--user", "bob")
    run(parley, alice_home, "room", "create", "general", "--bucket", bucket, "--create-bucket")
    key = json.loads(run(parley, bob_home, "whoami", "--json"))["signing_key"]
    code = json.loads(run(parley, alice_home, "room", "invite", "general", "bob", "--key", key, "--json"))["invite_code"]
    run(parley, bob_home, "room", "join", code)
    alice, bob = Node(parley, alice_home, directory + "/alice.log"), Node(parley, bob_home, directory + "/bob.log")
    announced = {}
    import websockets.sync.client as ws_client  # the stream, as a second client of Bob's node

    def follow():
        with ws_client.connect(bob.base.replace("http", "ws") + "/v1/stream",
                               additional_headers={"Authorization": "Bearer " + bob.token}) as stream:
            for raw in stream:
                message = json.loads(raw)
                if message.get("type") == "item:new":
                    announced[message["item"]["event_id"]] = time.time() * 1000
    threading.Thread(target=follow, daemon=True).start()
    page = browser()
    try:
        page.get(bob.address)
        wait(page, lambda p: p.find_elements(By.CSS_SELECTOR, '#room-list li[data-room-id="general"]'))[0].click()
        page.execute_script("""
            window.__seen = {};
            new MutationObserver(() => {
              for (const item of document.querySelectorAll('#timeline .item[data-event-id]')) {
                const id = item.dataset.eventId;
                if (!(id in window.__seen)) window.__seen[id] = Date.now();
              }
            }).observe(document.getElementById('timeline'), {childList: true, subtree: true});""")
        import urllib.request
        latencies = []
        for index in range(messages):
            request = urllib.request.Request(alice.base + "/v1/rooms/general/messages", method="POST",
                                             data=json.dumps({"text": f"latency probe {index}"}).encode(),
                                             headers={"Authorization": "Bearer " + alice.token})
            event_id = json.loads(urllib.request.urlopen(request).read())["event_id"]
            wait(page, lambda p: p.execute_script("return arguments[0] in window.__seen", event_id))
            deadline = time.monotonic() + 5
            while event_id not in announced and time.monotonic() < deadline:
                time.sleep(0.001)
            shown = page.execute_script("return window.__seen[arguments[0]]", event_id)
            latencies.append(shown - announced[event_id])
            time.sleep(0.05)
        latencies.sort()
        return statistics.median(latencies), latencies[int(len(latencies) * 0.95) - 1]
    finally:
        page.quit()
        alice.stop()
        bob.stop()


def long_room(parley, home, room, directory, older=2_000):
    node = Node(parley, home, directory + "/long.log")
    page = browser()
    try:
        page.get(node.address)
        wait(page, lambda p: p.find_elements(By.CSS_SELECTOR, f'#room-list li[data-room-id="{room}"]'))[0].click()
        wait(page, lambda p: len(p.find_elements(By.CSS_SELECTOR, "#timeline .item")) > 10)
        seen, most, heaps = set(), 0, []
        deadline = time.monotonic() + 600
        while len(seen) < older and time.monotonic() < deadline:
            ids = page.execute_script(
                "const t = document.getElementById('timeline'); t.scrollTop = 0;"
                "return Array.from(t.querySelectorAll('.item[data-event-id]'), e => e.dataset.eventId)")
            seen.update(ids)
            most = max(most, len(ids))
            time.sleep(0.05)
            if len(heaps) < len(seen) // 500:
                heaps.append(page.execute_script("window.gc && window.gc(); return performance.memory.usedJSHeapSize"))
        heaps.append(page.execute_script("window.gc && window.gc(); return performance.memory.usedJSHeapSize"))
        return len(seen), most, max(heaps) / 1e6
    finally:
        page.quit()
        node.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--parley", required=True)
    parser.add_argument("--long-events", type=int, default=100_000)
    arguments = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="parley-web-bench-")
    try:
        latency_p50, latency_p95 = delivery(arguments.parley, directory)
        print(f"delivery to the page after the node stored it: p50 {latency_p50:.1f} ms, p95 {latency_p95:.1f} ms (target ≤ 50 ms)")
        alice = Node(arguments.parley, os.path.join(directory, "alice"), directory + "/alice-paint.log")
        try:
            fcp, listed = first_paint(alice)
        finally:
            alice.stop()
        print(f"first contentful paint: {fcp:.0f} ms (median of 10; target ≤ 300 ms); room list drawn {listed:.0f} ms after navigating")
        if arguments.long_events:
            home, room = long_room_home(arguments.parley, directory, arguments.long_events)
            seen, most, heap = long_room(arguments.parley, home, room, directory)
            print(f"long room of {arguments.long_events} messages: {seen} messages scrolled through, at most {most} message nodes in the page, JS heap at most {heap:.1f} MB (target ≤ 50 MB)")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
