#!/usr/bin/env python3
"""A fault-injecting HTTP proxy for Parley's S3 tests.

Forwards every request to an S3-compatible server (moto) unchanged, headers included, so signatures still verify,
except when a fault rule matches. Rules are added with `POST /__faults` (a JSON list of rules) and removed with
`DELETE /__faults`; `GET /__faults?path=P` answers how many injections the rules whose path contains P have not
made yet (so a test can check every fault it asked for happened). Each rule applies to the next `count` requests
whose method and path match:

    {"method": "PUT", "path": "messages_", "action": "status:503:SlowDown", "count": 2}

Actions:
    status:CODE:S3CODE  answer CODE with an S3 error document, without forwarding
    reset-body          forward, send the headers and half the body, then reset the connection
    short-body          forward, send the full Content-Length but half the body, then close
    drop-response       forward (the server applies the request), then close without answering
    delay:SECONDS       wait, then forward
    hang                forward, then hold the connection open without answering for a minute
    huge-body:BYTES     answer 200 with a body of BYTES bytes, its length announced, without forwarding: a server
                        lying about an object's size, or a hostile one
    huge-chunked:BYTES  the same, in chunks with no announced length, so only counting the bytes can stop it

`GET /__faults?path=P` also answers how many body bytes the huge-body rules whose path contains P managed to send
before the client hung up (`sent`): what a reader with a size limit let in.

Usage: fault_proxy.py LISTEN_PORT UPSTREAM_PORT  (both on 127.0.0.1)
"""

import http.client
import http.server
import json
import socket
import struct
import sys
import threading
import time
import urllib.parse

UPSTREAM = ("127.0.0.1", int(sys.argv[2]))
rules = []
lock = threading.Lock()


def take_rule(method, path):
    with lock:
        for rule in rules:
            if rule.get("method", method) == method and rule.get("path", "") in path and rule["count"] > 0:
                rule["count"] -= 1
                return rule
    return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def control(self, method):
        global rules
        data = self.body()
        if method == "GET":
            query = self.path.partition("?")[2]
            wanted = urllib.parse.parse_qs(query).get("path", [""])[0]
            with lock:
                matching = [rule for rule in rules if wanted in rule.get("path", "")]
                pending = sum(rule["count"] for rule in matching)
                sent = sum(rule.get("sent", 0) for rule in matching)
            payload = json.dumps({"pending": pending, "sent": sent}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        with lock:
            if method == "POST":
                rules += json.loads(data)
            else:
                rules = []
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def forward(self, method, data):
        connection = http.client.HTTPConnection(*UPSTREAM, timeout=60)
        headers = {name: value for name, value in self.headers.items()}
        connection.request(method, self.path, body=data if data else None, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        connection.close()
        return response.status, response.getheaders(), payload

    def send_head(self, status, headers, length):
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def reply(self, status, headers, payload):
        if self.command == "HEAD":
            # No body, but the length the server announced for the object.
            announced = next((value for name, value in headers if name.lower() == "content-length"), "0")
            return self.send_head(status, headers, int(announced))
        self.send_head(status, headers, len(payload))
        self.wfile.write(payload)

    def handle_any(self):
        method = self.command
        if self.path.startswith("/__faults"):
            return self.control(method)
        data = self.body()
        rule = take_rule(method, self.path)
        action = rule["action"] if rule else None
        if action and action.startswith("status:"):
            _, code, s3code = action.split(":", 2)
            document = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{s3code}</Code><Message>injected fault</Message></Error>'.encode()
            return self.reply(int(code), [("Content-Type", "application/xml")], document)
        if action and action.startswith(("huge-body:", "huge-chunked:")):
            return self.huge(rule, int(action.split(":", 1)[1]), chunked=action.startswith("huge-chunked:"))
        if action and action.startswith("delay:"):
            time.sleep(float(action.split(":", 1)[1]))
        status, headers, payload = self.forward(method, data)
        if action == "drop-response":
            self.close_abruptly()
        elif action == "hang":
            time.sleep(60)
            self.close_abruptly()
        elif action in ("reset-body", "short-body") and len(payload) > 1:
            # The full length announced, half the body sent.
            self.send_head(status, headers, len(payload))
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            if action == "reset-body":
                self.close_abruptly()
            else:
                self.close_connection = True
        else:
            self.reply(status, headers, payload)

    def huge(self, rule, size, chunked):
        # A reader that stops reading without hanging up must not hold this thread for ever.
        self.connection.settimeout(10)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(size))
        self.end_headers()
        block = b"x" * 65536
        left = size if self.command != "HEAD" else 0
        try:
            while left > 0:
                piece = block[: min(left, len(block))]
                if chunked:
                    self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                else:
                    self.wfile.write(piece)
                left -= len(piece)
                with lock:
                    rule["sent"] = rule.get("sent", 0) + len(piece)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            # The reader hung up (or stopped reading): what it refused is the point.
            pass
        self.close_connection = True

    def close_abruptly(self):
        # SO_LINGER with a zero timeout: close() sends a TCP reset.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = handle_any


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
server.daemon_threads = True
server.serve_forever()
