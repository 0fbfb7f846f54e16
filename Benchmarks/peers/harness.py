#!/usr/bin/env python3
"""Peer load harness: W1 fan-out throughput, W2 latency at a fixed rate, W3 idle connections.

One process, one asyncio loop, pinned to CPU 0; the server is started fresh for every repetition,
pinned to CPU 1, and stopped by PID. Server CPU = utime+stime from /proc/PID/stat, RSS = VmRSS.

  python3 harness.py run --peer nats --workload w1 --subs 100 --reps 3 --out results/nats.jsonl
  python3 harness.py summary results/*.jsonl
See README.md for every option and for adding a driver."""
import argparse
import asyncio
import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from drivers import DRIVERS, make_driver  # noqa: E402
from servers import SERVERS  # noqa: E402

ROOM = "bench"
MARK = b"#BENCH#"                       # starts every payload; unique in every protocol's stream
STAMP_RE = re.compile(rb"#BENCH#(\d{20})")
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)   # Linux


def payload(size, seq):
    head = MARK + b"%020d %012d " % (time.time_ns(), seq)   # 41 bytes: send time (ns), seq
    return head + b"x" * (size - len(head))


class Sink:
    """Counts deliveries and optionally records publish->receive latency (HdrHistogram, us).
    Fed per message by a client library (on_msg), or with raw byte chunks read from a
    subscriber's socket (attach_raw), which costs the load generator almost nothing and also
    yields the kernel's receive timestamp (SO_TIMESTAMPNS) of the data."""

    def __init__(self, latency=False):
        self.n = 0
        self.rec_from = 1 << 62
        self.hist = self.khist = None
        self.wake_at = 1 << 62          # a waiting publisher resumes when n reaches wake_at
        self.waiter = None
        self.raw_socks = []
        if latency:
            from hdrh.histogram import HdrHistogram
            self.hist = HdrHistogram(1, 60_000_000, 3)      # app: user-space receive time
            self.khist = HdrHistogram(1, 60_000_000, 3)     # kernel: data reached the socket

    def _wake(self):
        self.wake_at = 1 << 62
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)
        self.waiter = None

    async def wait_for(self, n, timeout):
        """Until n deliveries were counted, or timeout seconds."""
        if self.n < n:
            self.wake_at = n
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self.waiter, timeout)
            except asyncio.TimeoutError:
                self.wake_at = 1 << 62

    def on_msg(self, p):
        self.n += 1
        if self.hist is not None:
            now = time.time_ns()
            ts = int(p[7:27])
            if ts >= self.rec_from:
                self.hist.record_value(max(1, (now - ts) // 1000))
        if self.n >= self.wake_at:
            self._wake()

    def attach_raw(self, lib_sock):
        """Read a subscriber's socket ourselves (a dup of its fd, so the library's transport
        keeps owning the original) and count payload markers in the byte stream."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(fileno=os.dup(lib_sock.fileno()))
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.raw_socks.append(sock)
        carry = [b""]
        latency = self.hist is not None
        keep = len(MARK) + 19 if latency else len(MARK) - 1
        anc_size = socket.CMSG_SPACE(16)
        hist, khist, finditer, unpack = self.hist, self.khist, STAMP_RE.finditer, struct.unpack

        def on_readable():
            try:
                data, anc, _, _ = sock.recvmsg(262144, anc_size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(sock)
                return
            buf = carry[0] + data
            if not latency:
                self.n += buf.count(MARK)
                carry[0] = buf[-keep:]
            else:
                now = time.time_ns()
                kts = now
                for lvl, typ, val in anc:
                    if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS:
                        sec, nsec = unpack("qq", val[:16])
                        kts = sec * 1_000_000_000 + nsec
                end = 0
                for m in finditer(buf):
                    self.n += 1
                    end = m.end()
                    ts = int(m.group(1))
                    if ts >= self.rec_from:
                        hist.record_value(max(1, (now - ts) // 1000))
                        khist.record_value(max(1, (kts - ts) // 1000))
                carry[0] = buf[max(end, len(buf) - keep):]
            if self.n >= self.wake_at:
                self._wake()

        loop.add_reader(sock, on_readable)

    def detach_all(self):
        loop = asyncio.get_running_loop()
        for s in self.raw_socks:
            loop.remove_reader(s)
            s.close()
        self.raw_socks = []


async def subscribe_all(drv, a, sink, opened):
    async def one(i):
        c = await drv.subscriber(i, ROOM, sink.on_msg)
        if a.sub_mode == "raw":
            sink.attach_raw(await drv.raw_socket(c))
        return c
    await connect_many(one, a.subs, a.conc, opened)


async def connect_many(factory, n, conc, opened):
    sem = asyncio.Semaphore(conc)

    async def one(i):
        async with sem:
            c = await factory(i)
            opened.append(c)

    await asyncio.gather(*(one(i) for i in range(n)))


async def wait_until(cond, timeout, step=0.02):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


async def drain(counter, expected, idle_timeout=3.0, cap=30.0):
    """Wait until counter() reaches expected, or stops growing for idle_timeout seconds."""
    last, last_t, t_end = counter(), time.monotonic(), time.monotonic() + cap
    while counter() < expected and time.monotonic() < t_end:
        await asyncio.sleep(0.05)
        if counter() != last:
            last, last_t = counter(), time.monotonic()
        elif time.monotonic() - last_t > idle_timeout:
            break


class Snap:
    def __init__(self, srv):
        self.t = time.monotonic()
        self.cpu = srv.cpu_seconds()
        self.lg = time.process_time()


def usage(srv, a, b, deliveries):
    wall = b.t - a.t
    cpu = b.cpu - a.cpu
    return {
        "wall_s": round(wall, 3),
        "server_cpu_s": round(cpu, 3),
        "server_cpu_util": round(cpu / wall, 3),
        "loadgen_cpu_util": round((b.lg - a.lg) / wall, 3),
        "server_cpu_s_per_1M_deliveries": round(cpu / deliveries * 1e6, 2) if deliveries else None,
        "server_rss_kb": srv.rss_kb(),
    }


async def room(drv, srv, a, latency, measure, reps):
    """Publisher + a.subs subscribers in one room, a probe through all of them, then `reps`
    measurements on this one server (each returns a result dict)."""
    opened = []
    sink = Sink(latency)
    try:
        if hasattr(drv, "setup"):
            await drv.setup(a.workload, a.subs, ROOM)
        pub = await drv.publisher(0, ROOM)
        opened.append(pub)
        t = time.monotonic()
        await subscribe_all(drv, a, sink, opened)
        setup_s = time.monotonic() - t
        await drv.publish(pub, payload(a.size, 0))             # probe: all subscribers live?
        if not await wait_until(lambda: sink.n >= a.subs, 60):
            raise RuntimeError(f"probe reached {sink.n}/{a.subs} subscribers")
        results = []
        for _ in range(reps):
            await asyncio.sleep(1.0)
            sink.n = 0
            res = await measure(drv, srv, a, sink, pub)
            res["setup_s"] = round(setup_s, 2)
            results.append(res)
        if hasattr(drv, "check"):
            drv.check()
        return results
    finally:
        sink.detach_all()
        await asyncio.gather(*(drv.close(c) for c in opened), return_exceptions=True)


async def w1_measure(drv, srv, a, sink, pub):
    S, rss0 = a.subs, srv.rss_kb()
    pubs = 0
    t_start = time.monotonic()
    t_meas = t_start + a.w1_warmup               # unmeasured: fills the pipeline
    end = t_meas + a.seconds
    s0 = None
    while True:
        now = time.monotonic()
        if s0 is None and now >= t_meas:
            s0, p0, n0 = Snap(srv), pubs, sink.n
        if now >= end:
            break
        if a.rate:                                   # open loop at a fixed rate
            target = t_start + pubs / a.rate
            if now < target:
                await asyncio.sleep(min(target, end) - now)
                continue
        elif pubs * S - sink.n > a.window:           # as fast as deliveries keep up
            await sink.wait_for(pubs * S - a.window // 2,
                                max(0.001, (end if s0 else t_meas) - now))
            continue
        await drv.publish(pub, payload(a.size, pubs))
        pubs += 1
        if pubs & 15 == 0:
            await asyncio.sleep(0)
    s1 = Snap(srv)
    d = sink.n - n0
    res = usage(srv, s0, s1, d)
    await drain(lambda: sink.n, pubs * S)
    res.update({
        "published": pubs,
        "publish_rate": round((pubs - p0) / (s1.t - s0.t), 1),
        "deliveries": d,
        "deliveries_per_s": round(d / (s1.t - s0.t), 1),
        "lost_after_drain": pubs * S - sink.n,
        "server_rss_before_kb": rss0,
    })
    return res


async def w2_measure(drv, srv, a, sink, pub):
    sink.hist.reset()
    sink.khist.reset()
    sink.rec_from = 1 << 62
    period = 1.0 / a.rate
    flush = getattr(drv, "flush", None)
    warm_n = int(a.warmup * a.rate)
    total = warm_n + int(a.seconds * a.rate)
    t0 = time.monotonic()
    max_lag = 0.0
    s0 = c0 = None
    storm_at = warm_n + (total - warm_n) // 3 if a.logins else -1
    storm = None
    for i in range(total):
        if i == storm_at:                # logins at once, a third into the measured window
            storm = asyncio.get_running_loop().create_task(drv.login_storm(a.logins))
        target = t0 + i * period
        now = time.monotonic()
        if now < target:
            await asyncio.sleep(target - now)
            now = time.monotonic()
        max_lag = max(max_lag, now - target)
        if i == warm_n:
            sink.rec_from = time.time_ns()
            s0, c0 = Snap(srv), sink.n
        await drv.publish(pub, payload(a.size, i))
        if flush:
            flush(pub)
    await asyncio.sleep(period)
    s1 = Snap(srv)
    res = usage(srv, s0, s1, sink.n - c0)
    d_rate = (sink.n - c0) / (s1.t - s0.t)
    await drain(lambda: sink.n, total * a.subs)
    if storm is not None:
        logins = sorted(await storm)
        res.update({"logins": len(logins), "login_p50_us": logins[len(logins) // 2],
                    "login_p99_us": logins[min(len(logins) - 1, len(logins) * 99 // 100)],
                    "login_max_us": logins[-1]})
    h = sink.hist
    for q in (50, 90, 99, 99.9):
        res[f"p{q}_us".replace(".", "_")] = h.get_value_at_percentile(q)
    if a.sub_mode == "raw":
        for q in (50, 90, 99, 99.9):
            res[f"k_p{q}_us".replace(".", "_")] = sink.khist.get_value_at_percentile(q)
        res["k_max_us"] = sink.khist.get_max_value()
    res.update({
        "max_us": h.get_max_value(),
        "mean_us": round(h.get_mean_value(), 1),
        "samples": h.get_total_count(),
        "deliveries_per_s": round(d_rate, 1),
        "publisher_max_lag_ms": round(max_lag * 1000, 2),
        "lost_after_drain": total * a.subs - sink.n,
    })
    return res


async def w1(drv, srv, a, reps):
    return await room(drv, srv, a, False, w1_measure, reps)


async def w2(drv, srv, a, reps):
    return await room(drv, srv, a, True, w2_measure, reps)


async def w3(drv, srv, a, reps):
    """Idle connections; always one measurement per fresh server (reps is ignored)."""
    opened = []
    try:
        if hasattr(drv, "setup"):
            await drv.setup(a.workload, a.conns, ROOM)
        await asyncio.sleep(1.0)
        rss0 = srv.rss_kb()
        c0 = Snap(srv)
        await connect_many(drv.idle, a.conns, a.conc, opened)
        c1 = Snap(srv)
        connect_s = c1.t - c0.t
        await asyncio.sleep(3.0)
        rss1 = srv.rss_kb()
        s0 = Snap(srv)
        await asyncio.sleep(a.seconds)
        s1 = Snap(srv)
        return [{
            "connections": len(opened),
            "connect_s": round(connect_s, 2),
            "connects_per_s": round(len(opened) / connect_s, 1),
            "connect_server_cpu_util": round((c1.cpu - c0.cpu) / connect_s, 3),
            "connect_loadgen_cpu_util": round((c1.lg - c0.lg) / connect_s, 3),
            "server_cpu_ms_per_connect": round((c1.cpu - c0.cpu) / len(opened) * 1000, 3),
            "server_rss_before_kb": rss0,
            "server_rss_after_kb": rss1,
            "rss_per_conn_kb": round((rss1 - rss0) / len(opened), 2),
            "idle_server_cpu_util": round((s1.cpu - s0.cpu) / (s1.t - s0.t), 4),
        }]
    finally:
        await asyncio.gather(*(drv.close(c) for c in opened), return_exceptions=True)


WORKLOADS = {"w1": w1, "w2": w2, "w3": w3}


def one_server(a, reps):
    opts = dict(kv.split("=", 1) for kv in a.opt)
    server_key = a.server or make_driver(a.peer, "127.0.0.1", 1, opts).server
    if a.server_cmd:
        opts["cmd"] = a.server_cmd
    n_users = a.conns if a.workload == "w3" else a.subs
    workdir = tempfile.mkdtemp(prefix="peerbench-")
    srv = SERVERS[server_key](workdir, a.port, cpu=a.server_cpu, opts=opts)
    drv = make_driver(a.peer, "127.0.0.1", srv.port, opts)
    srv.users = drv.users_needed(n_users)
    try:
        srv.start()
        res = asyncio.run(WORKLOADS[a.workload](drv, srv, a, reps))
    finally:
        srv.stop()
        if not a.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return srv, res


def run(a):
    try:
        os.sched_setaffinity(0, {a.loadgen_cpu})
    except OSError as e:
        print(f"warning: cannot pin load generator: {e}", file=sys.stderr)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # unwinds: servers get stopped
    params = {k: getattr(a, k) for k in ("subs", "seconds", "rate", "window", "size", "conns",
                                          "warmup", "w1_warmup", "sub_mode", "logins")}
    results = []
    session = 0
    while len(results) < a.reps:
        session += 1
        k = 1 if a.workload == "w3" else min(a.reps_per_server, a.reps - len(results))
        load = os.getloadavg()[0]
        srv, ress = one_server(a, k)
        for res in ress:
            rec = {
                "peer": a.peer, "server": srv.name, "version": srv.version(),
                "workload": a.workload, "label": a.label, "rep": len(results) + 1,
                "server_session": session, "params": params, "opts": a.opt,
                "loadavg_before": round(load, 2),
                "server_cmd": srv.command_line(), "server_config": srv.config_summary(),
                "harness_cmd": "python3 harness.py " + shlex.join(sys.argv[1:]),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **res,
            }
            results.append(rec)
            print(json.dumps(rec), flush=True)
            if a.out:
                with open(a.out, "a") as f:
                    f.write(json.dumps(rec) + "\n")
        time.sleep(a.pause)
    print(json.dumps({"median": medians(results)}), flush=True)


KEY_FIELDS = {
    "w1": ["deliveries_per_s", "publish_rate", "server_cpu_s_per_1M_deliveries",
           "server_cpu_util", "loadgen_cpu_util", "server_rss_kb", "lost_after_drain"],
    "w2": ["p50_us", "p99_us", "p99_9_us", "max_us", "k_p50_us", "k_p99_us", "k_p99_9_us",
           "k_max_us", "deliveries_per_s", "login_p50_us", "login_p99_us",
           "server_cpu_s_per_1M_deliveries", "server_cpu_util", "loadgen_cpu_util",
           "publisher_max_lag_ms", "lost_after_drain"],
    "w3": ["rss_per_conn_kb", "server_rss_before_kb", "server_rss_after_kb", "connects_per_s",
           "server_cpu_ms_per_connect", "connect_server_cpu_util", "connect_loadgen_cpu_util",
           "idle_server_cpu_util"],
}


def medians(recs):
    wl = recs[0]["workload"]
    out = {}
    for k in KEY_FIELDS[wl]:
        vals = [r[k] for r in recs if r.get(k) is not None]
        if vals:
            out[k] = statistics.median(vals)
    return out


def summary(files):
    groups = {}
    for fn in files:
        with open(fn) as f:
            for line in f:
                r = json.loads(line)
                key = (r["peer"], r["workload"], r.get("label") or "",
                       json.dumps(r["params"], sort_keys=True), " ".join(r.get("opts", [])))
                groups.setdefault(key, []).append(r)
    for (peer, wl, label, params, opts), recs in sorted(groups.items()):
        p = json.loads(params)
        sm = p.get("sub_mode", "lib")
        cond = {"w1": f"S={p['subs']} rate={p['rate'] or 'max'} subs={sm}",
                "w2": f"S={p['subs']} rate={p['rate']}/s {p['seconds']}s subs={sm}",
                "w3": f"N={p['conns']}"}[wl]
        print(f"{peer} {recs[0]['version']} {wl} {cond} {label} {opts} n={len(recs)}: "
              + json.dumps(medians(recs)))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "summary":
        summary(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["run"])
    ap.add_argument("--peer", required=True, choices=sorted(DRIVERS),
                    help="client driver (protocol)")
    ap.add_argument("--server", choices=sorted(SERVERS),
                    help="server launcher (default: the driver's own)")
    ap.add_argument("--server-cmd", help="command for --server command; {port} {workdir} {here}")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--workload", required=True, choices=sorted(WORKLOADS))
    ap.add_argument("--subs", type=int, default=100, help="W1/W2 subscribers")
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="measured duration (W3: idle CPU window)")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="publish rate msgs/s (W1: 0 = as fast as deliveries keep up)")
    ap.add_argument("--w1-warmup", type=float, default=2.0, help="W1 unmeasured seconds")
    ap.add_argument("--window", type=int, default=100_000,
                    help="W1 max mode: deliveries published but not yet received (all "
                         "subscribers together); bounds the backlog held in buffers")
    ap.add_argument("--sub-mode", choices=["lib", "raw"], default="lib",
                    help="subscribers parse with the client library, or (raw) the library "
                         "connects and subscribes, then the harness counts payload markers in "
                         "the raw byte stream")
    ap.add_argument("--warmup", type=float, default=2.0, help="W2 unrecorded seconds")
    ap.add_argument("--size", type=int, default=256, help="payload bytes")
    ap.add_argument("--logins", type=int, default=0,
                    help="W2: this many logins at once a third into the measured window "
                         "(drivers with login_storm)")
    ap.add_argument("--conns", type=int, default=1000, help="W3 idle connections")
    ap.add_argument("--conc", type=int, default=50, help="concurrent connection attempts")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--reps-per-server", type=int, default=1,
                    help="W1/W2: measurements per server start (saves a slow room setup)")
    ap.add_argument("--pause", type=float, default=1.0, help="seconds between repetitions")
    ap.add_argument("--opt", action="append", default=[], help="driver/server option k=v")
    ap.add_argument("--label", default="")
    ap.add_argument("--out", help="append one JSON line per repetition")
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--loadgen-cpu", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the server's scratch dir")
    run(ap.parse_args())


if __name__ == "__main__":
    main()
