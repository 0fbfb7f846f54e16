"""Server lifecycle for the peer harness: write a config into a scratch dir, start the server
pinned to one CPU, read its CPU time and RSS from /proc, stop it by PID.

Every server listens on 127.0.0.1 only. Add a peer by subclassing Server (see README.md)."""
import os
import shlex
import signal
import socket
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


class Server:
    name = "?"
    default_port = 0

    def __init__(self, workdir, port=None, cpu=1, users=0, opts=None):
        self.workdir = workdir
        self.port = port or self.default_port
        self.cpu = cpu
        self.users = users          # accounts a driver will log in as (XMPP)
        self.opts = opts or {}
        self.proc = None
        self.pid = None
        self.argv = None

    # -- to override ---------------------------------------------------------------------------
    def prepare(self):
        """Write config files into self.workdir; return argv (without the taskset prefix)."""
        raise NotImplementedError

    def version(self):
        return "?"

    def config_summary(self):
        """Short text of the settings that differ from the packaged defaults."""
        return ""

    # -- common ----------------------------------------------------------------------------------
    def start(self, timeout=20):
        argv = self.prepare()
        self.argv = ["taskset", "-c", str(self.cpu)] + argv
        self.log = open(os.path.join(self.workdir, "server.out"), "wb")
        # taskset execs the server, so Popen's pid is the server's pid
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir,
                                     start_new_session=True)
        self.pid = self.proc.pid
        with open(os.path.join(self.workdir, "server.pid"), "w") as f:
            f.write(str(self.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited rc={self.proc.returncode}; see "
                                   f"{os.path.join(self.workdir, 'server.out')}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                time.sleep(0.3)
                return self.pid
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not listen on {self.port} within {timeout}s")

    def stop(self, grace=10):
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.log.close()

    def cpu_seconds(self):
        """utime+stime of the server process (all threads), seconds."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_kb(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def command_line(self):
        # scratch paths are machine-specific: record them as $WORKDIR
        return " ".join(shlex.quote(a) for a in self.argv or []).replace(self.workdir, "$WORKDIR")


def _first_line(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except Exception as e:  # noqa: BLE001 - version is informational
        return f"? ({e})"


class NatsServer(Server):
    name = "nats-server"
    default_port = 4222

    def prepare(self):
        conf = os.path.join(self.workdir, "nats.conf")
        with open(conf, "w") as f:
            f.write(f"listen: 127.0.0.1:{self.port}\n")
        return ["nats-server", "-c", conf]

    def version(self):
        return _first_line(["nats-server", "--version"])

    def config_summary(self):
        return "packaged defaults; listen 127.0.0.1"


class MosquittoServer(Server):
    name = "mosquitto"
    default_port = 1883

    def prepare(self):
        conf = os.path.join(self.workdir, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\n"
                    "allow_anonymous true\n"
                    "persistence false\n"
                    "max_connections -1\n"
                    "log_dest stderr\n"
                    "log_type error\nlog_type warning\n")
        return ["mosquitto", "-c", conf]

    def version(self):
        return _first_line(["mosquitto", "-h"])

    def config_summary(self):
        return "allow_anonymous true, persistence false (defaults otherwise)"


PROSODY_CFG = """-- generated by the peer harness (loopback benchmark only)
run_as_root = true            -- the harness runs as root in a throw-away VM
pidfile = "{wd}/prosody.pid"
data_path = "{wd}/data"
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
s2s_ports = {{ }}
log = {{ warn = "{wd}/prosody.log" }}
network_settings = {{ tcp_backlog = 4096; {extra_net} }}
-- Debian's default config also loads "limits" (c2s rate 10kb/s) and smacks, carbons, pep, ...
-- Here: no mod_limits at all, so no per-connection read throttling.
modules_enabled = {{ "disco", "roster", "saslauth", "ping", "posix" }}
modules_disabled = {{ "s2s" }}
authentication = "internal_plain"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
VirtualHost "localhost"
Component "muc.localhost" "muc"
  muc_room_locking = false
  -- only moderators' joins are broadcast: avoids N^2 presence traffic when 1,000 occupants join
  muc_room_default_presence_broadcast = {{ moderator = true }}
"""


class ProsodyServer(Server):
    name = "prosody"
    default_port = 5222

    def prepare(self):
        wd = self.workdir
        extra = "nagle = false;" if self.opts.get("nagle") == "off" else ""
        cfg = os.path.join(wd, "prosody.cfg.lua")
        with open(cfg, "w") as f:
            f.write(PROSODY_CFG.format(wd=wd, port=self.port, extra_net=extra))
        # Accounts: the same file prosodyctl register writes for internal_plain storage,
        # generated directly: one prosodyctl call per account takes ~40 ms (200 s for 5,000).
        acc = os.path.join(wd, "data", "localhost", "accounts")
        os.makedirs(acc, exist_ok=True)
        for name in ["pub"] + [f"b{i}" for i in range(self.users)]:
            with open(os.path.join(acc, name + ".dat"), "w") as f:
                f.write('return {\n\t["password"] = "pw";\n};\n')
        return ["prosody", "--config", cfg]

    def version(self):
        out = subprocess.run(["prosodyctl", "about"], capture_output=True, text=True)
        for line in out.stdout.splitlines():
            if line.startswith("Prosody "):
                return line.strip()
        return "prosody ?"

    def config_summary(self):
        s = ("no mod_limits (Debian default: c2s 10kb/s), PLAIN auth without TLS, epoll, "
             "tcp_backlog 4096, MUC presence broadcast for moderators only, history 20 (default)")
        if self.opts.get("nagle") == "off":
            s += ", nagle off"
        return s


class CommandServer(Server):
    """Any server started by a shell command template, e.g. our relay:
    --server-cmd 'path/to/parley serve --listen 127.0.0.1:{port}'. {port}, {workdir} (scratch
    dir, also the cwd) and {here} (this directory) are substituted; the command must exec the
    server itself, not a shell, so that its PID is the server's."""
    name = "command"
    default_port = 9000

    def prepare(self):
        here = os.path.dirname(os.path.abspath(__file__))
        cmd = self.opts["cmd"].format(port=self.port, workdir=self.workdir, here=here)
        return shlex.split(cmd)

    def version(self):
        return self.opts.get("version", "?")

    def config_summary(self):
        return self.opts["cmd"]

    def command_line(self):
        here = os.path.dirname(os.path.abspath(__file__))
        return super().command_line().replace(here, "{here}")


RELAY_TOML = """# written by the peer harness (loopback benchmark only)
# A load generator on one address opens thousands of connections, logs in hundreds of accounts and publishes
# thousands of events a second from one account; every other setting is the relay's default.
max_connections_per_address = 50000
max_connections_per_account = 50000
publish_events_per_second = 1000000
publish_bytes_per_second = 1000000000
logins_per_address_per_minute = 100000
# Raw-mode subscribers stop reading their socket, so they answer no ping: the relay would close them after a minute.
ping_interval_seconds = 3600
log_level = "warning"
"""


class ParleyServer(Server):
    """Parley's relay (`parley serve`), the binary from --opt parley=PATH or $PARLEY. With --opt database=URL
    (a PostgreSQL server's URL ending in `/`), the relay keeps its accounts and log in a new database made for the
    run (dropped after); with --opt relays=2 also, a second relay on the same database listens on port + 1
    (the driver subscribes there), pinned to the same CPU, and CPU and RSS are both relays' together."""
    name = "parley"
    default_port = 9000

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.binary = self.opts.get("parley") or os.environ.get("PARLEY") or "parley"
        self.relays = int(self.opts.get("relays", 1))
        self.database = None
        self.others = []
        if self.relays > 1:
            self.opts["sub_port"] = str(self.port + 1)

    def _argv(self, index):
        data = os.path.join(self.workdir, f"data{index}")
        argv = [self.binary, "serve", "--listen", f"127.0.0.1:{self.port + index}", "--data", data,
                "--config", os.path.join(self.workdir, "relay.toml")]
        return argv + (["--database", self.database] if self.database else [])

    def prepare(self):
        with open(os.path.join(self.workdir, "relay.toml"), "w") as f:
            f.write(RELAY_TOML)
        if "database" in self.opts:
            name = "bench_" + os.path.basename(self.workdir).replace("-", "_").lower()
            subprocess.run(["psql", self.opts["database"] + "postgres", "-q", "-c", f"CREATE DATABASE {name}"],
                           check=True, capture_output=True)
            self.database = self.opts["database"] + name
        return self._argv(0)

    def start(self, timeout=20):
        pid = super().start(timeout)
        for index in range(1, self.relays):
            argv = ["taskset", "-c", str(self.cpu)] + self._argv(index)
            proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=self.workdir, start_new_session=True)
            self.others.append(proc)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    socket.create_connection(("127.0.0.1", self.port + index), timeout=0.5).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"relay {index + 1} did not listen; see {self.workdir}/server.out")
                    time.sleep(0.05)
        return pid

    def stop(self, grace=10):
        for proc in self.others:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        super().stop(grace)
        if self.database:
            subprocess.run(["psql", self.opts["database"] + "postgres", "-q", "-c",
                            f"DROP DATABASE IF EXISTS {self.database.rsplit('/', 1)[1]}"], capture_output=True)

    def _pids(self):
        return [self.pid] + [proc.pid for proc in self.others]

    def cpu_seconds(self):
        total = 0.0
        for pid in self._pids():
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        return total

    def rss_kb(self):
        total = 0
        for pid in self._pids():
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        return total

    def version(self):
        return _first_line([self.binary, "--version"])

    def config_summary(self):
        return ("relay.toml: limits per address, per account and on publishing raised for one load generator; "
                "defaults otherwise" + (f"; {self.relays} relay(s) on PostgreSQL" if self.database else ""))


SERVERS = {
    "parley": ParleyServer,
    "nats": NatsServer,
    "mosquitto": MosquittoServer,
    "prosody": ProsodyServer,
    "command": CommandServer,
}
