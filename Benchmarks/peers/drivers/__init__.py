"""Client drivers: one per protocol. The harness only talks to this interface.

A driver is a class with:
    name            short id used on the command line
    server          default server key in servers.SERVERS ("command" for external servers)
    __init__(host, port, opts)
    async subscriber(idx, room, on_msg) -> conn   # joined/subscribed when it returns;
                                                  # on_msg(payload) per delivered message,
                                                  # payload = bytes or str (ASCII)
    async publisher(idx, room) -> conn            # may publish to `room` when it returns
    async publish(conn, payload: bytes)           # fire-and-forget (QoS 0 style)
    async idle(idx) -> conn                       # an authenticated, otherwise idle client
    async close(conn)                             # fast teardown (abort is fine)
    async raw_socket(conn) -> socket              # optional (--sub-mode raw): stop the library
                                                  # reading this subscriber; return its socket
    flush(conn)                                   # optional: write buffered publishes now (W2)
    users_needed(n) -> int                        # accounts the server must have (0 if none)
    async setup(workload, n, room)                # optional: accounts, keys, the room; not measured
    check()                                       # optional: raises if the server refused a publish
    async login_storm(n) -> [us]                  # optional (W2 --logins): n logins at once
"""
import importlib

DRIVERS = {
    "nats": "drivers.nats_drv:NatsDriver",
    "mqtt": "drivers.mqtt_drv:MqttDriver",
    "xmpp": "drivers.xmpp_drv:XmppDriver",
    "wsjson": "drivers.wsjson_drv:WsJsonDriver",
    "parley": "drivers.parley_drv:ParleyDriver",
}


def make_driver(name, host, port, opts):
    mod, cls = DRIVERS[name].split(":")
    return getattr(importlib.import_module(mod), cls)(host, port, opts)
