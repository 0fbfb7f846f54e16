"""Parley's relay (docs/PROTOCOL.md §15): accounts over HTTP, WebSocket JSON text frames, signed events.

Before a workload (`setup`, not measured) the driver registers and logs in its accounts, adds a device key to each by
answering the relay's challenge (§15.3), and founds the room `bench`: `pub` creates it and invites every subscriber's
device, and each subscriber's device signs its join; `pub` publishes all of them (a relay takes copies of other
devices' events, §15.4). Subscribers then authenticate with their device, subscribe with empty heads, and count the
`m.room.message` events pushed to them after `synced`. `publish` signs each message when the harness hands it over
(Ed25519 over the canonical form, chained to `pub`'s previous event), so signing is inside the measured latency, as a
real client's is; the harness payload is the message body, unchanged, so raw mode finds it verbatim in the frames.

W3 connections are devices of accounts `i0`, `i1`, … (100 devices each), authenticated and otherwise idle.
`login_storm(n)` logs `n` subscribers' accounts in at once (a full Argon2id check each) and returns the latencies.

Events are built by the vector generator's `Device` (docs/vectors/tools/generate.py), an implementation independent of
the relay's. Options (`--opt`): `sub_port=P` subscribes at another relay of the deployment (two relays, one database).
"""
import asyncio
import itertools
import json
import os
import sys
import time

from websockets.asyncio.client import connect

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "docs", "vectors", "tools"))
from generate import Device, b64, canonical  # noqa: E402

PASSWORD = "bench password"
DEVICES_PER_IDLE_ACCOUNT = 100
MAX_FRAME_EVENTS = 100          # setup events per publish frame: well within the relay's 128 KiB
CHALLENGE_PREFIX = b"parley.relay.device.v1\n"


class RelayRefused(RuntimeError):
    pass


async def http(host, port, method, path, body=None, token=None):
    """One request on its own connection; returns (status, JSON answer or None)."""
    reader, writer = await asyncio.open_connection(host, port)
    data = b"" if body is None else json.dumps(body).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nContent-Length: {len(data)}\r\n"
    if body is not None:
        head += "Content-Type: application/json\r\n"
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    writer.write(head.encode() + b"\r\n" + data)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    status = int(status_line.split()[1])
    headers, _, payload = rest.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in headers.lower():
        payload = dechunk(payload)
    return status, (json.loads(payload) if payload.strip() else None)


def dechunk(data):
    out = b""
    while data:
        size_text, _, data = data.partition(b"\r\n")
        size = int(size_text.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2:]
    return out


class Account:
    def __init__(self, user):
        self.user = user
        self.token = None
        self.devices = []


class ParleyDriver:
    name = "parley"
    server = "parley"

    def __init__(self, host, port, opts):
        self.host, self.port = host, port
        self.sub_port = int(opts.get("sub_port", port))
        self.accounts = {}
        self.room = None
        self.tasks = {}
        self.rejections = []
        self.publish_ids = itertools.count(1)
        self.last_ts = 0

    def users_needed(self, n):
        return n

    # -- setup (before the measured part) ---------------------------------------------------------------------------
    async def _account(self, user, devices=1):
        status, answer = await http(self.host, self.port, "POST", "/v1/accounts", {"user_id": user, "password": PASSWORD})
        if status != 201:
            raise RelayRefused(f"registering {user}: {status} {answer}")
        status, answer = await http(self.host, self.port, "POST", "/v1/sessions", {"user_id": user, "password": PASSWORD})
        if status != 201:
            raise RelayRefused(f"logging in {user}: {status} {answer}")
        account = Account(user)
        account.token = answer["token"]
        for index in range(devices):
            device = Device(user, name=f"bench {user} {index}")
            status, answer = await http(self.host, self.port, "POST", "/v1/devices/challenge", token=account.token)
            if status != 201:
                raise RelayRefused(f"challenge for {user}: {status} {answer}")
            challenge = answer["challenge"]
            signature = device.private.sign(CHALLENGE_PREFIX + canonical(dict(challenge, device_key=device.key)))
            status, answer = await http(self.host, self.port, "POST", "/v1/devices",
                                        {"challenge": challenge, "device_key": device.key, "signature": b64(signature)},
                                        token=account.token)
            if status != 201:
                raise RelayRefused(f"adding a device to {user}: {status} {answer}")
            account.devices.append(device)
        self.accounts[user] = account
        return account

    async def _many(self, factory, count, concurrency=8):
        gate = asyncio.Semaphore(concurrency)

        async def one(index):
            async with gate:
                await factory(index)
        await asyncio.gather(*(one(index) for index in range(count)))

    async def setup(self, workload, n, room):
        if workload == "w3":
            accounts = -(-n // DEVICES_PER_IDLE_ACCOUNT)
            await self._many(lambda i: self._account(f"i{i}", DEVICES_PER_IDLE_ACCOUNT), accounts)
            return
        pub = await self._account("pub")
        await self._many(lambda i: self._account(f"b{i}"), n)
        founder = pub.devices[0]
        now = self._now()
        events = [founder.sign(room, "m.room.create", {"version": 1}, ts=now),
                  founder.sign(room, "m.room.member", {"devices": [founder.binding()], "membership": "join", "user_id": "pub"}, ts=now)]
        for index in range(n):
            device = self.accounts[f"b{index}"].devices[0]
            events.append(founder.sign(room, "m.room.member", {"devices": [device.binding(False)], "membership": "invite",
                                                               "user_id": device.user}, ts=now))
        for index in range(n):
            device = self.accounts[f"b{index}"].devices[0]
            # A millisecond after the invites: the room's order puts seq 1 before a same-time invite (§8.1).
            events.append(device.sign(room, "m.room.member", {"devices": [device.binding()], "membership": "join",
                                                              "user_id": device.user}, ts=now + 1))
        ws = await self._open(pub, founder, self.port)
        try:
            for start in range(0, len(events), MAX_FRAME_EVENTS):
                await ws.send(json.dumps({"type": "publish", "id": 0, "events": events[start:start + MAX_FRAME_EVENTS]}))
                while True:
                    frame = json.loads(await ws.recv())
                    if frame["type"] == "ack":
                        break
                refused = [r for r in frame["results"] if r["result"] != "stored"]
                if refused:
                    raise RelayRefused(f"founding the room: {refused[:3]}")
        finally:
            await ws.close()
        self.room = room
        self.last_ts = now + 1
        if self.sub_port != self.port:
            await self._wait_for_room(pub, founder, room, n + 1)

    async def _wait_for_room(self, account, device, room, chains, timeout=60):
        """Until the subscribers' relay holds every chain of the room: it learns them from the shared database."""
        deadline = time.monotonic() + timeout
        while True:
            ws = await self._open(account, device, self.sub_port)
            try:
                await ws.send(json.dumps({"type": "subscribe", "rooms": [{"heads": {}, "room_id": room}]}))
                while True:
                    frame = json.loads(await ws.recv())
                    if frame["type"] == "heads":
                        break
            finally:
                await ws.close()
            if len(frame["heads"]) >= chains:
                return
            if time.monotonic() > deadline:
                raise RelayRefused(f"the second relay holds {len(frame['heads'])} of {chains} chains after {timeout} s")
            await asyncio.sleep(0.1)

    # -- connections ---------------------------------------------------------------------------------------------------
    def _now(self):
        self.last_ts = max(self.last_ts, time.time_ns() // 1_000_000)
        return self.last_ts

    async def _open(self, account, device, port):
        ws = await connect(f"ws://{self.host}:{port}/v1/ws", max_size=2**20, compression=None, open_timeout=60,
                           ping_interval=None)
        await ws.send(json.dumps({"device_key": device.key, "token": account.token, "type": "auth", "v": 1}))
        reply = json.loads(await ws.recv())
        if reply.get("type") != "ready":
            raise RelayRefused(f"auth refused: {reply}")
        return ws

    async def subscriber(self, idx, room, on_msg):
        account = self.accounts[f"b{idx}"]
        ws = await self._open(account, account.devices[0], self.sub_port)
        await ws.send(json.dumps({"type": "subscribe", "rooms": [{"heads": {}, "room_id": room}]}))
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == "synced":
                break
            if frame["type"] == "error":
                raise RelayRefused(f"subscribing b{idx}: {frame}")
        loads = json.loads

        async def reader():
            try:
                async for text in ws:
                    frame = loads(text)
                    if frame["type"] == "events":
                        for event in frame["events"]:
                            if event["type"] == "m.room.message":
                                on_msg(event["content"]["body"])
            except Exception:   # noqa: BLE001 - the connection closes at teardown
                pass

        self.tasks[ws] = asyncio.get_running_loop().create_task(reader())
        return ws

    async def publisher(self, idx, room):
        account = self.accounts["pub"]
        ws = await self._open(account, account.devices[0], self.port)
        ws._bench_device = account.devices[0]

        async def acknowledgements():
            try:
                async for text in ws:
                    frame = json.loads(text)
                    if frame["type"] == "ack":
                        self.rejections += [r for r in frame["results"] if r["result"] not in ("stored", "duplicate")]
                    elif frame["type"] == "error":
                        self.rejections.append(frame)
            except Exception:   # noqa: BLE001 - the connection closes at teardown
                pass

        self.tasks[ws] = asyncio.get_running_loop().create_task(acknowledgements())
        return ws

    async def publish(self, ws, payload):
        event = ws._bench_device.sign(self.room, "m.room.message", {"body": payload.decode("ascii"), "msgtype": "text"},
                                      ts=self._now())
        await ws.send(json.dumps({"type": "publish", "id": next(self.publish_ids), "events": [event]}))

    async def idle(self, idx):
        account = self.accounts[f"i{idx // DEVICES_PER_IDLE_ACCOUNT}"]
        return await self._open(account, account.devices[idx % DEVICES_PER_IDLE_ACCOUNT], self.port)

    async def login_storm(self, n):
        """n logins at once, of existing accounts; returns each one's latency in us."""
        async def one(index):
            started = time.monotonic_ns()
            status, answer = await http(self.host, self.port, "POST", "/v1/sessions", {"user_id": f"b{index}", "password": PASSWORD})
            if status != 201:
                raise RelayRefused(f"login storm: {status} {answer}")
            return (time.monotonic_ns() - started) // 1000
        return await asyncio.gather(*(one(index) for index in range(n)))

    def check(self):
        """Raises when the relay refused anything the publisher sent."""
        if self.rejections:
            raise RelayRefused(f"{len(self.rejections)} publish(es) refused, first: {self.rejections[:3]}")

    async def raw_socket(self, ws):
        """Stops this subscriber's reader; returns its socket (--sub-mode raw). Relay frames are unmasked and
        uncompressed, so the payloads appear verbatim in the byte stream."""
        task = self.tasks.pop(ws, None)
        if task:
            task.cancel()
        ws.transport.pause_reading()
        return ws.transport.get_extra_info("socket")

    async def close(self, ws):
        task = self.tasks.pop(ws, None)
        if task:
            task.cancel()
        ws.transport.abort()
