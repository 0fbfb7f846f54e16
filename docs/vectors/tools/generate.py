#!/usr/bin/env python3
"""Generates Parley's protocol test vectors with an implementation independent of the Swift one.

Canonical JSON comes from Python's json module, signatures, X25519, HMAC, HKDF and AES-GCM from the
`cryptography` package (OpenSSL), HPKE (RFC 9180 base mode) is written out below, hashes come from hashlib, and the
expected verdicts of chain and state scenarios are written out by hand below, from the rules
of docs/PROTOCOL.md. The Swift tests load the JSON files this writes; `--check` regenerates them in memory and
fails if any committed file differs (Ed25519 signing is deterministic, so the output is reproducible).

    python3 docs/vectors/tools/generate.py          # rewrite docs/vectors/*.json
    python3 docs/vectors/tools/generate.py --check  # verify the committed files
"""
import base64
import hashlib
import json
import os
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.dirname(HERE)

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, -1, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


# ---------------------------------------------------------------- canonical JSON (docs/PROTOCOL.md §2)

def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def no_duplicate_keys(pairs):
    """An object_pairs_hook for json.loads that refuses duplicate keys, as §2 does."""
    if len({k for k, _ in pairs}) != len(pairs):
        raise ValueError("duplicate key")
    return dict(pairs)


def b64(data):
    return base64.b64encode(data).decode("ascii")


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- Edwards arithmetic, for the small-order list

def x_recover(y, sign):
    xx = (y * y - 1) * pow(D * y * y + 1, -1, P) % P
    x = pow(xx, (P + 3) // 8, P)
    if (x * x - xx) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - xx) % P != 0:
        return None
    if x == 0 and sign:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


def point_add(a, b):
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2
    return ((x1 * y2 + x2 * y1) * pow(1 + t, -1, P) % P, (y1 * y2 + x1 * x2) * pow(1 - t, -1, P) % P)


def point_mul(n, point):
    result = (0, 1)
    while n:
        if n & 1:
            result = point_add(result, point)
        point = point_add(point, point)
        n >>= 1
    return result


def encode_point(point):
    x, y = point
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def small_order_points():
    """All points of order dividing 8: the multiples of a point of order 8, found from the curve equation."""
    # Doubling (x, y) on -x^2 + y^2 = 1 + d x^2 y^2 gives y' = (x^2 + y^2) / (1 - d x^2 y^2); a point of order 8
    # doubles to one of order 4, which has y' = 0, so x^2 = -y^2 and then d y^4 + 2 y^2 - 1 = 0:
    # y^2 = (-1 ± sqrt(1 + d)) / d.
    roots = []
    one_plus_d = (1 + D) % P
    s = pow(one_plus_d, (P + 3) // 8, P)
    if (s * s - one_plus_d) % P != 0:
        s = s * SQRT_M1 % P
    for sign_s in (s, P - s):
        yy = (sign_s - 1) * pow(D, -1, P) % P
        y = pow(yy, (P + 3) // 8, P)
        if (y * y - yy) % P != 0:
            y = y * SQRT_M1 % P
        if (y * y - yy) % P == 0:
            roots.append(y)
    for y in roots:
        x = x_recover(y, 0)
        if x is None:
            continue
        point = (x, y)
        if point_mul(8, point) == (0, 1) and point_mul(4, point) != (0, 1):
            return sorted({encode_point(point_mul(k, point)).hex() for k in range(8)})
    raise SystemExit("no point of order 8 found")


def x25519_low_order():
    """u = (1 + y) / (1 - y) of the Edwards small-order points (the identity maps to infinity), plus u = p - 1."""
    values = set()
    for encoded in small_order_points():
        raw = int.from_bytes(bytes.fromhex(encoded), "little")
        y = raw & ((1 << 255) - 1)
        if y == 1:
            continue
        values.add(((1 + y) * pow(1 - y, -1, P) % P).to_bytes(32, "little").hex())
    values.add((P - 1).to_bytes(32, "little").hex())
    return sorted(values)


# ---------------------------------------------------------------- keys and events (docs/PROTOCOL.md §4–5)

class Device:
    def __init__(self, user, name=None):
        self.user = user
        seed = hashlib.sha256(("parley vector signing key " + (name or user)).encode()).digest()
        self.private = Ed25519PrivateKey.from_private_bytes(seed)
        self.public = self.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        xseed = hashlib.sha256(("parley vector exchange key " + (name or user)).encode()).digest()
        xpub = X25519PrivateKey.from_private_bytes(xseed).public_key()
        self.exchange = xpub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.heads = {}

    @property
    def key(self):
        return b64(self.public)

    def binding(self, with_exchange=True):
        binding = {"signing_key": self.key}
        if with_exchange:
            binding["exchange_key"] = b64(self.exchange)
        return binding

    def sign(self, room, type_, content, ts=None, parent=None, seq=None, prev="head", copying=None):
        """Signs the next event of this device's chain; with `copying`, under that event's id and time (§6.5)."""
        head_seq, head_hash = self.heads.get(room, (0, None))
        seq = head_seq + 1 if seq is None else seq
        prev_hash = head_hash if prev == "head" else prev
        if copying is not None:
            ts = copying["timestamp_ms"]
        event = {
            "event_id": copying["event_id"] if copying is not None else
            event_id(room, ts, hashlib.sha256(f"{self.user} {self.key} {room} {seq} {ts}".encode()).digest()[:16]),
            "room_id": room,
            "timestamp_ms": ts,
            "sender_id": self.user,
            "sender_key": self.key,
            "seq": seq,
            "type": type_,
            "prev_event_hash": prev_hash,
            "content_hash": sha256_hex(canonical(content)),
        }
        if parent is not None:
            event["parent_event_id"] = parent
        signature = self.private.sign(b"parley.event.v1\n" + canonical(event))
        event["signature"] = b64(signature)
        event["content"] = content
        self.heads[room] = (seq, event_hash(event))
        return event


def event_id(room, ts, random16):
    b = bytearray(random16)
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    import datetime
    t = datetime.datetime.fromtimestamp(ts / 1000, datetime.timezone.utc)
    stamp = t.strftime("%Y%m%dT%H%M%S.") + f"{ts % 1000:03d}Z"
    return f"{room}::{stamp}::{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def envelope(event):
    return {k: v for k, v in event.items() if k != "content"}


def event_hash(event):
    return sha256_hex(canonical(envelope(event)))


def wire(event):
    return canonical(event).decode("utf-8")


# ---------------------------------------------------------------- vector files

def canonical_vectors():
    valid = [
        ("sorts keys by their UTF-8 bytes", '{"b":1,"a":2,"aa":3,"A":4,"é":5,"z":6}'),
        ("removes insignificant whitespace", ' { "a" : [ 1 , 2 , { "b" : null } ] , "c" : true } '),
        ("writes non-ASCII characters as UTF-8, not escapes", '{"k":"\\u00e9\\u4e2d\\ud83d\\ude00"}'),
        ("uses the short escapes and lowercase \\u00xx for control characters",
         '{"k":"\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f\\"\\\\\\/"}'),
        ("keeps U+2028 and U+2029 unescaped", '{"k":"\\u2028\\u2029"}'),
        ("writes integers without sign or leading zeros", '[0,-1,9007199254740991,-9007199254740991]'),
        ("keeps distinct keys that are canonically equivalent in Unicode", '{"\\u00e9":1,"e\\u0301":2}'),
        ("sorts nested objects", '{"b":{"d":1,"c":2},"a":[{"y":1,"x":2}]}'),
        ("accepts an empty object and array", '{"a":{},"b":[]}'),
        ("accepts a bare string at top level", '"text"'),
    ]
    cases = []
    for name, text in valid:
        cases.append({"name": name, "input": text, "canonical": canonical(json.loads(text)).decode("utf-8")})
    invalid = [
        ("rejects duplicate keys", '{"a":1,"a":2}', "duplicate_key"),
        ("rejects duplicate keys out of order", '{"b":1,"a":2,"b":3}', "duplicate_key"),
        ("rejects duplicate keys spelled with escapes", '{"a":1,"\\u0061":2}', "duplicate_key"),
        ("rejects fractions", '{"a":1.5}', "not_integer"),
        ("rejects 1.0", '[1.0]', "not_integer"),
        ("rejects exponents", '[1e3]', "not_integer"),
        ("rejects negative zero", '[-0]', "negative_zero"),
        ("rejects integers above 2^53-1", '[9007199254740992]', "integer_out_of_range"),
        ("rejects integers below -(2^53-1)", '[-9007199254740992]', "integer_out_of_range"),
        ("rejects very long integers", '[123456789012345678901234567890]', "integer_out_of_range"),
        ("rejects leading zeros", '[01]', "unexpected_character"),
        ("rejects a lone high surrogate", '["\\ud800"]', "lone_surrogate"),
        ("rejects a lone low surrogate", '["\\udc00"]', "lone_surrogate"),
        ("rejects a high surrogate followed by a non-surrogate", '["\\ud800\\u0041"]', "lone_surrogate"),
        ("rejects keys above U+FFFF", '{"\\ud83d\\ude00":1}', "key_outside_bmp"),
        ("rejects trailing content", '{"a":1} x', "trailing_content"),
        ("rejects two values", '1 2', "trailing_content"),
        ("rejects unescaped control characters", '["a\tb"]', "control_character"),
        ("rejects invalid escapes", '["\\x41"]', "invalid_escape"),
        ("rejects single quotes", "{'a':1}", "unexpected_character"),
        ("rejects trailing commas", '[1,]', "unexpected_character"),
        ("rejects NaN", '[NaN]', "unexpected_character"),
        ("rejects an unterminated string", '["abc', "unexpected_end"),
        ("rejects empty input", '', "unexpected_end"),
    ]
    for name, text, code in invalid:
        cases.append({"name": name, "input": text, "error": code})
    invalid_bytes = [
        ("rejects invalid UTF-8", b'["\xff"]'),
        ("rejects overlong UTF-8", b'["\xc0\xaf"]'),
        ("rejects UTF-8-encoded surrogates", b'["\xed\xa0\x80"]'),
        ("rejects code points above U+10FFFF", b'["\xf4\x90\x80\x80"]'),
        ("rejects truncated UTF-8", b'["\xe2\x82"]'),
    ]
    for name, raw in invalid_bytes:
        cases.append({"name": name, "input_hex": raw.hex(), "error": "invalid_utf8"})
    cases.append({"name": "accepts a character above U+FFFF as raw UTF-8 in a value",
                  "input_hex": '["\U0001F600"]'.encode("utf-8").hex(), "canonical": '["\U0001F600"]'})
    return {"description": "Canonical JSON (docs/PROTOCOL.md §2): each case gives `input` (text) or `input_hex` "
                           "(bytes) and either the expected `canonical` output or the expected `error` code.",
            "cases": cases}


RFC8032 = [
    ("TEST 1", "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("TEST 2", "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("TEST 3", "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]


def rfc8032_vectors():
    cases = []
    for name, secret, public, message, signature in RFC8032:
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret))
        derived = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
        assert derived == public, name
        assert key.sign(bytes.fromhex(message)).hex() == signature, name
        cases.append({"name": name, "secret_key": secret, "public_key": public, "message": message, "signature": signature})
    return {"description": "RFC 8032 §7.1 Ed25519 test vectors (secret key seed, public key, message, signature; hex).",
            "source": "https://www.rfc-editor.org/rfc/rfc8032#section-7.1", "cases": cases}


def strict_vectors():
    small = small_order_points()
    signer = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    public = signer.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    message = b"parley strict verification"
    good = signer.sign(message)
    s = int.from_bytes(good[32:], "little")
    cases = [{"name": "a valid signature", "public_key": public.hex(), "message": message.hex(), "signature": good.hex(),
              "verdict": "valid", "raw_library_accepts": True}]
    cases.append({"name": "S + L (malleated signature)", "public_key": public.hex(), "message": message.hex(),
                  "signature": (good[:32] + (s + L).to_bytes(32, "little")).hex(), "verdict": "s_not_reduced"})
    cases.append({"name": "S = L", "public_key": public.hex(), "message": message.hex(),
                  "signature": (good[:32] + L.to_bytes(32, "little")).hex(), "verdict": "s_not_reduced"})
    # With A and R of small order and S = 0, R = S·B − h·A holds for every message: the forgery strict checks stop.
    for index, encoded in enumerate(small):
        point = bytes.fromhex(encoded)
        cases.append({"name": f"small-order public key {index} with small-order R and S = 0", "public_key": encoded,
                      "message": message.hex(), "signature": (point + bytes(32)).hex(), "verdict": "key_small_order"})
    identity = (1).to_bytes(32, "little")
    cases.append({"name": "small-order R under a valid key", "public_key": public.hex(), "message": message.hex(),
                  "signature": (identity + good[32:]).hex(), "verdict": "r_small_order"})
    # Non-canonical encodings: y >= p, and x = 0 with the sign bit set.
    for y, sign, label in [(P, 0, "y = p"), (P + 1, 0, "y = p + 1 (identity, non-canonical)"),
                           (P + 18, 0, "y = 2^255 - 1"), (1, 1, "y = 1 with the sign bit set"),
                           (P - 1, 1, "y = p - 1 with the sign bit set")]:
        encoded = (y | (sign << 255)).to_bytes(32, "little")
        cases.append({"name": f"non-canonical public key, {label}", "public_key": encoded.hex(), "message": message.hex(),
                      "signature": good.hex(), "verdict": "key_not_canonical"})
        cases.append({"name": f"non-canonical R, {label}", "public_key": public.hex(), "message": message.hex(),
                      "signature": (encoded + good[32:]).hex(), "verdict": "r_not_canonical"})
    not_on_curve = None
    for candidate in range(2, 100):
        if x_recover(candidate, 0) is None:
            not_on_curve = candidate.to_bytes(32, "little")
            break
    # Verification cannot tell an off-curve key from a wrong signature: the equation simply fails.
    cases.append({"name": "public key not on the curve", "public_key": not_on_curve.hex(), "message": message.hex(),
                  "signature": good.hex(), "verdict": "mismatch"})
    flipped = bytearray(good)
    flipped[40] ^= 1
    cases.append({"name": "one flipped bit in S", "public_key": public.hex(), "message": message.hex(),
                  "signature": bytes(flipped).hex(), "verdict": "mismatch"})
    cases.append({"name": "another message", "public_key": public.hex(), "message": (message + b"!").hex(),
                  "signature": good.hex(), "verdict": "mismatch"})
    cases.append({"name": "a 63-byte signature", "public_key": public.hex(), "message": message.hex(),
                  "signature": good[:63].hex(), "verdict": "signature_length"})
    key_checks = [{"public_key": public.hex(), "verdict": "valid"}]
    for candidate in range(2, 40):
        encoded = candidate.to_bytes(32, "little")
        key_checks.append({"public_key": encoded.hex(),
                           "verdict": "valid" if x_recover(candidate, 0) is not None else "key_not_on_curve"})
    key_checks += [{"public_key": encoded, "verdict": "key_small_order"} for encoded in small]
    key_checks.append({"public_key": P.to_bytes(32, "little").hex(), "verdict": "key_not_canonical"})
    return {"description": "Parley's strict Ed25519 verdicts (docs/PROTOCOL.md §4): `verdict` is `valid` or the "
                           "rule broken. Checks run in this order: lengths, A canonical, A not small order, R canonical, "
                           "R not small order, S < L, then the signature equation. `public_key_checks` are the verdicts "
                           "on keys bound in member events, which must also be points on the curve.",
            "small_order_points": small, "x25519_low_order_points": x25519_low_order(), "cases": cases,
            "public_key_checks": key_checks}


def event_vectors():
    alice = Device("alice")
    room = "general"
    create = alice.sign(room, "m.room.create", {"version": 1}, 1_760_000_000_000)
    join = alice.sign(room, "m.room.member", {"membership": "join", "user_id": "alice", "devices": [alice.binding()]},
                      1_760_000_000_000)
    message = alice.sign(room, "m.room.message", {"msgtype": "text", "body": "héllo \"world\"\n😀"}, 1_760_000_000_123,
                         parent=create["event_id"])
    valid = []
    for event in (create, join, message):
        signing = {k: v for k, v in envelope(event).items() if k != "signature"}
        valid.append({
            "wire": wire(event),
            "event_hash": event_hash(event),
            "content_hash": event["content_hash"],
            "signing_input": (b"parley.event.v1\n" + canonical(signing)).decode("utf-8"),
            "stripped_wire": wire(envelope(event)),
        })

    def mutate(base, change):
        event = json.loads(json.dumps(base))
        change(event)
        return wire(event)

    invalid = []

    def add(name, line, code):
        invalid.append({"name": name, "wire": line, "error": code})

    add("content altered after signing", mutate(message, lambda e: e["content"].update(body="hello")), "content_hash_mismatch")
    add("seq altered after signing", mutate(message, lambda e: e.update(seq=4)), "bad_signature")
    add("sender_id altered after signing", mutate(message, lambda e: e.update(sender_id="mallory")), "bad_signature")
    add("signature from another key", mutate(message, lambda e: e.update(sender_key=Device("mallory").key)), "bad_signature")
    add("unknown field", mutate(message, lambda e: e.update(extra=1)), "unknown_field")
    add("missing signature", mutate(message, lambda e: e.pop("signature")), "missing_field")
    add("seq as a string", mutate(message, lambda e: e.update(seq="3")), "wrong_type")
    add("prev_event_hash null after seq 1", mutate(message, lambda e: e.update(prev_event_hash=None)), "invalid_value")
    add("prev_event_hash set at seq 1", mutate(create, lambda e: e.update(prev_event_hash="0" * 64)), "invalid_value")
    add("uppercase hex hash", mutate(message, lambda e: e.update(content_hash=e["content_hash"].upper())), "invalid_value")
    add("room id with '..'", mutate(message, lambda e: e.update(room_id="a..b")), "invalid_value")
    add("room id with '/'", mutate(message, lambda e: e.update(room_id="a/b")), "invalid_value")
    add("room id with a backslash", mutate(message, lambda e: e.update(room_id="a\\b")), "invalid_value")
    add("room id with NUL", mutate(message, lambda e: e.update(room_id="a\u0000b")), "invalid_value")
    add("room id of 65 characters", mutate(message, lambda e: e.update(room_id="r" * 65)), "invalid_value")
    add("sender id with uppercase", mutate(message, lambda e: e.update(sender_id="Alice")), "invalid_value")
    add("event id naming another room", mutate(message, lambda e: e.update(event_id=e["event_id"].replace("general", "other"))),
        "invalid_value")
    add("event id time not matching timestamp_ms", mutate(message, lambda e: e.update(timestamp_ms=e["timestamp_ms"] + 1)),
        "invalid_value")
    add("sender key of 31 bytes", mutate(message, lambda e: e.update(sender_key=b64(bytes(31)))), "invalid_value")
    add("non-canonical base64 signature (unused bits set)",
        mutate(message, lambda e: e.update(signature=e["signature"][:-3] + chr(ord(e["signature"][-3]) ^ 1) + "==")),
        "invalid_value")
    add("content that is not an object", mutate(message, lambda e: e.update(content=[1])), "wrong_type")
    add("an array, not an event", "[]", "not_an_object")
    for position in (0, 10, 40, 63):
        signature = bytearray(base64.b64decode(message["signature"]))
        signature[position] ^= 0x01
        add(f"flipped bit in signature byte {position}",
            mutate(message, lambda e, s=bytes(signature): e.update(signature=b64(s))), "bad_signature")
    return {"description": "Signed events (docs/PROTOCOL.md §5). `valid` events give their exact wire form, event hash, "
                           "content hash, signing input (prefix included) and stripped wire form; `invalid` ones give "
                           "the error code a verifier reports. Keys derive from SHA-256(\"parley vector signing key \" + name).",
            "valid": valid, "invalid": invalid}


def chain_vectors():
    scenarios = []
    alice = Device("alice")
    room = "chains"
    a1 = alice.sign(room, "m.room.create", {"version": 1}, 1_760_000_000_000)
    a2 = alice.sign(room, "m.room.member", {"membership": "join", "user_id": "alice", "devices": [alice.binding()]},
                    1_760_000_000_000)
    a3 = alice.sign(room, "m.room.message", {"msgtype": "text", "body": "one"}, 1_760_000_001_000)
    a4 = alice.sign(room, "m.room.message", {"msgtype": "text", "body": "two"}, 1_760_000_002_000)
    scenarios.append({"name": "a valid chain in order", "events": [wire(e) for e in (a1, a2, a3, a4)],
                      "outcomes": ["chained", "chained", "chained", "chained"]})
    scenarios.append({"name": "a valid chain in reverse order fills its gaps",
                      "events": [wire(e) for e in (a4, a3, a2, a1)],
                      "outcomes": ["awaiting:3", "awaiting:2", "awaiting:1", "chained"], "finally_chained": 4})
    scenarios.append({"name": "a missing seq leaves later events held back", "events": [wire(e) for e in (a1, a2, a4)],
                      "outcomes": ["chained", "chained", "awaiting:3"], "finally_chained": 2})
    scenarios.append({"name": "the same event twice is a duplicate", "events": [wire(e) for e in (a1, a1)],
                      "outcomes": ["chained", "duplicate"]})
    fork_device = Device("alice")
    fork_device.heads[room] = (a2["seq"], event_hash(a2))
    a3_fork = fork_device.sign(room, "m.room.message", {"msgtype": "text", "body": "one, differently"}, 1_760_000_001_500)
    a4_after_fork = alice.sign(room, "m.room.message", {"msgtype": "text", "body": "three"}, 1_760_000_003_000)
    scenarios.append({"name": "two events at one seq are a fork, and the device's later events are refused",
                      "events": [wire(e) for e in (a1, a2, a3, a3_fork, a4, a4_after_fork)],
                      "outcomes": ["chained", "chained", "chained", "fork", "rejected", "rejected"]})
    wrong_prev = Device("alice")
    wrong_prev.heads[room] = (a3["seq"], "ab" * 32)
    a4_wrong = wrong_prev.sign(room, "m.room.message", {"msgtype": "text", "body": "bad prev"}, 1_760_000_002_000)
    scenarios.append({"name": "a prev_event_hash naming an unknown hash is rejected",
                      "events": [wire(e) for e in (a1, a2, a3, a4_wrong)],
                      "outcomes": ["chained", "chained", "chained", "rejected"]})
    back = Device("alice")
    back.heads[room] = (a3["seq"], event_hash(a3))
    a4_back = back.sign(room, "m.room.message", {"msgtype": "text", "body": "from the past"}, 1_760_000_000_500)
    scenarios.append({"name": "a timestamp going backwards within a chain is rejected",
                      "events": [wire(e) for e in (a1, a2, a3, a4_back)],
                      "outcomes": ["chained", "chained", "chained", "rejected"]})
    bob = Device("bob")
    b1 = bob.sign(room, "m.room.message", {"msgtype": "text", "body": "bob's first"}, 1_760_000_000_500)
    b2_copy = bob.sign(room, "m.room.message", {"msgtype": "text", "body": "under alice's id"}, copying=a3)
    b3 = bob.sign(room, "m.room.message", {"msgtype": "text", "body": "bob goes on"}, 1_760_000_004_000)
    scenarios.append({"name": "an event carrying another device's event id is chained, and neither chain is blocked",
                      "events": [wire(e) for e in (b1, b2_copy, a1, a2, a3, a4, b3)],
                      "outcomes": ["chained"] * 7, "finally_chained": 7})
    scenarios.append({"name": "whichever of two events sharing an id arrives first, both are chained",
                      "events": [wire(e) for e in (a1, a2, a3, b1, b2_copy, b3)],
                      "outcomes": ["chained"] * 6, "finally_chained": 6})
    return {"description": "Per-device chains (docs/PROTOCOL.md §6): events are offered in the order given; each "
                           "`outcomes` entry is `chained`, `duplicate`, `awaiting:SEQ` (held for the missing SEQ), `fork` "
                           "or `rejected`. `finally_chained` counts the events chained after all were offered.",
            "scenarios": scenarios}


def state_vectors():
    scenarios = []
    t0 = 1_760_000_000_000

    def member(device, membership, user, devices=None, reason=None):
        content = {"membership": membership, "user_id": user}
        if devices is not None:
            content["devices"] = devices
        if reason is not None:
            content["reason"] = reason
        return content

    def scenario(name, steps, expected_state):
        scenarios.append({"name": name, "events": [wire(e) for e, _ in steps], "verdicts": [v for _, v in steps],
                          "state": expected_state})

    # 1: create, invite, join, messages, name, topic, power.
    alice, bob = Device("alice"), Device("bob")
    r = "state1"
    steps = [
        (alice.sign(r, "m.room.create", {"version": 1}, t0), "accepted"),
        (alice.sign(r, "m.room.member", member(alice, "join", "alice", [alice.binding()]), t0), "accepted"),
        (alice.sign(r, "m.room.name", {"name": "General"}, t0 + 1), "accepted"),
        (alice.sign(r, "m.room.member", member(alice, "invite", "bob", [bob.binding(False)]), t0 + 2), "accepted"),
        (bob.sign(r, "m.room.member", member(bob, "join", "bob", [bob.binding()]), t0 + 3), "accepted"),
        (bob.sign(r, "m.room.message", {"msgtype": "text", "body": "hi"}, t0 + 4), "accepted"),
        (bob.sign(r, "m.room.topic", {"topic": "bob's topic"}, t0 + 5), "rejected"),
        (bob.sign(r, "m.room.power_levels", {"users": {"alice": 100, "bob": 100}}, t0 + 6), "rejected"),
        (alice.sign(r, "m.room.power_levels", {"users": {"alice": 100, "bob": 50}}, t0 + 7), "accepted"),
        (bob.sign(r, "m.room.topic", {"topic": "now allowed"}, t0 + 8), "accepted"),
        (bob.sign(r, "m.room.power_levels", {"users": {"alice": 100, "bob": 60}}, t0 + 9), "rejected"),
    ]
    scenario("invite, join, and power levels gate state changes", steps, {
        "creator": "alice", "name": "General", "topic": "now allowed",
        "members": {"alice": {"membership": "join", "devices": [alice.key]}, "bob": {"membership": "join", "devices": [bob.key]}},
        "power_levels": {"alice": 100, "bob": 50}})

    # 2: non-members, uninvited keys, bans, kicks.
    alice, bob, carol, mallory = Device("alice"), Device("bob"), Device("carol"), Device("mallory")
    bob_other = Device("bob", "bob-second-device")
    r = "state2"
    steps = [
        (alice.sign(r, "m.room.create", {"version": 1}, t0), "accepted"),
        (alice.sign(r, "m.room.member", member(alice, "join", "alice", [alice.binding()]), t0), "accepted"),
        (mallory.sign(r, "m.room.message", {"msgtype": "text", "body": "spam"}, t0 + 1), "rejected"),
        (mallory.sign(r, "m.room.member", member(mallory, "join", "mallory", [mallory.binding()]), t0 + 2), "rejected"),
        (alice.sign(r, "m.room.member", member(alice, "invite", "bob", [bob.binding(False)]), t0 + 3), "accepted"),
        (bob_other.sign(r, "m.room.member", member(bob_other, "join", "bob", [bob_other.binding()]), t0 + 4), "rejected"),
        (bob.sign(r, "m.room.member", member(bob, "join", "bob", [bob.binding()]), t0 + 5), "accepted"),
        (bob_other.sign(r, "m.room.message", {"msgtype": "text", "body": "unbound key"}, t0 + 6), "rejected"),
        (alice.sign(r, "m.room.member", member(alice, "invite", "carol", [carol.binding(False)]), t0 + 7), "accepted"),
        (carol.sign(r, "m.room.member", member(carol, "join", "carol", [carol.binding()]), t0 + 8), "accepted"),
        (bob.sign(r, "m.room.member", member(bob, "ban", "carol"), t0 + 9), "rejected"),
        (alice.sign(r, "m.room.member", member(alice, "ban", "carol", reason="spam"), t0 + 10), "accepted"),
        (carol.sign(r, "m.room.message", {"msgtype": "text", "body": "still here?"}, t0 + 11), "rejected"),
        (alice.sign(r, "m.room.member", member(alice, "leave", "bob"), t0 + 12), "accepted"),
        (bob.sign(r, "m.room.message", {"msgtype": "text", "body": "kicked"}, t0 + 13), "rejected"),
        (alice.sign(r, "m.room.member", member(alice, "invite", "carol", [carol.binding(False)]), t0 + 14), "rejected"),
        (alice.sign(r, "m.room.member", member(alice, "leave", "carol"), t0 + 15), "accepted"),
    ]
    scenario("non-members, unbound keys, banned and kicked users cannot send", steps, {
        "creator": "alice", "name": None, "topic": None,
        "members": {"alice": {"membership": "join", "devices": [alice.key]}, "bob": {"membership": "leave", "devices": []},
                    "carol": {"membership": "leave", "devices": []}},
        "power_levels": {"alice": 100}})

    # 3: edits and redactions of others' messages; a second create.
    alice, bob = Device("alice"), Device("bob")
    r = "state3"
    create = alice.sign(r, "m.room.create", {"version": 1}, t0)
    steps = [(create, "accepted"),
             (alice.sign(r, "m.room.member", member(alice, "join", "alice", [alice.binding()]), t0), "accepted"),
             (alice.sign(r, "m.room.member", member(alice, "invite", "bob", [bob.binding(False)]), t0 + 1), "accepted"),
             (bob.sign(r, "m.room.member", member(bob, "join", "bob", [bob.binding()]), t0 + 2), "accepted")]
    bob_message = bob.sign(r, "m.room.message", {"msgtype": "text", "body": "bob's"}, t0 + 3)
    alice_message = alice.sign(r, "m.room.message", {"msgtype": "text", "body": "alice's"}, t0 + 4)
    steps += [(bob_message, "accepted"), (alice_message, "accepted"),
              (bob.sign(r, "m.room.edit", {"target_event_id": alice_message["event_id"], "body": "forged"}, t0 + 5), "rejected"),
              (bob.sign(r, "m.room.redaction", {"target_event_id": alice_message["event_id"]}, t0 + 6), "rejected"),
              (bob.sign(r, "m.room.edit", {"target_event_id": bob_message["event_id"], "body": "bob's, edited"}, t0 + 7), "accepted"),
              (alice.sign(r, "m.room.redaction", {"target_event_id": bob_message["event_id"], "reason": "moderation"}, t0 + 8), "accepted"),
              (bob.sign(r, "m.room.create", {"version": 1}, t0 + 9), "rejected"),
              (bob.sign(r, "m.room.redaction", {"target_event_id": create["event_id"]}, t0 + 10), "rejected")]
    scenario("only the sender edits, only the sender or a moderator redacts", steps, {
        "creator": "alice", "name": None, "topic": None,
        "members": {"alice": {"membership": "join", "devices": [alice.key]}, "bob": {"membership": "join", "devices": [bob.key]}},
        "power_levels": {"alice": 100}})

    # 4: order of arrival does not matter (the tests shuffle this one).
    alice, bob = Device("alice"), Device("bob")
    r = "state4"
    steps = [
        (alice.sign(r, "m.room.create", {"version": 1}, t0), "accepted"),
        (alice.sign(r, "m.room.member", member(alice, "join", "alice", [alice.binding()]), t0), "accepted"),
        (alice.sign(r, "m.room.member", member(alice, "invite", "bob", [bob.binding(False)]), t0 + 10), "accepted"),
        (bob.sign(r, "m.room.member", member(bob, "join", "bob", [bob.binding()]), t0 + 20), "accepted"),
        (bob.sign(r, "m.room.message", {"msgtype": "text", "body": "before the ban"}, t0 + 30), "accepted"),
        (alice.sign(r, "m.room.member", member(alice, "ban", "bob"), t0 + 40), "accepted"),
        (bob.sign(r, "m.room.message", {"msgtype": "text", "body": "after the ban"}, t0 + 50), "rejected"),
        (alice.sign(r, "m.room.name", {"name": "Quiet"}, t0 + 60), "accepted"),
    ]
    scenario("the ban applies by authorization order whatever order events arrive in", steps, {
        "creator": "alice", "name": "Quiet", "topic": None,
        "members": {"alice": {"membership": "join", "devices": [alice.key]}, "bob": {"membership": "ban", "devices": []}},
        "power_levels": {"alice": 100}, "shuffle": True})

    # 5: weak keys are refused in member events.
    alice = Device("alice")
    r = "state5"
    identity = (1).to_bytes(32, "little")
    steps = [
        (alice.sign(r, "m.room.create", {"version": 1}, t0), "accepted"),
        (alice.sign(r, "m.room.member", member(alice, "join", "alice", [alice.binding()]), t0), "accepted"),
        (alice.sign(r, "m.room.member", member(alice, "invite", "weak", [{"signing_key": b64(identity)}]), t0 + 1), "rejected"),
        (alice.sign(r, "m.room.member", member(alice, "invite", "weak",
                                               [{"signing_key": Device("weak").key, "exchange_key": b64(bytes(32))}]), t0 + 2), "rejected"),
    ]
    scenario("small-order signing keys and all-zero exchange keys are refused", steps, {
        "creator": "alice", "name": None, "topic": None,
        "members": {"alice": {"membership": "join", "devices": [alice.key]}}, "power_levels": {"alice": 100}})
    # 6: event ids are names, not identities (§6.5, §8.5): copies neither block nor hide the events they copy.
    alice, bob, mallory, eve = Device("alice"), Device("bob"), Device("mallory"), Device("eve")
    r = "state6"
    steps = [
        (alice.sign(r, "m.room.create", {"version": 1}, t0), "accepted"),
        (alice.sign(r, "m.room.member", member(alice, "join", "alice", [alice.binding()]), t0), "accepted"),
    ]
    invite_bob = alice.sign(r, "m.room.member", member(alice, "invite", "bob", [bob.binding(False)]), t0 + 2)
    steps += [
        # A stranger copies the id of the invite bob joins with: her copy is refused, the invite stands.
        (eve.sign(r, "m.room.member", member(eve, "invite", "eve", [eve.binding(False)]), copying=invite_bob), "rejected"),
        (invite_bob, "accepted"),
        (bob.sign(r, "m.room.member", member(bob, "join", "bob", [bob.binding()]), t0 + 3), "accepted"),
        (alice.sign(r, "m.room.member", member(alice, "invite", "mallory", [mallory.binding(False)]), t0 + 4), "accepted"),
        (mallory.sign(r, "m.room.member", member(mallory, "join", "mallory", [mallory.binding()]), t0 + 5), "accepted"),
    ]
    # Events are signed in the order listed, so every chain in the scenario is valid.
    bob_message = bob.sign(r, "m.room.message", {"msgtype": "text", "body": "bob's"}, t0 + 10)
    mallory_copy = mallory.sign(r, "m.room.message", {"msgtype": "text", "body": "mallory's, under bob's id"}, copying=bob_message)
    steps += [
        (bob_message, "accepted"),
        (mallory_copy, "accepted"),
        # Mallory (level 0) redacts the shared id: only her own copy is hidden (the redaction applies to it alone).
        (mallory.sign(r, "m.room.redaction", {"target_event_id": bob_message["event_id"]}, t0 + 11), "accepted"),
        # Bob's edit finds his own message among the two.
        (bob.sign(r, "m.room.edit", {"target_event_id": bob_message["event_id"], "body": "bob's, edited"}, t0 + 12), "accepted"),
        # Eve's copy is refused, but an id she copied is still a relation target: reacting to it is judged as usual.
        (bob.sign(r, "m.room.reaction", {"target_event_id": invite_bob["event_id"], "key": "+"}, t0 + 13), "rejected"),
    ]
    bob_second = bob.sign(r, "m.room.message", {"msgtype": "text", "body": "bob's second"}, t0 + 20)
    mallory_second_copy = mallory.sign(r, "m.room.message", {"msgtype": "text", "body": "another copy"}, copying=bob_second)
    steps += [
        (bob_second, "accepted"),
        (mallory_second_copy, "accepted"),
        # A moderator's redaction of a shared id hides every event carrying it.
        (alice.sign(r, "m.room.redaction", {"target_event_id": bob_second["event_id"], "reason": "both"}, t0 + 21), "accepted"),
    ]
    # Mallory's spam, then a copy of its id from her own device claiming to be alice's (refused: her key is not
    # alice's), so that alice's redaction would hide only "her own" copy: it still hides the spam, since only a device
    # the sender joined with makes an event the sender's own.
    spam = mallory.sign(r, "m.room.message", {"msgtype": "text", "body": "spam"}, t0 + 30)
    mallory.user = "alice"
    forged_twin = mallory.sign(r, "m.room.message", {"msgtype": "text", "body": "alice's, honest"}, copying=spam)
    mallory.user = "mallory"
    steps += [
        (spam, "accepted"),
        (forged_twin, "rejected"),
        (alice.sign(r, "m.room.redaction", {"target_event_id": spam["event_id"]}, t0 + 31), "accepted"),
    ]
    scenarios.append({
        "name": "events copying another device's event id neither block nor hide the events they copy",
        "events": [wire(e) for e, _ in steps], "verdicts": [v for _, v in steps],
        "redacted": [wire(e) for e in (mallory_copy, bob_second, mallory_second_copy, spam)],
        "state": {"creator": "alice", "name": None, "topic": None,
                  "members": {"alice": {"membership": "join", "devices": [alice.key]}, "bob": {"membership": "join", "devices": [bob.key]},
                              "mallory": {"membership": "join", "devices": [mallory.key]}},
                  "power_levels": {"alice": 100}, "shuffle": True}})
    # Priorities and forward references (§7.6): their schema decides the verdict; neither changes state.
    alice = Device("alice")
    r = "routing"
    founding = [alice.sign(r, "m.room.create", {"version": 1}, t0),
                alice.sign(r, "m.room.member", member(alice, "join", "alice", [alice.binding()]), t0)]
    original = alice.sign(r, "m.room.message", {"msgtype": "text", "body": "the original"}, t0 + 1)
    elsewhere = "elsewhere::20251009T085320.123Z::34f3715e-36de-43e2-9307-24174c0be1aa"

    def forward(**changes):
        reference = {"event_id": original["event_id"], "hash": event_hash(original), "sender": "alice"}
        reference.update(changes)
        return {k: v for k, v in reference.items() if v is not None}

    def message(**fields):
        return dict({"msgtype": "text", "body": "the original"}, **fields)

    steps = [
        (founding[0], "accepted"),
        (founding[1], "accepted"),
        (original, "accepted"),
        (alice.sign(r, "m.room.message", message(priority="urgent"), t0 + 2), "accepted"),
        (alice.sign(r, "m.room.message", message(priority="high"), t0 + 3), "accepted"),
        (alice.sign(r, "m.room.message", message(priority="low"), t0 + 4), "accepted"),
        # normal is written by leaving the field out: one form for each priority.
        (alice.sign(r, "m.room.message", message(priority="normal"), t0 + 5), "rejected"),
        (alice.sign(r, "m.room.message", message(priority="URGENT"), t0 + 6), "rejected"),
        (alice.sign(r, "m.room.message", message(priority=3), t0 + 7), "rejected"),
        (alice.sign(r, "m.room.message", message(forwarded=forward()), t0 + 8), "accepted"),
        # The original may be in another room: its id's room part is not this room's.
        (alice.sign(r, "m.room.message", message(forwarded=forward(event_id=elsewhere, sender="bob")), t0 + 9), "accepted"),
        (alice.sign(r, "m.room.message", message(forwarded=forward(), priority="high"), t0 + 10), "accepted"),
        (alice.sign(r, "m.room.message", message(forwarded=forward(hash=event_hash(original).upper())), t0 + 11), "rejected"),
        (alice.sign(r, "m.room.message", message(forwarded=forward(hash=event_hash(original)[:62])), t0 + 12), "rejected"),
        (alice.sign(r, "m.room.message", message(forwarded=forward(event_id="not an id")), t0 + 13), "rejected"),
        (alice.sign(r, "m.room.message", message(forwarded=forward(sender="Alice")), t0 + 14), "rejected"),
        (alice.sign(r, "m.room.message", message(forwarded=forward(sender=None)), t0 + 15), "rejected"),
        (alice.sign(r, "m.room.message", message(forwarded=forward(room_id=r)), t0 + 16), "rejected"),
        (alice.sign(r, "m.room.message", message(forwarded=original["event_id"]), t0 + 17), "rejected"),
        # An edit, a reaction or a notice of the forward is judged as usual; a priority is for messages only.
        (alice.sign(r, "m.room.reaction", {"target_event_id": original["event_id"], "key": "+", "priority": "high"}, t0 + 18), "rejected"),
    ]
    scenario("message priorities and forward references are accepted in their one form and refused in any other", steps,
             {"creator": "alice", "name": None, "topic": None,
              "members": {"alice": {"membership": "join", "devices": [alice.key]}}, "power_levels": {"alice": 100}})
    return {"description": "Room state resolution (docs/PROTOCOL.md §8): each scenario lists wire-form events, the "
                           "verdict each gets (`accepted` or `rejected`), and the resolved state after all of them: "
                           "creator, name, topic, each member's membership and joined device keys, and the users' power "
                           "levels. Scenarios marked `shuffle` must give the same result in any arrival order. When a "
                           "scenario has `redacted`, those (wire forms) are exactly the accepted timeline items that "
                           "are redacted (§9).",
            "scenarios": scenarios}


# ---------------------------------------------------------------- encryption (room keys, sealed content, key seals)

def hmac_sha256(key, data):
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(data)
    return mac.finalize()


def hkdf_sha256(ikm, salt, info, length):
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def room_key_id(key):
    return hmac_sha256(key, b"parley.room-key.id.v1").hex()


def room_aead_key(key):
    return hkdf_sha256(key, b"", b"parley.room-key.aead.v1", 32)


def message_key(key, aad):
    """The key of one parley.aes256gcm.v2 message: HKDF of the room key with the associated data in its info."""
    return hkdf_sha256(key, b"", b"parley.message-key.v2\n" + aad, 32)


def message_key_id(mk):
    """The commitment v2 content carries to its message key."""
    return sha256_hex(b"parley.message-key.id.v2\n" + mk)


def content_aead_key(key, aad, algorithm):
    return message_key(key, aad) if algorithm == "parley.aes256gcm.v2" else room_aead_key(key)


def pre_shared_key(secret, room_id):
    return hkdf_sha256(secret, room_id.encode("utf-8"), b"parley.psk.v1", 32)


def associated_data(envelope_fields):
    """The AAD of sealed content: a prefix and the canonical JSON of the envelope fields fixed before sealing."""
    fields = {k: envelope_fields[k] for k in ("event_id", "room_id", "timestamp_ms", "sender_id", "sender_key", "seq")}
    if envelope_fields.get("parent_event_id") is not None:
        fields["parent_event_id"] = envelope_fields["parent_event_id"]
    fields["prev_event_hash"] = envelope_fields.get("prev_event_hash")
    return b"parley.encrypted.v1\n" + canonical(fields)


def seal_content(key, nonce, aad, plaintext, algorithm="parley.aes256gcm.v1"):
    """The content of an m.room.encrypted event: AES-256-GCM under the epoch's AEAD key (v1) or the message key (v2),
    tag appended."""
    ciphertext = AESGCM(content_aead_key(key, aad, algorithm)).encrypt(nonce, plaintext, aad)
    content = {"algorithm": algorithm, "ciphertext": b64(ciphertext), "key_id": room_key_id(key), "nonce": b64(nonce)}
    if algorithm == "parley.aes256gcm.v2":
        content["message_key_id"] = message_key_id(message_key(key, aad))
    return content


# HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, from §4 (KEM), §5.1 (key
# schedule) and §5.2 (encryption), with the sender's ephemeral key given so the output is reproducible.
KEM_ID, KDF_ID, AEAD_ID = 0x0020, 0x0001, 0x0002
KEM_SUITE = b"KEM" + KEM_ID.to_bytes(2, "big")
HPKE_SUITE = b"HPKE" + KEM_ID.to_bytes(2, "big") + KDF_ID.to_bytes(2, "big") + AEAD_ID.to_bytes(2, "big")


def labeled_extract(suite, salt, label, ikm):
    return hmac_sha256(salt, b"HPKE-v1" + suite + label + ikm)


def labeled_expand(suite, prk, label, info, length):
    labeled_info = length.to_bytes(2, "big") + b"HPKE-v1" + suite + label + info
    return HKDFExpand(algorithm=hashes.SHA256(), length=length, info=labeled_info).derive(prk)


def x25519_public(private):
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def x25519(private, public):
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
    return X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(public))


def hpke_encap(pk_r, sk_e):
    """DHKEM Encap (§4.1) with a given ephemeral private key: (shared_secret, enc)."""
    enc = x25519_public(sk_e)
    dh = x25519(sk_e, pk_r)
    kem_context = enc + pk_r
    eae_prk = labeled_extract(KEM_SUITE, b"", b"eae_prk", dh)
    return labeled_expand(KEM_SUITE, eae_prk, b"shared_secret", kem_context, 32), enc


def hpke_key_schedule(shared_secret, info):
    """KeySchedule (§5.1) in base mode (empty psk and psk_id): (key, base_nonce)."""
    psk_id_hash = labeled_extract(HPKE_SUITE, b"", b"psk_id_hash", b"")
    info_hash = labeled_extract(HPKE_SUITE, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash
    secret = labeled_extract(HPKE_SUITE, shared_secret, b"secret", b"")
    return labeled_expand(HPKE_SUITE, secret, b"key", context, 32), labeled_expand(HPKE_SUITE, secret, b"base_nonce", context, 12)


def hpke_seal_base(pk_r, sk_e, info, aad, plaintext):
    """SetupBaseS with a given skE, then the first Seal (sequence number 0, so the nonce is base_nonce)."""
    shared_secret, enc = hpke_encap(pk_r, sk_e)
    key, base_nonce = hpke_key_schedule(shared_secret, info)
    return {"shared_secret": shared_secret, "key": key, "base_nonce": base_nonce, "enc": enc,
            "sealed": AESGCM(key).encrypt(base_nonce, plaintext, aad)}


def check_hpke():
    """This HPKE against the first encryption of RFC 9180's vector for the same suite (docs/vectors/hpke_rfc9180.json)."""
    sk_e = bytes.fromhex("179d4b53b6365c45b600c4163b61d95cbc2f4d9e36f1695558dce265ab8bab11")
    pk_r = bytes.fromhex("430f4b9859665145a6b1ba274024487bd66f03a2dd577d7753c68d7d7d00c00c")
    result = hpke_seal_base(pk_r, sk_e, bytes.fromhex("4f6465206f6e2061204772656369616e2055726e"), b"Count-0",
                            b"Beauty is truth, truth beauty")
    assert result["enc"].hex() == "6c93e09869df3402d7bf231bf540fadd35cd56be14f97178f0954db94b7fc256"
    assert result["shared_secret"].hex() == "3101c54c3a4f87439eaac080699ed9bbcc726ffe44e860c0424ccb7e3e2ead7b"
    assert result["key"].hex() == "f50b0609186798729ed0564b36ef2ef8044f1f9d05636874d1f46c819c7a669f"
    assert result["base_nonce"].hex() == "151d9929e2449747889bc923"
    assert result["sealed"].hex() == ("e5d84cd531cfb583096e7cfa9641bd3079cf3a91cda813c52deb5f512be99319"
                                      "80a41de125a925cdad859d5b7a")


SEALABLE_EXCLUDED = {"m.room.create", "m.room.member", "m.room.power_levels", "m.room.name", "m.room.topic",
                     "m.room.encryption", "m.room.key", "m.room.encrypted", "m.room.redaction", "m.room.key_request",
                     "m.room.key_forward"}


PADDING_BLOCK = 256


def padded_plaintext(content, type_):
    """The plaintext a sender seals (§14.3): the fewest spaces of padding that make its length a multiple of 256."""
    for spaces in range(PADDING_BLOCK):
        plaintext = canonical({"content": content, "padding": " " * spaces, "type": type_})
        if len(plaintext) % PADDING_BLOCK == 0:
            return plaintext
    raise AssertionError("no padding fits")


def reference_open(key, aad, content):
    """What opening sealed content gives under the rules, as an error code (None: it opens); checks the verdicts."""
    if content["key_id"] != room_key_id(key):
        return "key_mismatch"
    if content["algorithm"] == "parley.aes256gcm.v2" and content["message_key_id"] != message_key_id(message_key(key, aad)):
        return "key_mismatch"
    try:
        plaintext = AESGCM(content_aead_key(key, aad, content["algorithm"])).decrypt(
            base64.b64decode(content["nonce"]), base64.b64decode(content["ciphertext"]), aad)
    except Exception:
        return "decrypt_failed"

    try:
        value = json.loads(plaintext.decode("utf-8"), object_pairs_hook=no_duplicate_keys)
    except ValueError:
        return "bad_plaintext"
    import re
    if isinstance(value, dict) and set(value) == {"content", "padding", "type"}:
        if not isinstance(value["padding"], str) or value["padding"].strip(" "):
            return "bad_plaintext"
        value = {"content": value["content"], "type": value["type"]}
    if (not isinstance(value, dict) or set(value) != {"content", "type"} or not isinstance(value["content"], dict)
            or not isinstance(value["type"], str) or not re.fullmatch(r"[a-z][a-z0-9._]{0,127}", value["type"])
            or value["type"] in SEALABLE_EXCLUDED):
        return "bad_plaintext"
    # A sealed message's priority travels on the envelope only (§14.3).
    if value["type"] == "m.room.message" and "priority" in value["content"]:
        return "bad_plaintext"
    return None


def reference_open_seal(case):
    """Opening a key seal as a recipient (DHKEM Decap, §4.1), as an error code (None: it opens to the named key)."""
    enc = base64.b64decode(case["enc"])
    u = int.from_bytes(enc, "little")
    if enc[31] & 0x80 or u >= P or enc.hex() in x25519_low_order():
        return "weak_key"
    sk_r = bytes.fromhex(case["recipient_private_key"])
    pk_r = x25519_public(sk_r)
    eae_prk = labeled_extract(KEM_SUITE, b"", b"eae_prk", x25519(sk_r, enc))
    shared_secret = labeled_expand(KEM_SUITE, eae_prk, b"shared_secret", enc + pk_r, 32)
    info = key_seal_info(case["room_id"], case["key_id"], case["sender_key"], case["recipient_key"])
    key, base_nonce = hpke_key_schedule(shared_secret, info)
    try:
        opened = AESGCM(key).decrypt(base_nonce, base64.b64decode(case["sealed"]), b"")
    except Exception:
        return "open_failed"
    return None if room_key_id(opened) == case["key_id"] else "key_mismatch"


def key_seal_info(room_id, key_id, sender_key, recipient_key):
    return b"parley.room-key.v1\n" + canonical(
        {"key_id": key_id, "recipient_key": recipient_key, "room_id": room_id, "sender_key": sender_key})


def vector_bytes(label, count=32):
    return hashlib.sha256(("parley vector " + label).encode()).digest()[:count]


def exchange_private(device_name):
    return hashlib.sha256(("parley vector exchange key " + device_name).encode()).digest()


def encryption_vectors():
    check_hpke()
    alice, bob, carol = Device("alice"), Device("bob"), Device("carol")
    room = "secret"

    # (a) Room keys and pre-shared keys.
    key_inputs = [("all-zero key bytes", bytes(32)), ("bytes 0 to 31", bytes(range(32))),
                  ("a random-looking key", vector_bytes("room key 1")), ("another random-looking key", vector_bytes("room key 2"))]
    room_keys = [{"name": name, "key": key.hex(), "key_id": room_key_id(key), "aead_key": room_aead_key(key).hex()}
                 for name, key in key_inputs]
    secret = vector_bytes("invite secret")
    pre_shared = []
    for name, secret_bytes, room_id in [("an invite secret in room secret", secret, room),
                                        ("the same secret in another room gives an unrelated key", secret, "other-room"),
                                        ("an all-zero secret", bytes(32), room)]:
        key = pre_shared_key(secret_bytes, room_id)
        pre_shared.append({"name": name, "secret": secret_bytes.hex(), "room_id": room_id, "key": key.hex(),
                           "key_id": room_key_id(key)})
    epoch_key = vector_bytes("room key 1")
    other_key = vector_bytes("room key 2")
    psk_key = bytes.fromhex(pre_shared[0]["key"])

    # (b) Sealed content. Envelopes are those of events alice could sign; the content is not signed here, only sealed.
    t0 = 1_760_000_000_000

    def envelope_of(device, seq, ts, prev, parent=None):
        fields = {"event_id": event_id(room, ts, vector_bytes(f"event id {seq}", 16)), "room_id": room,
                  "timestamp_ms": ts, "sender_id": device.user, "sender_key": device.key, "seq": seq}
        if parent is not None:
            fields["parent_event_id"] = parent
        fields["prev_event_hash"] = prev
        return fields

    first = envelope_of(alice, 1, t0, None)
    with_parent = envelope_of(alice, 5, t0 + 4_000, sha256_hex(b"event 4"), parent=first["event_id"])
    without_parent = envelope_of(alice, 6, t0 + 5_123, sha256_hex(b"event 5"))
    sealed_inputs = [
        ("a device's first event: seq 1, prev_event_hash null", first, "m.room.message",
         {"msgtype": "text", "body": "hello"}, epoch_key, vector_bytes("nonce 1", 12)),
        ("a reply: parent_event_id present", with_parent, "m.room.message",
         {"msgtype": "text", "body": "héllo \"world\"\n😀"}, epoch_key, vector_bytes("nonce 2", 12)),
        ("a reaction without parent_event_id, sealed under a pre-shared key", without_parent, "m.room.reaction",
         {"target_event_id": first["event_id"], "key": "👍"}, psk_key, vector_bytes("nonce 3", 12)),
        ("an empty content object, all-zero nonce", without_parent, "m.room.message",
         {"msgtype": "notice", "body": ""}, other_key, bytes(12)),
    ]
    sealed = []
    for algorithm in ["parley.aes256gcm.v1", "parley.aes256gcm.v2"]:
        for name, env, type_, content, key, nonce in sealed_inputs:
            aad = associated_data(env)
            plaintext = padded_plaintext(content, type_)
            case = {"name": f"{name} ({algorithm})", "algorithm": algorithm, "envelope": env, "type": type_,
                    "content": content, "key": key.hex(), "nonce": nonce.hex(), "associated_data": aad.hex(),
                    "plaintext": plaintext.hex(),
                    "encrypted_content": canonical(seal_content(key, nonce, aad, plaintext, algorithm)).decode("utf-8")}
            if algorithm == "parley.aes256gcm.v2":
                case["message_key"] = message_key(key, aad).hex()
                case["message_key_id"] = message_key_id(message_key(key, aad))
            sealed.append(case)

    # (d, content) Sealed content that must not open, with the error code.
    invalid_content = []

    def bad(name, key, aad, content, code):
        invalid_content.append({"name": name, "key": key.hex(), "associated_data": aad.hex(),
                                "encrypted_content": canonical(content).decode("utf-8"), "error": code})

    base_aad = associated_data(with_parent)
    base_nonce = vector_bytes("nonce 2", 12)
    base_plain = padded_plaintext({"msgtype": "text", "body": "héllo"}, "m.room.message")
    good = seal_content(epoch_key, base_nonce, base_aad, base_plain)
    raw = base64.b64decode(good["ciphertext"])

    def flipped(data, index, bit=0x01):
        changed = bytearray(data)
        changed[index] ^= bit
        return bytes(changed)

    bad("the unaltered content opens (control case)", epoch_key, base_aad, good, None)
    bad("a flipped bit in the nonce", epoch_key, base_aad, dict(good, nonce=b64(flipped(base_nonce, 0))), "decrypt_failed")
    bad("a flipped bit in the last nonce byte", epoch_key, base_aad, dict(good, nonce=b64(flipped(base_nonce, 11, 0x80))),
        "decrypt_failed")
    bad("a flipped bit in the ciphertext", epoch_key, base_aad, dict(good, ciphertext=b64(flipped(raw, 0))), "decrypt_failed")
    bad("a flipped bit in the tag", epoch_key, base_aad, dict(good, ciphertext=b64(flipped(raw, len(raw) - 1))),
        "decrypt_failed")
    bad("the tag cut to 15 bytes", epoch_key, base_aad, dict(good, ciphertext=b64(raw[:-1])), "decrypt_failed")
    bad("a flipped bit in the associated data", epoch_key, flipped(base_aad, len(base_aad) - 3), good, "decrypt_failed")
    bad("content moved to another event (another event id)", epoch_key, associated_data(without_parent), good,
        "decrypt_failed")
    bad("the envelope's seq altered", epoch_key, associated_data(dict(with_parent, seq=7)), good, "decrypt_failed")
    bad("the envelope's parent_event_id removed", epoch_key,
        associated_data({k: v for k, v in with_parent.items() if k != "parent_event_id"}), good, "decrypt_failed")
    bad("the envelope's prev_event_hash set to null", epoch_key, associated_data(dict(with_parent, prev_event_hash=None)),
        good, "decrypt_failed")
    bad("opened with another key than the one named", other_key, base_aad, good, "key_mismatch")
    good_v2 = seal_content(epoch_key, base_nonce, base_aad, base_plain, "parley.aes256gcm.v2")
    bad("v2 content opens (control case)", epoch_key, base_aad, good_v2, None)
    bad("v2 content moved to another event: its message key is not the one it names", epoch_key,
        associated_data(without_parent), good_v2, "key_mismatch")
    bad("v2 content moved to another event, naming that event's message key", epoch_key, associated_data(without_parent),
        dict(good_v2, message_key_id=message_key_id(message_key(epoch_key, associated_data(without_parent)))),
        "decrypt_failed")
    bad("v2 content naming another message key", epoch_key, base_aad,
        dict(good_v2, message_key_id=message_key_id(message_key(other_key, base_aad))), "key_mismatch")
    bad("v2 content relabelled v1", epoch_key, base_aad,
        {k: v for k, v in dict(good_v2, algorithm="parley.aes256gcm.v1").items() if k != "message_key_id"}, "decrypt_failed")
    bad("v1 content relabelled v2", epoch_key, base_aad,
        dict(good, algorithm="parley.aes256gcm.v2", message_key_id=message_key_id(message_key(epoch_key, base_aad))),
        "decrypt_failed")
    bad("key_id changed to name the key it is opened with", other_key, base_aad, dict(good, key_id=room_key_id(other_key)),
        "decrypt_failed")
    bad("a priority on the envelope is outside the ciphertext: it opens", epoch_key, base_aad, dict(good, priority="urgent"), None)
    bad("a plaintext without padding opens (padding is optional to readers)", epoch_key, base_aad,
        seal_content(epoch_key, vector_bytes("unpadded nonce", 12), base_aad,
                     canonical({"content": {"msgtype": "text", "body": "héllo"}, "type": "m.room.message"})), None)
    bad("a plaintext with more padding than a sender uses opens", epoch_key, base_aad,
        seal_content(epoch_key, vector_bytes("long padding nonce", 12), base_aad,
                     canonical({"content": {"msgtype": "text", "body": "héllo"}, "padding": " " * 1000,
                                "type": "m.room.message"})), None)
    bad_plaintexts = [
        ("padding with a character other than a space",
         canonical({"content": {"msgtype": "text", "body": "x"}, "padding": "  x ", "type": "m.room.message"})),
        ("padding that is not a string", canonical({"content": {"msgtype": "text", "body": "x"}, "padding": 3, "type": "m.room.message"})),
        ("padding and a fourth field",
         canonical({"content": {}, "extra": 1, "padding": "", "type": "m.room.message"})),
        ("a sealed m.room.member (state is never sealed)",
         canonical({"content": {"membership": "leave", "user_id": "bob"}, "type": "m.room.member"})),
        ("a sealed m.room.power_levels", canonical({"content": {"users": {"alice": 100}}, "type": "m.room.power_levels"})),
        ("a sealed m.room.key", canonical({"content": {}, "type": "m.room.key"})),
        ("a sealed m.room.encrypted", canonical({"content": good, "type": "m.room.encrypted"})),
        ("a sealed m.room.redaction", canonical({"content": {"target_event_id": first["event_id"]}, "type": "m.room.redaction"})),
        ("a sealed m.room.key_request", canonical({"content": {"events": [{"sender_key": alice.key, "seq": 1}]},
                                                   "type": "m.room.key_request"})),
        ("a sealed m.room.key_forward", canonical({"content": {}, "type": "m.room.key_forward"})),
        ("a sealed m.room.message with its priority inside (it goes on the envelope)",
         canonical({"content": {"msgtype": "text", "body": "x", "priority": "urgent"}, "type": "m.room.message"})),
        ("a plaintext with a third field", canonical({"content": {}, "extra": 1, "type": "m.room.message"})),
        ("a plaintext without type", canonical({"content": {"msgtype": "text", "body": "x"}})),
        ("a plaintext whose content is not an object", canonical({"content": "hello", "type": "m.room.message"})),
        ("a plaintext whose type is not a string", canonical({"content": {}, "type": 1})),
        ("a plaintext whose type is not a valid event type", canonical({"content": {}, "type": "M.Room.Message"})),
        ("a plaintext that is an array", canonical([{"content": {}, "type": "m.room.message"}])),
        ("a plaintext that is not JSON", b"hello, world"),
        ("a plaintext with duplicate keys", b'{"content":{},"type":"m.room.message","type":"m.room.message"}'),
    ]
    for index, (name, plaintext) in enumerate(bad_plaintexts):
        bad(name, epoch_key, base_aad, seal_content(epoch_key, vector_bytes(f"bad plaintext nonce {index}", 12), base_aad,
                                                    plaintext), "bad_plaintext")

    # (c) Key seals: the epoch key sealed by alice to bob's and carol's devices, each with a fixed ephemeral key.
    key_id = room_key_id(epoch_key)
    key_seals = []
    for index, (recipient, name) in enumerate([(bob, "bob"), (carol, "carol")]):
        sk_r = exchange_private(name)
        sk_e = vector_bytes(f"ephemeral key {index + 1}")
        info = key_seal_info(room, key_id, alice.key, recipient.key)
        result = hpke_seal_base(x25519_public(sk_r), sk_e, info, b"", epoch_key)
        key_seals.append({"name": f"the epoch key sealed by alice to {name}", "room_id": room, "key": epoch_key.hex(),
                          "key_id": key_id, "sender_key": alice.key, "recipient_key": recipient.key,
                          "recipient_exchange_key": b64(recipient.exchange), "recipient_private_key": sk_r.hex(),
                          "ephemeral_private_key": sk_e.hex(), "info": info.hex(),
                          "shared_secret": result["shared_secret"].hex(), "hpke_key": result["key"].hex(),
                          "base_nonce": result["base_nonce"].hex(), "enc": b64(result["enc"]), "sealed": b64(result["sealed"])})
    room_key_content = canonical({"algorithm": "parley.hpke.v1", "key_id": key_id,
                                  "recipients": [{"enc": s["enc"], "sealed": s["sealed"], "signing_key": s["recipient_key"]}
                                                 for s in key_seals]}).decode("utf-8")

    # (d, seals) Key seals that must not open.
    to_bob = key_seals[0]
    invalid_seals = []

    def bad_seal(name, code, private=None, **changes):
        case = {"name": name, "room_id": room, "key_id": key_id, "sender_key": alice.key,
                "recipient_key": to_bob["recipient_key"], "recipient_private_key": private or to_bob["recipient_private_key"],
                "enc": to_bob["enc"], "sealed": to_bob["sealed"], "error": code}
        case.update(changes)
        invalid_seals.append(case)

    bad_seal("the unaltered seal opens (control case)", None)
    bad_seal("an all-zero enc", "weak_key", enc=b64(bytes(32)))
    bad_seal("enc of order 8", "weak_key", enc=b64(bytes.fromhex(
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")))
    bad_seal("enc u = 1", "weak_key", enc=b64((1).to_bytes(32, "little")))
    bad_seal("enc u = p - 1", "weak_key", enc=b64((P - 1).to_bytes(32, "little")))
    bad_seal("enc not canonical (u = p)", "weak_key", enc=b64(P.to_bytes(32, "little")))
    bad_seal("enc with the top bit set", "weak_key", enc=b64(bytes(base64.b64decode(to_bob["enc"])[:31])
                                                              + bytes([base64.b64decode(to_bob["enc"])[31] | 0x80])))
    bad_seal("a key sealed for another device (carol's entry opened with bob's key)", "open_failed",
             recipient_key=key_seals[1]["recipient_key"], enc=key_seals[1]["enc"], sealed=key_seals[1]["sealed"])
    bad_seal("bob's entry opened with carol's private key", "open_failed",
             private=key_seals[1]["recipient_private_key"])
    bad_seal("opened naming another room", "open_failed", room_id="other-room")
    bad_seal("opened naming another sender", "open_failed", sender_key=carol.key)
    bad_seal("a flipped bit in the sealed key", "open_failed",
             sealed=b64(flipped(base64.b64decode(to_bob["sealed"]), 5)))
    bad_seal("a flipped bit in enc", "open_failed", enc=b64(flipped(base64.b64decode(to_bob["enc"]), 1)))
    # A seal that opens, of a key other than the one key_id names (a sender lying about the key).
    lie_info = key_seal_info(room, key_id, alice.key, bob.key)
    lie = hpke_seal_base(bob_exchange := x25519_public(exchange_private("bob")), vector_bytes("ephemeral key 9"), lie_info,
                         b"", other_key)
    assert bob_exchange == bob.exchange
    bad_seal("a sealed key that is not the key key_id names", "key_mismatch", enc=b64(lie["enc"]), sealed=b64(lie["sealed"]))

    for case in invalid_content:
        expected = reference_open(bytes.fromhex(case["key"]), bytes.fromhex(case["associated_data"]),
                                  json.loads(case["encrypted_content"]))
        assert expected == case["error"], (case["name"], expected)
    for case in invalid_seals:
        assert reference_open_seal(case) == case["error"], case["name"]
    for case in key_seals:
        assert reference_open_seal(case) is None, case["name"]

    # (e) Key forwards: the message keys of two v2 events, sealed by bob to carol's device with a fixed ephemeral key.
    forwarded = [(first, vector_bytes("nonce 1", 12)), (with_parent, vector_bytes("nonce 2", 12))]
    forward_plain = canonical({"keys": [{"key": b64(message_key(epoch_key, associated_data(env))),
                                         "sender_key": env["sender_key"], "seq": env["seq"]} for env, _ in forwarded]})
    forward_info = b"parley.key-forward.v1\n" + canonical(
        {"recipient_key": carol.key, "room_id": room, "sender_key": bob.key})
    sk_e = vector_bytes("forward ephemeral key")
    forward = hpke_seal_base(x25519_public(exchange_private("carol")), sk_e, forward_info, b"", forward_plain)
    key_forwards = [{"name": "bob forwards carol the keys of two of alice's messages", "room_id": room,
                     "sender_key": bob.key, "recipient_key": carol.key, "recipient_private_key": exchange_private("carol").hex(),
                     "ephemeral_private_key": sk_e.hex(), "info": forward_info.hex(), "plaintext": forward_plain.hex(),
                     "keys": [{"sender_key": env["sender_key"], "seq": env["seq"], "associated_data": associated_data(env).hex(),
                               "message_key": message_key(epoch_key, associated_data(env)).hex(),
                               "message_key_id": message_key_id(message_key(epoch_key, associated_data(env)))}
                              for env, _ in forwarded],
                     "content": canonical({"algorithm": "parley.hpke.v1", "enc": b64(forward["enc"]), "recipient": carol.key,
                                           "sealed": b64(forward["sealed"])}).decode("utf-8")}]

    settings = [
        {"name": "epoch keys, history shared",
         "content": canonical({"algorithm": "parley.epochs.v1", "history": "shared",
                               "rotation_period_ms": 7 * 24 * 3_600_000}).decode("utf-8")},
        {"name": "a pre-shared key, history from join",
         "content": canonical({"algorithm": "parley.psk.v1", "history": "joined",
                               "key_id": pre_shared[0]["key_id"]}).decode("utf-8")},
    ]
    return {"description": "Encryption: room keys (key_id = HMAC-SHA256(key, \"parley.room-key.id.v1\"), AEAD key = "
                           "HKDF-SHA256(key, salt empty, info \"parley.room-key.aead.v1\"); pre-shared keys = "
                           "HKDF-SHA256(secret, salt room_id, info \"parley.psk.v1\")), content sealed with AES-256-GCM "
                           "under the envelope as associated data, room keys sealed to devices with HPKE base mode "
                           "(DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM) with a fixed ephemeral key, and "
                           "cases that must not open with the error code expected (null: it opens); v2 content is "
                           "sealed under a message key = HKDF-SHA256(key, salt empty, info \"parley.message-key.v2\\n\" "
                           "+ associated data) and names it by message_key_id = SHA-256(\"parley.message-key.id.v2\\n\" "
                           "+ message key), and key forwards seal message keys with the same HPKE suite. Bytes are hex "
                           "except where the wire form is base64 (enc, sealed, keys named as in events).",
            "room_keys": room_keys, "pre_shared_keys": pre_shared, "sealed_contents": sealed,
            "invalid_contents": invalid_content, "key_seals": key_seals, "room_key_content": room_key_content,
            "invalid_key_seals": invalid_seals, "encryption_settings": settings, "key_forwards": key_forwards}


# ---------------------------------------------------------------- codes and room locations (§13.5, §14.8)

B64URL_SYMBOLS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
INVITE_MAX_BYTES = 20480
LOCATION_MAX_BYTES = 1024
MAX_LOCATIONS = 16


def b64url(data):
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def code_text(prefix, value):
    return prefix + b64url(canonical(value))


def reference_code_object(prefix, text, max_bytes):
    """§13.5.1, read as written there: the object, or the error code."""
    if not text.startswith(prefix):
        return "wrong_prefix"
    body = text[len(prefix):]
    if len(body.encode("utf-8")) > (4 * max_bytes + 2) // 3:
        return "too_large"
    if any(c not in B64URL_SYMBOLS for c in body) or len(body) % 4 == 1:
        return "not_base64url"
    data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    if b64url(data) != body:
        return "not_base64url"

    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=no_duplicate_keys)
    except ValueError:
        return "not_json"
    return value if isinstance(value, dict) else "not_json"


def is_identifier(text):
    import re
    return (isinstance(text, str) and re.fullmatch(r"[a-z0-9._=-]{1,64}", text) is not None
            and not text.startswith(".") and ".." not in text)


def is_loopback(authority):
    """HOST[:PORT] whose host is localhost, an IPv4 address in 127.0.0.0/8 or [::1]."""
    host = authority.rsplit(":", 1)[0] if not authority.startswith("[") else authority[:authority.index("]") + 1]
    if host in ("localhost", "[::1]"):
        return True
    parts = host.split(".")
    return len(parts) == 4 and parts[0] == "127" and all(p.isdigit() and int(p) <= 255 for p in parts)


def is_host_and_port(text, port_required):
    import re
    match = re.fullmatch(r"(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::([1-9][0-9]{0,4}))" + ("" if port_required else "?"), text)
    return match is not None and (match.group(1) is None or int(match.group(1)) <= 65535)


def reference_location(value):
    """§13.5.2: the location as a reader of this version keeps it, or the error code."""
    import re
    if not isinstance(value, dict) or len(canonical(value)) > LOCATION_MAX_BYTES:
        return "invalid_location"
    kind = value.get("kind")
    if not isinstance(kind, str) or not re.fullmatch(r"[a-z][a-z0-9._-]{0,31}", kind):
        return "invalid_location"
    if kind == "bucket":
        url = value.get("url")
        if not isinstance(url, str) or not url or any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
            return "invalid_location"
        return {"kind": kind, "url": url}
    if kind == "relay":
        url = value.get("url")
        if not isinstance(url, str) or any(not 0x21 <= ord(c) <= 0x7E or c == "#" for c in url):
            return "invalid_location"
        match = re.fullmatch(r"(wss|https|http)://([^/?]*)(?:[/?].*)?", url)
        if match is None or not is_host_and_port(match.group(2), False):
            return "invalid_location"
        # Plain http only to this machine: a relay on the loopback address, for development and tests.
        if match.group(1) == "http" and not is_loopback(match.group(2)):
            return "invalid_location"
        return {"kind": kind, "url": url}
    if kind == "peer":
        address = value.get("address")
        if not isinstance(address, str) or not is_host_and_port(address, True):
            return "invalid_location"
        return {"address": address, "kind": kind}
    return value


def reference_locations(value):
    if not isinstance(value, list):
        return "invalid_member"
    if not value:
        return "no_locations"
    if len(value) > MAX_LOCATIONS:
        return "too_many_locations"
    read = [reference_location(entry) for entry in value]
    errors = [entry for entry in read if isinstance(entry, str)]
    return errors[0] if errors else read


def reference_room_and_creator(value):
    import re
    if not is_identifier(value.get("room_id")):
        return "invalid_member"
    creator = value.get("creator")
    if not isinstance(creator, str) or not re.fullmatch(r"[0-9a-f]{64}", creator):
        return "invalid_member"
    return None


def reference_room_locations(value, bucket_form):
    """A room's locations: the list in `locations`, or, in the earlier form (version 1 invite codes, version 2 link
    codes), the one bucket its `bucket` names."""
    if not bucket_form:
        return reference_locations(value.get("locations"))
    if not isinstance(value.get("bucket"), str):
        return "invalid_member"
    location = reference_location({"kind": "bucket", "url": value["bucket"]})
    return location if isinstance(location, str) else [location]


def reference_invite(text):
    """§13.5.3: what a reader takes from an invite code, or the error code."""
    value = reference_code_object("parley-invite:", text, INVITE_MAX_BYTES)
    if isinstance(value, str):
        return value
    version = value.get("v")
    if type(version) is not int or version not in (1, 2):
        return "unsupported_version"
    problem = reference_room_and_creator(value)
    if problem:
        return problem
    psk = value.get("psk")
    if psk is not None:
        if not isinstance(psk, str):
            return "invalid_member"
        try:
            secret = base64.b64decode(psk, validate=True)
        except ValueError:
            return "invalid_member"
        if len(secret) != 32 or b64(secret) != psk:
            return "invalid_member"
    needs_passphrase = value.get("psk_passphrase", False)
    if type(needs_passphrase) is not bool or (psk is not None and needs_passphrase):
        return "invalid_member"
    locations = reference_room_locations(value, version == 1)
    if isinstance(locations, str):
        return locations
    return {"version": version, "room_id": value["room_id"], "creator": value["creator"], "locations": locations,
            "psk": psk, "psk_passphrase": needs_passphrase}


def reference_linked_room(value, version):
    """One room of a link code's payload (§14.8): version 3's `rooms` entry, version 2's `bucket_rooms` entry."""
    if not isinstance(value, dict):
        return "invalid_member"
    problem = reference_room_and_creator(value)
    if problem:
        return problem
    locations = reference_room_locations(value, version == 2)
    if isinstance(locations, str):
        return locations
    return {"creator": value["creator"], "locations": locations, "room_id": value["room_id"]}


def link_code(linker, recipient, payload, version, ephemeral):
    """A link code of `version` (2 or 3): the payload signed by `linker`, sealed with HPKE to `recipient`'s exchange
    key from a fixed ephemeral key."""
    label = f"parley.link.v{version}\n".encode()
    signed = dict(payload, linked_by=linker.key, to=recipient.key)
    signed["signature"] = b64(linker.private.sign(label + canonical(signed)))
    sealed = hpke_seal_base(recipient.exchange, ephemeral, label + recipient.key.encode(), b"", canonical(signed))
    return code_text("parley-link:", {"enc": b64(sealed["enc"]), "sealed": b64(sealed["sealed"]), "to": recipient.key, "v": version})


def code_vectors():
    creator = sha256_hex(Device("alice").public)
    fill = "0" * 64
    psk = b64(vector_bytes("invite psk"))

    def invite(value):
        return code_text("parley-invite:", value)

    def v2(locations, **extra):
        return dict({"creator": creator, "locations": locations, "room_id": "team", "v": 2}, **extra)

    bucket = {"kind": "bucket", "url": "s3://chat-bucket/team/?endpoint=https%3A%2F%2Fs3.example.net&region=eu-west-1"}
    folder = {"kind": "bucket", "url": "file:///srv/chat/bücket"}
    relay = {"kind": "relay", "url": "wss://relay.example.net:8443/parley"}
    peer = {"address": "[2001:db8::7]:7000", "kind": "peer"}
    pigeon = {"kind": "carrier-pigeon", "loft": {"name": "north", "birds": [1, 2]}}

    valid = []

    def add_valid(name, text, note=None):
        expected = reference_invite(text)
        assert not isinstance(expected, str), (name, expected)
        case = dict({"name": name, "text": text}, **expected)
        if note:
            case["note"] = note
        valid.append(case)

    add_valid("version 1, as written before locations: one bucket",
              invite({"bucket": "s3://chat-bucket/team/", "creator": creator, "room_id": "team", "v": 1}))
    add_valid("version 1 with a pre-shared secret",
              invite({"bucket": "file:///srv/chat", "creator": creator, "psk": psk, "room_id": "vault", "v": 1}))
    add_valid("version 1 of a passphrase room, with a member the reader does not know",
              invite({"bucket": "file:///srv/chat", "creator": creator, "psk_passphrase": True, "room_id": "vault",
                      "v": 1, "x-later": "ignored"}))
    add_valid("version 2 with one bucket", invite(v2([bucket])))
    add_valid("version 2 with two buckets, a relay, a peer and a kind this version does not know",
              invite(v2([relay, bucket, pigeon, folder, peer], psk=psk)),
              "the reference client reaches the room at the first bucket it can use (here the second location)")
    add_valid("version 2 listing only a relay and a peer (valid: a reader that uses neither says so when joining)",
              invite(v2([{"kind": "relay", "url": "https://relay.example.net/"}, {"address": "192.0.2.7:65535", "kind": "peer"}])))
    add_valid("version 2 whose locations carry members the reader does not know, and psk_passphrase false",
              invite(v2([dict(bucket, priority=1), dict(relay, key="x")], psk_passphrase=False, later={"a": 1})))
    add_valid("version 2 with the most locations a code may list",
              invite(v2([{"kind": "bucket", "url": f"file:///srv/chat/{i}"} for i in range(MAX_LOCATIONS)])))
    add_valid("relay and peer addresses at their edges",
              invite(v2([{"kind": "relay", "url": "https://[::1]"}, {"kind": "relay", "url": "wss://h?room=team"},
                         {"kind": "relay", "url": "http://127.0.0.1:8470"}, {"kind": "relay", "url": "http://localhost/parley"},
                         {"address": "Phone.Local:1", "kind": "peer"}, {"address": "a" * 253 + ":80", "kind": "peer"}])))

    # The largest object an invite code may hold: padding in a member the reader ignores.
    at_limit = v2([bucket], pad="")
    at_limit["pad"] = "p" * (INVITE_MAX_BYTES - len(canonical(at_limit)))
    assert len(canonical(at_limit)) == INVITE_MAX_BYTES
    add_valid("an object of exactly 20,480 bytes", invite(at_limit))

    invalid = []

    def add_invalid(name, text, error):
        assert reference_invite(text) == error, (name, reference_invite(text), error)
        invalid.append({"name": name, "text": text, "error": error})

    good = invite(v2([bucket]))
    body = good[len("parley-invite:"):]
    add_invalid("another kind of code's prefix", "parley-link:" + body, "wrong_prefix")
    add_invalid("the prefix in capitals", "Parley-invite:" + body, "wrong_prefix")
    add_invalid("no prefix", body, "wrong_prefix")
    over = v2([bucket], pad="")
    over["pad"] = "p" * (INVITE_MAX_BYTES + 1 - len(canonical(over)))
    add_invalid("an object of 20,481 bytes", invite(over), "too_large")
    add_invalid("far too long, and not base64url either", "parley-invite:" + "!" * 100000, "too_large")
    padded = invite(v2([bucket], p="x"))
    while len(padded) % 4 == len("parley-invite:") % 4:
        padded = invite(v2([bucket], p="x" * (len(padded) % 7 + 2)))
    add_invalid("with the padding base64url leaves out", padded + "=" * (-(len(padded) - len("parley-invite:")) % 4), "not_base64url")
    standard_value, filler = None, 0
    while standard_value is None:
        candidate = v2([bucket], p="?" * filler + ">")
        if any(c in base64.b64encode(canonical(candidate)).decode() for c in "+/"):
            standard_value = candidate
        filler += 1
    add_invalid("in the standard base64 alphabet (+ and /)",
                "parley-invite:" + base64.b64encode(canonical(standard_value)).decode().rstrip("="), "not_base64url")
    add_invalid("a line break in the middle", good[:40] + "\n" + good[40:], "not_base64url")
    add_invalid("a space at the end", good + " ", "not_base64url")
    add_invalid("a length of 1 modulo 4", good + "A" * ((1 - len(body)) % 4), "not_base64url")
    # Unused low bits of the last symbol set: the same bytes, spelled another way.
    tail = invite(v2([bucket], p="ab"))
    if (len(tail) - len("parley-invite:")) % 4 == 0:
        tail = invite(v2([bucket], p="abc"))
    symbols = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = symbols.index(tail[-1])
    add_invalid("unused bits of the last symbol set", tail[:-1] + symbols[last | 1], "not_base64url")
    add_invalid("nothing after the prefix", "parley-invite:", "not_json")
    add_invalid("bytes that are not JSON", "parley-invite:" + b64url(b"room team in my bucket"), "not_json")
    add_invalid("a JSON array", "parley-invite:" + b64url(b"[1,2]"), "not_json")
    add_invalid("a duplicate key", "parley-invite:" + b64url(b'{"v":2,"v":2}'), "not_json")
    add_invalid("no version", invite({k: v for k, v in v2([bucket]).items() if k != "v"}), "unsupported_version")
    add_invalid("version 3", invite(dict(v2([bucket]), v=3)), "unsupported_version")
    add_invalid("the version as a string", invite(dict(v2([bucket]), v="2")), "unsupported_version")
    add_invalid("the version as true", invite(dict(v2([bucket]), v=True)), "unsupported_version")
    add_invalid("no room id", invite({k: v for k, v in v2([bucket]).items() if k != "room_id"}), "invalid_member")
    add_invalid("a room id that could escape a prefix", invite(dict(v2([bucket]), room_id="../team")), "invalid_member")
    add_invalid("a room id in capitals", invite(dict(v2([bucket]), room_id="Team")), "invalid_member")
    add_invalid("the creator in capitals", invite(dict(v2([bucket]), creator=creator.upper())), "invalid_member")
    add_invalid("a creator of 63 hex digits", invite(dict(v2([bucket]), creator=creator[:63])), "invalid_member")
    add_invalid("a creator as a number", invite(dict(v2([bucket]), creator=7)), "invalid_member")
    add_invalid("a secret of 31 bytes", invite(v2([bucket], psk=b64(vector_bytes("short", 31)))), "invalid_member")
    add_invalid("a secret in base64url", invite(v2([bucket], psk=base64.urlsafe_b64encode(bytes([0xfb] * 32)).decode())),
                "invalid_member")
    add_invalid("a secret as bytes in an array", invite(v2([bucket], psk=[1, 2, 3])), "invalid_member")
    add_invalid("psk_passphrase as a string", invite(v2([bucket], psk_passphrase="yes")), "invalid_member")
    add_invalid("both a secret and a passphrase", invite(v2([bucket], psk=psk, psk_passphrase=True)), "invalid_member")
    add_invalid("version 1 without a bucket", invite({"creator": creator, "room_id": "team", "v": 1}), "invalid_member")
    add_invalid("version 1 whose bucket is an object",
                invite({"bucket": bucket, "creator": creator, "room_id": "team", "v": 1}), "invalid_member")
    add_invalid("version 1 whose bucket has a line break",
                invite({"bucket": "file:///srv/chat\nrm -rf /", "creator": creator, "room_id": "team", "v": 1}), "invalid_location")
    add_invalid("version 2 without locations (a version 1 bucket does not count)",
                invite({"bucket": "file:///srv/chat", "creator": creator, "room_id": "team", "v": 2}), "invalid_member")
    add_invalid("locations as an object", invite(v2(bucket)), "invalid_member")
    add_invalid("no locations", invite(v2([])), "no_locations")
    add_invalid("17 locations", invite(v2([{"kind": "bucket", "url": f"file:///srv/chat/{i}"} for i in range(MAX_LOCATIONS + 1)])),
                "too_many_locations")
    add_invalid("a location as a URL string", invite(v2(["s3://chat-bucket/team/"])), "invalid_location")
    add_invalid("a location without a kind", invite(v2([{"url": "s3://chat-bucket/team/"}])), "invalid_location")
    add_invalid("a kind as a number", invite(v2([{"kind": 1, "url": "s3://chat-bucket/team/"}])), "invalid_location")
    add_invalid("a kind in capitals", invite(v2([{"kind": "Bucket", "url": "s3://chat-bucket/team/"}])), "invalid_location")
    add_invalid("an empty kind", invite(v2([{"kind": ""}])), "invalid_location")
    add_invalid("a kind of 33 bytes", invite(v2([{"kind": "k" * 33}])), "invalid_location")
    add_invalid("a kind starting with a digit", invite(v2([bucket, {"kind": "9p"}])), "invalid_location")
    add_invalid("a location of 1,025 bytes", invite(v2([{"kind": "later", "x": "x" * (LOCATION_MAX_BYTES + 1 - len(canonical({"kind": "later", "x": ""})))}])),
                "invalid_location")
    add_invalid("a bucket without a url", invite(v2([{"kind": "bucket"}])), "invalid_location")
    add_invalid("a bucket url as a number", invite(v2([{"kind": "bucket", "url": 5}])), "invalid_location")
    add_invalid("an empty bucket url", invite(v2([{"kind": "bucket", "url": ""}])), "invalid_location")
    add_invalid("a bucket url with a terminal escape", invite(v2([{"kind": "bucket", "url": "file:///tmp/\u001b[2J"}])), "invalid_location")
    add_invalid("a relay over plain http", invite(v2([bucket, {"kind": "relay", "url": "http://relay.example.net/"}])), "invalid_location")
    add_invalid("a relay over plain http to an address that only looks local",
                invite(v2([{"kind": "relay", "url": "http://127.0.0.1.example.net/"}])), "invalid_location")
    add_invalid("a relay url with credentials", invite(v2([{"kind": "relay", "url": "wss://me:secret@relay.example.net/"}])),
                "invalid_location")
    add_invalid("a relay url with a fragment", invite(v2([{"kind": "relay", "url": "wss://relay.example.net/#top"}])), "invalid_location")
    add_invalid("a relay url with a space", invite(v2([{"kind": "relay", "url": "wss://relay.example.net/a b"}])), "invalid_location")
    add_invalid("a relay url without a host", invite(v2([{"kind": "relay", "url": "wss:///parley"}])), "invalid_location")
    add_invalid("a peer without a port", invite(v2([{"address": "192.0.2.7", "kind": "peer"}])), "invalid_location")
    add_invalid("a peer at port 0", invite(v2([{"address": "192.0.2.7:0", "kind": "peer"}])), "invalid_location")
    add_invalid("a peer at port 65536", invite(v2([{"address": "192.0.2.7:65536", "kind": "peer"}])), "invalid_location")
    add_invalid("a port with a leading zero", invite(v2([{"address": "192.0.2.7:07000", "kind": "peer"}])), "invalid_location")
    add_invalid("an IPv6 peer without brackets", invite(v2([{"address": "2001:db8::7:7000", "kind": "peer"}])), "invalid_location")
    add_invalid("a peer address as a number", invite(v2([{"address": 7000, "kind": "peer"}])), "invalid_location")
    add_invalid("a peer host of 254 bytes", invite(v2([{"address": "a" * 254 + ":80", "kind": "peer"}])), "invalid_location")

    # Link codes: alice's laptop links her phone (§14.8), in the current version and in version 2, which earlier
    # versions wrote.
    laptop, phone = Device("alice"), Device("alice", "alice-phone")
    requested = 1_790_000_000_000
    request_secret = hmac_sha256(exchange_private("alice-phone"), b"parley.link-request.v1\n" + str(requested).encode())
    secrets = [{"from_passphrase": False, "room_id": "vault", "secret": psk}]
    base = {"expires_ms": requested + 600_000, "psk_secrets": secrets, "request_created_ms": requested,
            "request_secret": b64(request_secret), "user_id": "alice"}
    rooms_v3 = [{"creator": creator, "locations": [relay, bucket, pigeon], "room_id": "team"},
                {"creator": creator, "locations": [folder], "room_id": "vault"}]
    rooms_v2 = [{"bucket": bucket["url"], "creator": creator, "room_id": "team"},
                {"bucket": folder["url"], "creator": creator, "room_id": "vault"}]
    recipient = {"user_id": "alice", "signing_seed": b64(hashlib.sha256(b"parley vector signing key alice-phone").digest()),
                 "exchange_private_key": b64(exchange_private("alice-phone"))}
    link_codes = []
    for version, payload in ((3, dict(base, rooms=rooms_v3)), (2, dict(base, bucket_rooms=rooms_v2))):
        rooms = [reference_linked_room(room, version) for room in payload["rooms" if version == 3 else "bucket_rooms"]]
        assert all(not isinstance(room, str) for room in rooms)
        link_codes.append({"name": f"version {version}", "version": version, "recipient": recipient, "now_ms": requested + 60_000,
                           "text": link_code(laptop, phone, payload, version, vector_bytes(f"link ephemeral key v{version}")),
                           "linked_by": laptop.key, "expires_ms": base["expires_ms"], "request_created_ms": requested,
                           "rooms": rooms, "psk_secrets": secrets})

    invalid_rooms = []
    for name, room, error in [
        ("a room without locations", {"creator": creator, "room_id": "team"}, "invalid_member"),
        ("a room with an empty list of locations", {"creator": creator, "locations": [], "room_id": "team"}, "no_locations"),
        ("a room with 17 locations", {"creator": creator, "locations": [bucket] * 17, "room_id": "team"}, "too_many_locations"),
        ("a room with a location as a string", {"creator": creator, "locations": ["wss://relay.example.net"], "room_id": "team"},
         "invalid_location"),
        ("a room without a creator", {"locations": [bucket], "room_id": "team"}, "invalid_member"),
        ("a room that is a string", "team", "invalid_member"),
    ]:
        assert reference_linked_room(room, 3) == error, name
        invalid_rooms.append({"name": name, "room": room, "error": error})

    return {"description": "Invite codes and link codes (§13.5, §14.8): `valid_invites` each give the code's `text` and what a "
                           "reader takes from it (version, room_id, creator, locations as a reader of this version keeps "
                           "them, psk or null, psk_passphrase); `invalid_invites` give the error code of §13.5.4. "
                           "`link_codes` open with the recipient's keys (`recipient`, the secret form of its identity) "
                           "at `now_ms`; `invalid_linked_rooms` are entries of a version 3 link code's `rooms` with the "
                           "error code.",
            "valid_invites": valid, "invalid_invites": invalid, "link_codes": link_codes, "invalid_linked_rooms": invalid_rooms}


# ---------------------------------------------------------------- archive objects (docs/PROTOCOL.md §13.9)

ARCHIVE_FORMAT = "parley.bucket.archive.v1"
ARCHIVE_PREFIX = b"parley.archive.v1\n"
ARCHIVE_MAX_MANIFEST = 4_194_304
ARCHIVE_MAX_BODY = 67_108_864
ARCHIVE_MAX_EVENTS = 100_000
ARCHIVE_MAX_ENTRIES = 20_000
MAX_TIMESTAMP = 253_402_300_799_999
MAX_SAFE = 2**53 - 1
DAY_MS = 86_400_000
HOUR_MS = 3_600_000


def utc_date(ms):
    import datetime
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%d")


def client_of(device):
    return f"{device.user}.{hashlib.sha256(device.public).hexdigest()[:12]}"


def log_file_name(start, end, client, gz=False):
    """A log file's key without rooms/{room}/logs/ (§13.1), as a manifest's `files` names it."""
    return f"{utc_date(start)}/messages_{start:013d}_{end:013d}_{client}.jsonl" + (".gz" if gz else "")


def archive_stem(room, first, last, client):
    return f"rooms/{room}/archive/{utc_date(first)}/{first:013d}_{last:013d}_{client}"


def order_key(event):
    """The total order of §8.1."""
    return (event["timestamp_ms"], event["seq"], event["event_id"].encode(), event["sender_key"].encode())


class Bits:
    """A deflate bit stream (RFC 1951 §3.1.1): fields least significant bit first, Huffman codes most significant first."""

    def __init__(self):
        self.out, self.acc, self.count = bytearray(), 0, 0

    def field(self, value, width):
        for i in range(width):
            self.acc |= ((value >> i) & 1) << self.count
            self.count += 1
            if self.count == 8:
                self.out.append(self.acc)
                self.acc, self.count = 0, 0

    def code(self, value, width):
        for i in reversed(range(width)):
            self.field((value >> i) & 1, 1)

    def done(self):
        if self.count:
            self.out.append(self.acc)
        return bytes(self.out)


def gzip_member(deflated, crc, size):
    """RFC 1952: a header with no name and no time, the deflate stream, CRC-32 and the length mod 2^32."""
    return bytes([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 0xFF]) + deflated + crc.to_bytes(4, "little") + (size % 2**32).to_bytes(4, "little")


def gzip_stored(data):
    """gzip of `data` in stored (uncompressed) deflate blocks: the same bytes whatever zlib this runs with, which a
    compressed stream would not be."""
    import zlib
    blocks = bytearray()
    chunks = [data[i:i + 65535] for i in range(0, len(data), 65535)] or [b""]
    for index, chunk in enumerate(chunks):
        blocks.append(1 if index == len(chunks) - 1 else 0)
        blocks += len(chunk).to_bytes(2, "little") + (len(chunk) ^ 0xFFFF).to_bytes(2, "little") + chunk
    return gzip_member(bytes(blocks), zlib.crc32(data), len(data))


def gzip_bomb(runs):
    """A gzip stream of a zero byte and then `runs` copies of the 258-byte match at distance 1 (1 + 258·runs zeros), in
    one dynamic-Huffman block whose codes give the match and its distance one bit each: about 2 bits per 258 bytes,
    the most deflate can pack, written out by hand so the bytes do not depend on a compressor."""
    import zlib
    bits = Bits()
    bits.field(1, 1)   # BFINAL
    bits.field(2, 2)   # dynamic Huffman codes
    bits.field(286 - 257, 5)   # HLIT: literal/length codes 0 … 285
    bits.field(1 - 1, 5)       # HDIST: one distance code
    order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]
    # The code-length alphabet uses 18 (a run of zeros, 1 bit), 1 and 2 (2 bits each): canonical codes 0, 10, 11.
    lengths = {18: 1, 1: 2, 2: 2}
    codes = {18: (0, 1), 1: (2, 2), 2: (3, 2)}
    bits.field(18 - 4, 4)      # HCLEN: the first 18 entries of `order`, up to 1
    for symbol in order[:18]:
        bits.field(lengths.get(symbol, 0), 3)

    def zeros(count):
        while count:
            run = min(count, 138)
            bits.code(*codes[18])
            bits.field(run - 11, 7)
            count -= run

    # Literal/length code lengths: 0 → 2, 256 → 2, 285 (length 258) → 1; distance code 0 (distance 1) → 1.
    bits.code(*codes[2])
    zeros(255)
    bits.code(*codes[2])
    zeros(28)
    bits.code(*codes[1])
    bits.code(*codes[1])
    # Canonical codes: 285 is 0, literal 0 is 10, end of block 11; distance 0 is 0.
    bits.code(2, 2)
    for _ in range(runs):
        bits.code(0, 1)
        bits.code(0, 1)
    bits.code(3, 2)
    size = 1 + 258 * runs
    return gzip_member(bits.done(), zlib.crc32(bytes(size)), size)


def archive_body_lines(events):
    return "".join(wire(e) + "\n" for e in sorted(events, key=order_key))


def archive_manifest(room, signer, client, events, files, part=1, parts=1, stored=None, change=None, resign=True):
    """A part's key, signed manifest (as a dict) and stored body for `events` (held forms: stripped ones without
    `content`) and `files` (name, size, sender device, first seq, last seq). `change` edits the unsigned manifest
    (before signing when `resign`, after it otherwise)."""
    ordered = sorted(events, key=order_key)
    lines = archive_body_lines(ordered).encode()
    stored = gzip_stored(lines) if stored is None else stored
    first, last = ordered[0]["timestamp_ms"], ordered[-1]["timestamp_ms"]
    stem = archive_stem(room, first, last, client)
    runs = {}
    for e in ordered:
        low, high = runs.get(e["sender_key"], (e["seq"], e["seq"]))
        runs[e["sender_key"]] = (min(low, e["seq"]), max(high, e["seq"]))
    manifest = {
        "body": {"key": stem + ".jsonl.gz", "sha256": sha256_hex(stored), "size": len(stored)},
        "chains": [{"first_seq": low, "last_seq": high, "sender": sender} for sender, (low, high) in
                   sorted(runs.items(), key=lambda item: item[0].encode())],
        "date": utc_date(first),
        "events": len(ordered),
        "files": [{"first_seq": a, "last_seq": b, "name": name, "sender": sender.key, "size": size}
                  for name, size, sender, a, b in sorted(files, key=lambda f: f[0].encode())],
        "first_ts": first,
        "format": ARCHIVE_FORMAT,
        "last_ts": last,
        "part": part,
        "parts": parts,
        "room_id": room,
        "signer": signer.key,
    }
    if change is not None and resign:
        change(manifest)
    manifest["signature"] = b64(signer.private.sign(ARCHIVE_PREFIX + canonical(manifest)))
    if change is not None and not resign:
        change(manifest)
    return stem + ".manifest.json", manifest, stored


def manifest_text(manifest):
    return canonical(manifest).decode("utf-8") + "\n"


# A reader of archive parts written from §13.9.4, independent of the Swift one: it decides the expected code of every
# case below, so a case whose fault is not the one its name says fails the generator.

def is_strict_b64(text, length):
    try:
        raw = base64.b64decode(text, validate=True)
    except Exception:
        return False
    return len(raw) == length and b64(raw) == text


def is_id(text):
    return is_identifier(text)


def is_calendar_date(text):
    import datetime
    try:
        return len(text) == 10 and datetime.date.fromisoformat(text).isoformat() == text
    except ValueError:
        return False


def named_fingerprint(client):
    parts = [p for p in client.split(".") if p]
    if len(parts) >= 3 and parts[-1].isdigit() and parts[-1].isascii():
        parts = parts[:-1]
    if len(parts) >= 2 and len(parts[-1]) == 12 and all(c in "0123456789abcdef" for c in parts[-1]):
        return parts[-1]
    return None


def key_fingerprint(key_b64):
    return hashlib.sha256(base64.b64decode(key_b64)).hexdigest()[:12]


def parse_archive_key(key, room):
    """(kind, date, first, last, client) of an archive key of `room` (§13.1), or None."""
    prefix = f"rooms/{room}/archive/"
    if not key.startswith(prefix):
        return None
    parts = key[len(prefix):].split("/")
    if len(parts) != 2:
        return None
    date, name = parts
    for kind, ending in (("manifest", ".manifest.json"), ("body", ".jsonl.gz")):
        if name.endswith(ending):
            fields = name[:-len(ending)].split("_", 2)
            if len(fields) != 3 or not all(f.isdigit() and f.isascii() for f in fields[:2]):
                return None
            first, last, client = int(fields[0]), int(fields[1]), fields[2]
            if not (is_calendar_date(date) and first <= last <= MAX_TIMESTAMP and is_id(client)):
                return None
            if date != utc_date(first) or f"{first:013d}_{last:013d}_{client}" != name[:-len(ending)]:
                return None
            return kind, date, first, last, client
    return None


def parse_log_file_name(name, room):
    """(date folder, start, end, client) of a manifest's file name written as a writer writes it, or None."""
    parts = name.split("/")
    if len(parts) != 2 or not is_calendar_date(parts[0]):
        return None
    stem = parts[1]
    for ending in (".jsonl.gz", ".jsonl"):
        if stem.endswith(ending):
            stem = stem[:-len(ending)]
            break
    else:
        return None
    if not stem.startswith("messages_"):
        return None
    fields = stem[len("messages_"):].split("_", 2)
    if len(fields) != 3 or not all(f.isdigit() and f.isascii() for f in fields[:2]) or not is_id(fields[2]):
        return None
    start, end = int(fields[0]), int(fields[1])
    if start > end or f"{start:013d}_{end:013d}_{fields[2]}" != stem[len("messages_"):]:
        return None
    return parts[0], start, end, fields[2]


def manifest_members_valid(m):
    def integer(value, low, high):
        return type(value) is int and low <= value <= high

    def run(entry, names):
        return (isinstance(entry, dict) and set(entry) == names and is_strict_b64(entry["sender"], 32)
                and integer(entry["first_seq"], 1, MAX_SAFE) and integer(entry["last_seq"], entry["first_seq"], MAX_SAFE))

    names = {"body", "chains", "date", "events", "files", "first_ts", "format", "last_ts", "part", "parts", "room_id",
             "signature", "signer"}
    if set(m) != names:
        return False
    body, chains, files = m["body"], m["chains"], m["files"]
    if not (isinstance(m["room_id"], str) and is_id(m["room_id"]) and isinstance(m["date"], str) and is_calendar_date(m["date"])
            and integer(m["first_ts"], 0, MAX_TIMESTAMP) and integer(m["last_ts"], m["first_ts"], MAX_TIMESTAMP)
            and integer(m["parts"], 1, MAX_SAFE) and integer(m["part"], 1, m["parts"])
            and isinstance(m["signer"], str) and is_strict_b64(m["signer"], 32)
            and isinstance(m["signature"], str) and is_strict_b64(m["signature"], 64)
            and integer(m["events"], 1, ARCHIVE_MAX_EVENTS)):
        return False
    if not (isinstance(body, dict) and set(body) == {"key", "sha256", "size"} and isinstance(body["key"], str)
            and isinstance(body["sha256"], str) and len(body["sha256"]) == 64 and all(c in "0123456789abcdef" for c in body["sha256"])
            and integer(body["size"], 1, ARCHIVE_MAX_BODY)):
        return False
    if not (isinstance(chains, list) and 1 <= len(chains) <= ARCHIVE_MAX_ENTRIES
            and all(run(c, {"first_seq", "last_seq", "sender"}) for c in chains)):
        return False
    if not (isinstance(files, list) and 1 <= len(files) <= ARCHIVE_MAX_ENTRIES
            and all(run(f, {"first_seq", "last_seq", "name", "sender", "size"}) and isinstance(f["name"], str)
                    and 1 <= len(f["name"].encode()) <= 1024 and integer(f["size"], 1, MAX_SAFE) for f in files)):
        return False
    senders = [c["sender"].encode() for c in chains]
    file_names = [f["name"].encode() for f in files]
    return all(a < b for a, b in zip(senders, senders[1:])) and all(a < b for a, b in zip(file_names, file_names[1:]))


def json_depth(value):
    if isinstance(value, dict):
        return 1 + max([json_depth(v) for v in value.values()] or [0])
    if isinstance(value, list):
        return 1 + max([json_depth(v) for v in value] or [0])
    return 0


def reference_manifest(room, key, listed_size, data):
    """Checks 1–11 of §13.9.4: the manifest, or the code of the first check that fails."""
    from cryptography.exceptions import InvalidSignature
    parsed = parse_archive_key(key, room)
    assert parsed is not None and parsed[0] == "manifest", key
    _, date, first, last, client = parsed
    if listed_size > ARCHIVE_MAX_MANIFEST or len(data) > ARCHIVE_MAX_MANIFEST:
        return "manifest_too_large"

    def refuse(_):
        raise ValueError("not an integer")

    try:
        m = json.loads(data.decode("utf-8"), object_pairs_hook=no_duplicate_keys, parse_float=refuse, parse_constant=refuse)
    except (ValueError, UnicodeDecodeError):
        return "manifest_malformed"
    if not isinstance(m, dict) or json_depth(m) > 3:
        return "manifest_malformed"
    if m.get("format") != ARCHIVE_FORMAT:
        return "unknown_format"
    if not manifest_members_valid(m):
        return "manifest_malformed"
    claimed = named_fingerprint(client)
    if (m["room_id"] != room or m["date"] != date or m["first_ts"] != first or m["last_ts"] != last
            or m["body"]["key"] != key[:-len(".manifest.json")] + ".jsonl.gz"
            or (claimed is not None and claimed != key_fingerprint(m["signer"]))):
        return "key_mismatch"
    unsigned = {k: v for k, v in m.items() if k != "signature"}
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(m["signer"])).verify(
            base64.b64decode(m["signature"]), ARCHIVE_PREFIX + canonical(unsigned))
    except InvalidSignature:
        return "bad_signature"
    if m["events"] != sum(c["last_seq"] - c["first_seq"] + 1 for c in m["chains"]):
        return "count_mismatch"
    names = []
    for f in m["files"]:
        name = parse_log_file_name(f["name"], room)
        if name is None or name[0] != m["date"] or name[0] != utc_date(name[1]):
            return "file_name_invalid"
        names.append(name)
    for f, name in zip(m["files"], names):
        claimed = named_fingerprint(name[3])
        if claimed is not None and claimed != key_fingerprint(f["sender"]):
            return "file_sender_mismatch"
    chains = {c["sender"]: (c["first_seq"], c["last_seq"]) for c in m["chains"]}
    for f in m["files"]:
        chain = chains.get(f["sender"])
        if chain is None or not (chain[0] <= f["first_seq"] and f["last_seq"] <= chain[1]):
            return "file_not_covered"
    for sender, (low, high) in chains.items():
        runs = sorted((f["first_seq"], f["last_seq"]) for f in m["files"] if f["sender"] == sender)
        expected = low
        for a, b in runs:
            if a != expected:
                return "files_not_contiguous"
            expected = b + 1
        if expected != high + 1:
            return "files_not_contiguous"
    return m


def reference_event(line, room):
    """The event a body line holds when it is the canonical wire form of a verified event of `room` (§5.6, enough of
    it for these vectors), else None."""
    from cryptography.exceptions import InvalidSignature
    try:
        event = json.loads(line.decode("utf-8"), object_pairs_hook=no_duplicate_keys)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(event, dict) or canonical(event) != line or event.get("room_id") != room:
        return None
    if "content" in event and sha256_hex(canonical(event["content"])) != event["content_hash"]:
        return None
    signed = {k: v for k, v in event.items() if k not in ("content", "signature")}
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(event["sender_key"])).verify(
            base64.b64decode(event["signature"]), b"parley.event.v1\n" + canonical(signed))
    except (InvalidSignature, ValueError, KeyError):
        return None
    return event


def reference_archive_part(room, key, listed_manifest_size, manifest, listed_body_size, body):
    """§13.9.4 whole: `valid` and the events, or the code of the first check that fails."""
    import zlib
    m = reference_manifest(room, key, listed_manifest_size, manifest)
    if isinstance(m, str):
        return m
    if listed_body_size is None:
        return "body_missing"
    if listed_body_size != m["body"]["size"] or len(body) != m["body"]["size"]:
        return "body_size_mismatch"
    if sha256_hex(body) != m["body"]["sha256"]:
        return "body_hash_mismatch"
    inflater = zlib.decompressobj(wbits=31)
    try:
        data = inflater.decompress(body, ARCHIVE_MAX_BODY + 1)
    except zlib.error:
        return "body_corrupt"
    if len(data) > ARCHIVE_MAX_BODY:
        return "body_too_large"
    if not inflater.eof or inflater.unused_data:
        return "body_corrupt"
    segments = data.split(b"\n")
    chains = {c["sender"]: (c["first_seq"], c["last_seq"]) for c in m["chains"]}
    reached = {}
    events = []
    for line in segments[:-1]:
        event = reference_event(line, room)
        if event is None:
            return "invalid_event"
        if events and order_key(event) == order_key(events[-1]):
            return "duplicate_event"
        if events and order_key(event) < order_key(events[-1]):
            return "out_of_order"
        if event["sender_key"] not in chains:
            return "unlisted_sender"
        low, high = chains[event["sender_key"]]
        expected = reached[event["sender_key"]] + 1 if event["sender_key"] in reached else low
        if event["seq"] != expected or event["seq"] > high:
            return "chain_mismatch"
        reached[event["sender_key"]] = event["seq"]
        events.append(event)
    if segments[-1]:
        return "invalid_event"
    if any(reached.get(sender) != high for sender, (_, high) in chains.items()):
        return "chain_mismatch"
    if events[0]["timestamp_ms"] != m["first_ts"] or events[-1]["timestamp_ms"] != m["last_ts"]:
        return "time_mismatch"
    by_position = {(e["sender_key"], e["seq"]): e for e in events}
    for f in m["files"]:
        _, start, end, _ = parse_log_file_name(f["name"], room)
        if (by_position[(f["sender"], f["first_seq"])]["timestamp_ms"] != start
                or by_position[(f["sender"], f["last_seq"])]["timestamp_ms"] != end):
            return "file_time_mismatch"
    return "valid", m, events


def reference_selection(room, manifests, now_ms):
    """§13.9.5 steps 1–3 for verified manifests: per day the chosen set's keys (by part), the refused groups and the
    manifests ignored as too recent."""
    groups, ignored = {}, []
    for key, text in manifests:
        m = reference_manifest(room, key, len(text.encode()), text.encode())
        assert isinstance(m, dict), (key, m)
        day_end = (m["first_ts"] // DAY_MS + 1) * DAY_MS
        if now_ms < day_end + HOUR_MS:
            ignored.append(key)
            continue
        client = parse_archive_key(key, room)[4]
        groups.setdefault((m["date"], client, m["signer"], m["parts"]), []).append((key, m))
    chosen, refused = {}, []
    for (date, _, _, parts), members in sorted(groups.items(), key=lambda item: sorted(k for k, _ in item[1])[0].encode()):
        numbers = sorted(m["part"] for _, m in members)
        keys = sorted((k for k, _ in members), key=lambda k: k.encode())
        if numbers != list(range(1, parts + 1)):
            refused.append({"keys": keys, "error": "set_incomplete"})
            continue
        names = [f["name"] for _, m in members for f in m["files"]]
        runs = sorted((c["sender"], c["first_seq"], c["last_seq"]) for _, m in members for c in m["chains"])
        if len(set(names)) != len(names) or any(a[0] == b[0] and b[1] <= a[2] for a, b in zip(runs, runs[1:])):
            refused.append({"keys": keys, "error": "set_overlap"})
            continue
        ordered = [k for k, _ in sorted(members, key=lambda member: member[1]["part"])]
        total = sum(m["events"] for _, m in members)
        best = chosen.get(date)
        if best is None or total > best[0] or (total == best[0] and ordered[0].encode() < best[1][0].encode()):
            chosen[date] = (total, ordered)
    return {date: keys for date, (_, keys) in sorted(chosen.items())}, refused, sorted(ignored)


def archive_vectors():
    room = "general"
    alice, bob, carol = Device("alice"), Device("bob"), Device("carol")
    t0 = 1_760_000_000_000   # 2025-10-09T08:53:20Z
    member = lambda device, membership, user, devices=None: dict(
        {"membership": membership, "user_id": user}, **({"devices": devices} if devices is not None else {}))
    a1 = alice.sign(room, "m.room.create", {"version": 1}, t0)
    a2 = alice.sign(room, "m.room.member", member(alice, "join", "alice", [alice.binding()]), t0)
    a3 = alice.sign(room, "m.room.member", member(alice, "invite", "bob", [bob.binding(False)]), t0 + 1_000)
    b1 = bob.sign(room, "m.room.member", member(bob, "join", "bob", [bob.binding()]), t0 + 2_000)
    a4 = alice.sign(room, "m.room.message", {"msgtype": "text", "body": "welcome"}, t0 + 2_500)
    b2 = bob.sign(room, "m.room.message", {"msgtype": "text", "body": "thanks"}, t0 + 3_000)
    a5 = alice.sign(room, "m.room.message", {"msgtype": "text", "body": "later"}, t0 + 4_000)
    held = [a1, a2, a3, b1, envelope(a4), b2, a5]   # alice's message at seq 4 is held stripped (§5.5)
    alice_client, bob_client = client_of(alice), client_of(bob)
    files = [
        (log_file_name(t0, t0 + 1_000, alice_client), 1_801, alice, 1, 3),
        (log_file_name(t0 + 2_000, t0 + 3_000, bob_client), 1_090, bob, 1, 2),
        (log_file_name(t0 + 2_500, t0 + 4_000, alice_client, gz=True), 612, alice, 4, 5),
    ]

    def case(name, key, manifest, stored, listed_manifest=None, listed_body="same", error=None):
        text = manifest if isinstance(manifest, str) else manifest_text(manifest)
        listed_manifest = len(text.encode()) if listed_manifest is None else listed_manifest
        listed_body = len(stored) if listed_body == "same" else listed_body
        verdict = reference_archive_part(room, key, listed_manifest, text.encode(), listed_body, stored)
        found = verdict[0] if isinstance(verdict, tuple) else verdict
        assert found == (error or "valid"), (name, found)
        entry = {"name": name, "manifest_key": key, "listed_manifest_size": listed_manifest, "manifest": text,
                 "listed_body_size": listed_body, "body": b64(stored)}
        return entry, verdict

    key, manifest, stored = archive_manifest(room, bob, bob_client, held, files)
    entry, verdict = case("two devices' files, one event held stripped", key, manifest, stored)
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    entry.update({
        "signing_input": (ARCHIVE_PREFIX + canonical(unsigned)).decode("utf-8"),
        "body_lines": [wire(e) for e in sorted(held, key=order_key)],
        "body_sha256": sha256_hex(stored),
        "covers": {"events": len(held), "first_ts": manifest["first_ts"], "last_ts": manifest["last_ts"],
                   "date": manifest["date"], "part": 1, "parts": 1, "signer": bob.key,
                   "chains": manifest["chains"], "files": [f"rooms/{room}/logs/{f['name']}" for f in manifest["files"]]},
    })
    valid = [entry]

    invalid = []

    def bad(name, error, events=held, file_list=files, signer=bob, client=bob_client, stored=None, change=None,
            resign=True, text=None, listed_manifest=None, listed_body="same", key=None):
        k, m, s = archive_manifest(room, signer, client, events, file_list, stored=stored, change=change, resign=resign)
        entry, _ = case(name, key or k, text if text is not None else m, s, listed_manifest, listed_body, error)
        entry["error"] = error
        invalid.append(entry)

    def lines_body(events):
        return gzip_stored(archive_body_lines(events).encode())

    def raw_body(text):
        return gzip_stored(text.encode())

    ordered = [wire(e) + "\n" for e in sorted(held, key=order_key)]
    carol1 = carol.sign(room, "m.room.message", {"msgtype": "text", "body": "not listed"}, t0 + 2_200)
    elsewhere = Device("alice")
    moved = elsewhere.sign("elsewhere", "m.room.create", {"version": 1}, t0 + 3_500)
    altered = json.loads(json.dumps(b2))
    altered["content"]["body"] = "thanks, mallory"

    bad("a manifest listed larger than 4 MiB", "manifest_too_large", listed_manifest=ARCHIVE_MAX_MANIFEST + 1)
    bad("a manifest that is not JSON", "manifest_malformed", text='{"format":"parley.bucket.archive.v1",\n')
    bad("a manifest that is an array", "manifest_malformed", text="[]\n")
    bad("a manifest nested four levels deep", "manifest_malformed", change=lambda m: m["body"].update(key=[{"k": []}]))
    bad("a manifest of another format", "unknown_format", change=lambda m: m.update(format="parley.bucket.archive.v2"))
    bad("a manifest with a member this version does not know", "manifest_malformed", change=lambda m: m.update(note="hi"))
    bad("a manifest without a signature", "manifest_malformed", change=lambda m: m.pop("signature"), resign=False)
    bad("chains not sorted by sender", "manifest_malformed", change=lambda m: m["chains"].reverse())
    bad("a count as a string", "manifest_malformed", change=lambda m: m.update(events="7"))
    bad("part 2 of 1", "manifest_malformed", change=lambda m: m.update(part=2))
    bad("a file whose seq range runs backwards", "manifest_malformed",
        change=lambda m: m["files"][0].update(first_seq=3, last_seq=1))
    bad("a manifest naming another room than its key", "key_mismatch", change=lambda m: m.update(room_id="other"))
    bad("a manifest whose first_ts is not its key's", "key_mismatch", change=lambda m: m.update(first_ts=t0 + 1))
    bad("a manifest whose body key is another part's", "key_mismatch",
        change=lambda m: m["body"].update(key=m["body"]["key"].replace(bob_client, alice_client)))
    bad("a manifest signed by a device whose fingerprint its key's client id does not name", "key_mismatch",
        signer=carol)
    bad("a file size changed after signing", "bad_signature", change=lambda m: m["files"][0].update(size=1), resign=False)
    bad("a count that is not the sum of the chains", "count_mismatch", change=lambda m: m.update(events=8))
    def renamed(name):
        return [(name, 1_801, alice, 1, 3)] + files[1:]

    bad("a file in another day's folder", "file_name_invalid", file_list=renamed(files[0][0].replace("2025-10-09/", "2025-10-10/")))
    bad("a file whose times are not written with 13 digits", "file_name_invalid",
        file_list=renamed(f"2025-10-09/messages_0{t0}_0{t0 + 1_000}_{alice_client}.jsonl"))
    bad("a file name that is not a log file", "file_name_invalid", file_list=renamed("2025-10-09/notes.txt"))
    bad("a file whose name's fingerprint is not its sender's", "file_sender_mismatch",
        file_list=[(files[0][0], 1_801, bob, 1, 3)] + files[1:])
    bad("a file claimed beyond its sender's chain", "file_not_covered",
        file_list=files + [(log_file_name(t0 + 5_000, t0 + 6_000, alice_client), 700, alice, 6, 7)])
    bad("a file of a device with no chain", "file_not_covered",
        file_list=files + [(log_file_name(t0 + 5_000, t0 + 6_000, client_of(carol)), 700, carol, 1, 1)])
    bad("two files of one device that overlap", "files_not_contiguous",
        file_list=[(files[0][0], 1_801, alice, 1, 4)] + files[1:])
    bad("a device's files that leave a gap in its chain", "files_not_contiguous",
        file_list=[(files[0][0], 1_801, alice, 1, 2)] + files[1:])
    bad("a body that is not listed", "body_missing", listed_body=None)
    bad("a body listed at another size", "body_size_mismatch", listed_body=len(stored) + 1)
    tampered = bytearray(stored)
    tampered[40] ^= 0x01
    bad("a body changed after the manifest was signed", "body_hash_mismatch",
        change=lambda m: m["body"].update(sha256=sha256_hex(stored)), stored=bytes(tampered))
    bad("a body that is not gzip", "body_corrupt", stored="".join(ordered).encode())
    bad("a truncated body", "body_corrupt", stored=stored[:-12])
    bad("a body with bytes after its gzip stream", "body_corrupt", stored=stored + b"\x00")
    bad("a gzip bomb: 64 MiB of zeros and more", "body_too_large", stored=gzip_bomb(ARCHIVE_MAX_BODY // 258 + 2))
    bad("an altered event", "invalid_event", stored=raw_body("".join(ordered).replace(wire(b2), wire(altered))))
    bad("an event of another room", "invalid_event",
        stored=raw_body("".join(ordered[:-1]) + wire(moved) + "\n" + ordered[-1]))
    bad("a line that is not in canonical form", "invalid_event",
        stored=raw_body("".join(ordered).replace(wire(b2), wire(b2).replace(",", ", ", 1))))
    bad("a body whose last line has no LF", "invalid_event", stored=raw_body("".join(ordered)[:-1]))
    bad("an event twice", "duplicate_event", stored=raw_body("".join(ordered[:4] + ordered[3:])))
    bad("two events swapped", "out_of_order", stored=raw_body("".join(ordered[:3] + [ordered[4], ordered[3]] + ordered[5:])))
    bad("an extra event of a device that has no chain", "unlisted_sender",
        stored=lines_body(held + [carol1]))
    bad("an event missing from the middle of a chain", "chain_mismatch",
        stored=lines_body([e for e in held if e is not a3]))
    bad("a chain's last event missing", "chain_mismatch", stored=lines_body([e for e in held if e is not a5]))
    bad("a first_ts before the first event", "time_mismatch",
        key=archive_stem(room, t0 - 1, t0 + 4_000, bob_client) + ".manifest.json",
        change=lambda m: (m.update(first_ts=t0 - 1),
                          m["body"].update(key=archive_stem(room, t0 - 1, t0 + 4_000, bob_client) + ".jsonl.gz")))
    bad("a file whose name ends before its last event", "file_time_mismatch",
        file_list=[(log_file_name(t0, t0 + 999, alice_client), 1_801, alice, 1, 3)] + files[1:])

    codes = sorted({e["error"] for e in invalid})

    # Sets (§13.9.5 step 3): manifests only; their bodies play no part.
    selections = []
    split_a = archive_manifest(room, alice, alice_client, [a1, a2, a3, b1, b2], files[:2], part=1, parts=2)
    split_b = archive_manifest(room, alice, alice_client, [envelope(a4), a5], files[2:], part=2, parts=2)
    whole_alice = archive_manifest(room, alice, alice_client, held, files)
    whole_bob = archive_manifest(room, bob, bob_client, held, files)
    partial_bob = archive_manifest(room, bob, bob_client, [a1, a2, a3, b1, b2], files[:2])
    lonely = archive_manifest(room, bob, bob_client, [a1, a2, a3], files[:1], part=1, parts=2)
    overlap_a = archive_manifest(room, carol, client_of(carol), [a1, a2, a3, b1, b2], files[:2], part=1, parts=2)
    overlap_b = archive_manifest(room, carol, client_of(carol), [a1, a2, a3], files[:1], part=2, parts=2)
    t1 = t0 + DAY_MS
    n6 = alice.sign(room, "m.room.message", {"msgtype": "text", "body": "next day"}, t1)
    next_day = archive_manifest(room, alice, alice_client, [n6], [(log_file_name(t1, t1, alice_client), 400, alice, 6, 6)])
    later = t1 + DAY_MS + HOUR_MS

    def selection(name, parts, now_ms):
        manifests = [(k, manifest_text(m)) for k, m, _ in parts]
        chosen, refused, ignored = reference_selection(room, manifests, now_ms)
        selections.append({"name": name, "now_ms": now_ms, "manifests": [{"key": k, "manifest": t} for k, t in manifests],
                           "chosen": chosen, "refused": refused, "ignored": ignored})

    selection("a set of two parts by one device", [split_b, split_a], later)
    selection("of two devices' sets, the one with more events", [partial_bob, whole_alice], later)
    selection("of two sets with as many events, the one whose first part's key is smaller", [whole_bob, whole_alice], later)
    selection("a set with a part missing is refused, and another set covers the day", [lonely, partial_bob], later)
    selection("a set whose parts name one file twice is refused", [overlap_a, overlap_b], later)
    selection("one set per day, each day on its own", [next_day, whole_bob], later)
    selection("a day that ended less than an hour ago is not used", [next_day, whole_bob], (t1 // DAY_MS + 1) * DAY_MS + HOUR_MS - 1)
    assert selections[0]["chosen"] == {"2025-10-09": [split_a[0], split_b[0]]}
    assert selections[1]["chosen"] == {"2025-10-09": [whole_alice[0]]}
    assert selections[3]["refused"][0]["error"] == "set_incomplete" and selections[4]["refused"][0]["error"] == "set_overlap"
    assert selections[6]["ignored"] == [next_day[0]]

    keys = {
        "valid": [
            {"key": key, "kind": "manifest", "date": "2025-10-09", "first_ts": t0, "last_ts": t0 + 4_000, "client_id": bob_client},
            {"key": key[:-len(".manifest.json")] + ".jsonl.gz", "kind": "body", "date": "2025-10-09", "first_ts": t0,
             "last_ts": t0 + 4_000, "client_id": bob_client},
        ],
        "invalid": [
            f"rooms/{room}/archive/2025-10-09/{t0}_{t0 + 4_000}_x.manifest.json".replace(f"{t0}_", f"0{t0}_"),
            f"rooms/{room}/archive/2025-10-10/{t0:013d}_{t0 + 4_000:013d}_x.manifest.json",
            f"rooms/{room}/archive/2025-10-09/{t0 + 4_000:013d}_{t0:013d}_x.manifest.json",
            f"rooms/{room}/archive/2025-10-09/{t0:013d}_{t0 + 4_000:013d}_x.json",
            f"rooms/{room}/archive/2025-10-09/{t0:013d}_{t0 + 4_000:013d}_X.jsonl.gz",
            f"rooms/{room}/archive/2025-10-09/{t0:013d}_{t0 + 4_000:013d}_a..b.jsonl.gz",
            f"rooms/{room}/archive/2025-10-09/sub/{t0:013d}_{t0 + 4_000:013d}_x.jsonl.gz",
            f"rooms/{room}/archive/{t0:013d}_{t0 + 4_000:013d}_x.jsonl.gz",
            f"rooms/{room}/archive/2025-02-29/{t0:013d}_{t0 + 4_000:013d}_x.jsonl.gz",
            f"rooms/other/archive/2025-10-09/{t0:013d}_{t0 + 4_000:013d}_x.jsonl.gz",
        ],
    }
    for k in keys["invalid"]:
        assert parse_archive_key(k, room) is None, k
    for k in keys["valid"]:
        assert parse_archive_key(k["key"], room) == (k["kind"], k["date"], k["first_ts"], k["last_ts"], k["client_id"]), k

    return {"description": "Archive objects (docs/PROTOCOL.md §13.9) of room `general`. `keys`: archive keys and what "
                           "they name, and keys that are not archive objects. `valid`: a part whose manifest and stored "
                           "body pass every check of §13.9.4, given with the listed sizes a reader sees, the manifest's "
                           "signing input, the body's uncompressed `body_lines` (any gzip of them is a valid body; the "
                           "`body` given, base64 of stored deflate blocks, has SHA-256 `body_sha256`) and what the part "
                           "covers. `invalid`: parts that fail, each with the code of the first check that fails "
                           "(`listed_body_size` null: no body listed). `selections`: the verified manifests a reader "
                           "finds, its clock, and per day the keys of the chosen set by part, the refused groups (keys, "
                           "code) and the manifests of days too recent to use (§13.9.5). The check of the signer's "
                           "membership (`signer_not_member`) needs room state and is not here. Keys derive from "
                           "SHA-256(\"parley vector signing key \" + name).",
            "codes": codes, "keys": keys, "valid": valid, "invalid": invalid, "selections": selections}


# ---------------------------------------------------------------- relay (docs/PROTOCOL.md §15)

def relay_vectors():
    """Device challenges a relay signs devices into accounts with (§15.3), and frames of its WebSocket protocol (§15.4)."""
    device = Device("alice")
    other = Device("bob")
    prefix = b"parley.relay.device.v1\n"

    def challenge(origin, user, nonce_name, expires):
        return {"expires_ms": expires, "nonce": b64(hashlib.sha256(nonce_name.encode()).digest()), "origin": origin, "user_id": user}

    def signing_input(chal, key):
        return prefix + canonical(dict(chal, device_key=key))

    base = challenge("https://relay.example.net", "alice", "nonce 1", 1760000300000)
    valid = []
    for name, chal in [("a challenge of a relay at its https origin", base),
                       ("a challenge of a relay on this machine, with a port and a path",
                        challenge("http://127.0.0.1:8470/parley", "alice", "nonce 2", 1760000300000))]:
        message = signing_input(chal, device.key)
        valid.append({"name": name, "challenge": chal, "device_key": device.key, "signing_input_hex": message.hex(),
                      "signature": b64(device.private.sign(message))})
    good = signing_input(base, device.key)
    signature = b64(device.private.sign(good))
    invalid = [
        {"name": "the signature of the same device over another relay's challenge",
         "challenge": dict(base, origin="https://other.example.net"), "device_key": device.key, "signature": signature},
        {"name": "another device's key with this device's signature", "challenge": base, "device_key": other.key, "signature": signature},
        {"name": "a signature over the challenge without the prefix", "challenge": base, "device_key": device.key,
         "signature": b64(device.private.sign(canonical(dict(base, device_key=device.key))))},
        {"name": "a signature over another nonce", "challenge": dict(base, nonce=b64(hashlib.sha256(b"nonce 3").digest())),
         "device_key": device.key, "signature": signature},
    ]
    return {"description": "Relay device challenges (§15.3): `valid` ones give exactly `signing_input_hex` (the prefix "
                           "`parley.relay.device.v1` and LF, then the canonical form of the challenge's members with "
                           "`device_key`), and `signature` (Ed25519, deterministic) verifies under `device_key`. In "
                           "`invalid`, the signature MUST NOT verify. Keys derive from SHA-256(\"parley vector signing "
                           "key \" + name).",
            "valid": valid, "invalid": invalid}


# §16 Blocks -------------------------------------------------------------------------------------------------------

BLOCK_TIERS = [10, 16, 20, 24]
BLOCK_FAN_OUT = 1024
BLOCK_WHITENED_FAN_OUT = 512


def block_capacity(tier):
    return (1 << tier) - 16


def file_block_key(file_key):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"parley.file.block.v1").derive(file_key)


def block_nonce(depth, index):
    return bytes([depth, 0, 0, 0]) + index.to_bytes(8, "big")


def seal_block(plaintext, tier, file_key, depth, index):
    assert len(plaintext) <= block_capacity(tier)
    padded = plaintext + bytes(block_capacity(tier) - len(plaintext))
    return AESGCM(file_block_key(file_key)).encrypt(block_nonce(depth, index), padded, None)


def file_layout(size, whitened=False):
    """(data tier, depth, data block count) of a file of `size` bytes, as §16.3 cuts it (§16.7 when whitened)."""
    if size <= block_capacity(16):
        return smallest_tier(size), 1 if whitened else 0, 1
    data_tier = 16 if size <= 1 << 24 else 20 if size <= 1 << 32 else 24
    fan_out = BLOCK_WHITENED_FAN_OUT if whitened else BLOCK_FAN_OUT
    depth, covered = 1, block_capacity(data_tier) * fan_out
    while covered < size:
        depth, covered = depth + 1, covered * fan_out
    return data_tier, depth, -(-size // block_capacity(data_tier))


def manifest_plaintext(depth, entry_tier, covered, entries, randomizers=None):
    """A manifest (§16.3); with `randomizers`, a whitened file's depth-1 manifest (§16.7): flag 1, each entry two ids."""
    body = b"".join(e + r for e, r in zip(entries, randomizers)) if randomizers else b"".join(entries)
    return (b"PCBL" + bytes([1, depth, entry_tier, 1 if randomizers else 0, 0, 0, 0, 0]) + len(entries).to_bytes(4, "big")
            + covered.to_bytes(8, "big") + body)


def smallest_tier(length):
    return next(t for t in BLOCK_TIERS if length <= block_capacity(t))


def block_vectors():
    file_key = hashlib.sha256(b"parley vector file key").digest()
    files = []
    for size in [0, 5, 1008, 1009]:
        data = bytes((i * 31 + (i >> 8)) % 256 for i in range(size))
        tier, depth, _ = file_layout(size)
        stored = seal_block(data, tier, file_key, 0, 0)
        files.append({
            "file_hex": data.hex(), "data_tier": tier, "depth": depth, "root": hashlib.sha256(stored).hexdigest(), "root_tier": tier,
            "stored_sha256": hashlib.sha256(stored).hexdigest(),
            **({"stored_hex": stored.hex()} if tier == 10 else {}),
        })
    layouts = [{"size": size, "data_tier": t, "depth": d, "data_blocks": n}
               for size in [0, 1009, 65520, 65521, 1 << 24, (1 << 24) + 1, 1 << 30, 1 << 32, (1 << 32) + 1, 20 << 30, 1 << 40]
               for (t, d, n) in [file_layout(size)]]
    # A file of 16,708,600 bytes: 256 data blocks of 64 KiB under one root, the last holding 1,000. Its data is not given
    # (it is large); the root manifest is, over the ids the data blocks have when the file's bytes are all 0x61.
    size = 255 * 65520 + 1000
    data_tier, depth, count = file_layout(size)
    ids = []
    for index in range(count):
        covered = min(block_capacity(data_tier), size - index * block_capacity(data_tier))
        ids.append(hashlib.sha256(seal_block(b"a" * covered, data_tier, file_key, 0, index)).digest())
    plaintext = manifest_plaintext(1, data_tier, size, ids)
    root_tier = smallest_tier(len(plaintext))
    root = seal_block(plaintext, root_tier, file_key, 1, 0)
    # A file message (§16.4) for the 5-byte file above, and variations a reader must refuse.
    five = files[1]
    good = {"name": "notes.txt", "media_type": "text/plain", "size": 5, "sha256": hashlib.sha256(bytes.fromhex(five["file_hex"])).hexdigest(),
            "root": five["root"], "root_tier": five["root_tier"], "key": base64.b64encode(file_key).decode()}
    bad_files = [
        ("name", "../notes.txt"), ("name", "a\\b"), ("name", "nul\u0000"), ("name", "\u202etxt.exe"), ("name", ".."), ("name", ""),
        ("name", "n" * 256), ("root_tier", 16), ("root_tier", 11), ("size", -1), ("size", (1 << 40) + 1), ("key", "AAEC"),
        ("sha256", "AB" * 32), ("media_type", "text"), ("width", 10), ("colour", "red"),
    ]
    file_messages = [{"content": {"msgtype": "file", "body": "notes", "file": good}, "valid": True},
                     {"content": {"msgtype": "file", "body": "notes", "file": {**good, "name": "é" * 127}}, "valid": True},
                     {"content": {"msgtype": "file", "body": "notes", "file": {**good, "width": 640, "height": 480}}, "valid": True},
                     {"content": {"msgtype": "file", "body": "notes"}, "valid": False},
                     {"content": {"msgtype": "text", "body": "notes", "file": good}, "valid": False}]
    file_messages += [{"content": {"msgtype": "file", "body": "notes", "file": {**good, field: value}}, "valid": False} for field, value in bad_files]
    # A whitened file (§16.7) of 5 bytes: its sealed data block XOR a random block (any bytes: here AES-GCM over zeros
    # under a fixed key), the random block, and a root manifest naming both.
    five_data = bytes.fromhex(five["file_hex"])
    sealed = seal_block(five_data, 10, file_key, 0, 0)
    random_block = AESGCM(hashlib.sha256(b"parley vector randomizer").digest()).encrypt(block_nonce(0, 0), bytes(block_capacity(10)), None)
    whitened_block = bytes(a ^ b for a, b in zip(sealed, random_block))
    whitened_manifest = manifest_plaintext(1, 10, 5, [hashlib.sha256(whitened_block).digest()], [hashlib.sha256(random_block).digest()])
    whitened_root = seal_block(whitened_manifest, smallest_tier(len(whitened_manifest)), file_key, 1, 0)
    whitened = {
        "file_hex": five["file_hex"], "size": 5, "stored_hex": whitened_block.hex(), "randomizer_hex": random_block.hex(),
        "manifest_plaintext_hex": whitened_manifest.hex(), "root_hex": whitened_root.hex(), "root": hashlib.sha256(whitened_root).hexdigest(),
        "root_tier": smallest_tier(len(whitened_manifest)),
    }
    whitened_layouts = [{"size": size, "data_tier": t, "depth": d, "data_blocks": n}
                        for size in [0, 5, 65521, 1 << 24, 1 << 30, 1 << 32, 1 << 40]
                        for (t, d, n) in [file_layout(size, whitened=True)]]
    file_messages += [
        {"content": {"msgtype": "file", "body": "notes", "file": {**good, "root": whitened["root"], "root_tier": whitened["root_tier"],
                                                                  "whitened": True}}, "valid": True},
        # A whitened 5-byte file has a root manifest of 1 KiB; the unwhitened root tier (1 KiB too) is checked the same way.
        {"content": {"msgtype": "file", "body": "notes", "file": {**good, "whitened": False}}, "valid": False},
        {"content": {"msgtype": "file", "body": "notes", "file": {**good, "whitened": 1}}, "valid": False},
        {"content": {"msgtype": "file", "body": "notes", "file": {**good, "size": 70000, "root_tier": 10, "whitened": True}}, "valid": True},
        {"content": {"msgtype": "file", "body": "notes", "file": {**good, "size": 70000, "root_tier": 16, "whitened": True}}, "valid": False},
    ]
    return {
        "whitened_file": whitened,
        "whitened_layouts": whitened_layouts,
        "file_key": file_key.hex(),
        "block_key": file_block_key(file_key).hex(),
        "nonces": [{"depth": d, "index": i, "nonce": block_nonce(d, i).hex()} for d, i in [(0, 0), (0, 1023), (1, 1), (2, (1 << 40) + 5)]],
        "layouts": layouts,
        "files": files,
        "manifest": {
            "file_byte": "61", "size": size, "data_tier": data_tier, "depth": depth, "data_block_ids": [i.hex() for i in ids],
            "plaintext_hex": plaintext.hex(), "root_tier": root_tier, "root": hashlib.sha256(root).hexdigest(),
        },
        "file_messages": file_messages,
    }


# ---------------------------------------------------------------- receipts (docs/PROTOCOL.md §7.10)

def receipt_vectors():
    t0 = 1_760_000_000_000
    alice, bob, mallory = Device("alice"), Device("bob"), Device("mallory")
    r = "receipts"

    def member(membership, user, devices):
        return {"membership": membership, "user_id": user, "devices": devices}

    def head(event, hash_=None):
        return {"sender_key": event["sender_key"], "seq": event["seq"], "hash": hash_ or event_hash(event)}

    events = [
        alice.sign(r, "m.room.create", {"version": 1}, t0),
        alice.sign(r, "m.room.member", member("join", "alice", [alice.binding()]), t0),
        alice.sign(r, "m.room.member", member("invite", "bob", [bob.binding(False)]), t0 + 1),
        bob.sign(r, "m.room.member", member("join", "bob", [bob.binding()]), t0 + 2),
    ]
    messages = [alice.sign(r, "m.room.message", {"msgtype": "text", "body": f"m{i}"}, t0 + 10 + i) for i in range(1, 5)]
    events += messages
    m1, m2, m3, m4 = messages
    # Bob: delivered up to m2; read up to m1 (an older head of the same chain still counts for what it names); then a
    # read receipt about m4's place with another hash, which covers nothing. Mallory, never a member, claims all.
    receipts = [
        ("bob delivered up to m2", bob.sign(r, "m.receipt", {"receipt_type": "delivered", "event_id": m2["event_id"], "heads": [head(m2)]}, t0 + 20)),
        ("bob read up to m1", bob.sign(r, "m.receipt", {"receipt_type": "read", "event_id": m1["event_id"], "heads": [head(m1)]}, t0 + 21)),
        ("bob read m4's place under another hash", bob.sign(r, "m.receipt", {"receipt_type": "read", "event_id": m4["event_id"],
                                                                              "heads": [head(m4, "ab" * 32)]}, t0 + 22)),
        ("mallory, no member, delivered all", mallory.sign(r, "m.receipt", {"receipt_type": "delivered", "event_id": m4["event_id"],
                                                                            "heads": [head(m4)]}, t0 + 23)),
    ]
    events += [e for _, e in receipts]
    coverage = []
    for message, covered in [(m1, [("bob", "delivered", 20), ("bob", "read", 21)]), (m2, [("bob", "delivered", 20)]), (m3, []), (m4, [])]:
        coverage.append({"event_id": message["event_id"], "sender_key": message["sender_key"], "seq": message["seq"],
                         "covered_by": [{"reader_id": u, "reader_key": bob.key, "kind": k, "timestamp_ms": t0 + dt} for u, k, dt in covered]})
    head_ok = head(m1)
    contents = [{"content": {"receipt_type": "read", "event_id": m1["event_id"]}, "valid": True},
                {"content": {"receipt_type": "delivered", "event_id": m1["event_id"], "heads": [head_ok]}, "valid": True},
                {"content": {"receipt_type": "delivered", "event_id": m1["event_id"], "heads": [head_ok, head(events[3])]}, "valid": True}]
    bad_heads = [[], [head_ok, head(m2)], [{**head_ok, "seq": 0}], [{**head_ok, "hash": head_ok["hash"].upper()}],
                 [{k: v for k, v in head_ok.items() if k != "hash"}], [{**head_ok, "sender_key": "AAAA"}], [{**head_ok, "extra": 1}],
                 [head_ok["hash"]], {"alice": head_ok}]
    # 257 chains: one too many.
    many = [{"sender_key": b64(hashlib.sha256(bytes([i, j])).digest()), "seq": 1, "hash": "00" * 32} for i in range(2) for j in range(129)][:257]
    bad_heads.append(many)
    contents += [{"content": {"receipt_type": "delivered", "event_id": m1["event_id"], "heads": h}, "valid": False} for h in bad_heads]
    # Delivery proofs (§10.1): a header, then the room's state in full, the chains up to what the proof needs with other
    # events stripped (their envelopes, §5.5), the message and its receipts in full.
    def header(message, **extra):
        return canonical({"event_hash": event_hash(message), "format": "parley.delivery_proof.v1", "message_keys": [],
                          "room_id": r, **extra}).decode("utf-8")

    state = [wire(e) for e in events[:4]]
    bob_delivered, bob_read, bob_other_hash, mallory_all = [e for _, e in receipts]
    proven = state + [wire(envelope(m1)), wire(m2), wire(bob_delivered)]
    tampered = json.loads(wire(bob_delivered))
    tampered["content"]["heads"][0]["seq"] = 1
    tampered["content_hash"] = sha256_hex(canonical(tampered["content"]))
    proofs = [
        {"name": "bob's receipt proves m2 delivered", "lines": [header(m2)] + proven, "valid": True,
         "confirmations": [{"reader_id": "bob", "reader_key": bob.key, "kind": "delivered", "timestamp_ms": t0 + 20}]},
        {"name": "the same proof, m1 left out: a gap in alice's chain", "lines": [header(m2)] + state + [wire(m2), wire(bob_delivered)],
         "valid": False, "problem": "gap"},
        {"name": "bob's receipt with its head changed (content hash fixed, signature not)",
         "lines": [header(m2)] + state + [wire(envelope(m1)), wire(m2), wire(tampered)], "valid": False, "problem": "invalid event"},
        {"name": "a proof of m3, which bob's receipt does not reach", "lines": [header(m3)] + proven + [wire(m3)], "valid": False,
         "problem": "no receipt"},
        {"name": "m4 under mallory's receipt: she is no member",
         "lines": [header(m4)] + state + [wire(envelope(m)) for m in (m1, m2, m3)] + [wire(m4), wire(mallory_all)], "valid": False,
         "problem": "no receipt"},
        {"name": "m4 under bob's read receipt naming its place with another hash",
         "lines": [header(m4)] + state + [wire(envelope(m)) for m in (m1, m2, m3)] + [wire(m4)]
                  + [wire(envelope(bob_delivered)), wire(envelope(bob_read)), wire(bob_other_hash)], "valid": False, "problem": "no receipt"},
        {"name": "a header with a member it does not define", "lines": [header(m2, signed_by="alice")] + proven, "valid": False,
         "problem": "line 1"},
    ]
    return {"room_id": r, "events": [wire(e) for e in events], "receipts": [name for name, _ in receipts], "coverage": coverage,
            "contents": contents, "proofs": proofs}


# §17 Peers -------------------------------------------------------------------------------------------------------

PEER_BRANCHES, PEER_LEAF, PEER_LIST = 32, 16, 24
INFINITY = 2**64 - 1


def varint(value):
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_varint(data, at):
    value, shift = 0, 0
    for index in range(10):
        if at >= len(data):
            raise ValueError("it ends early")
        byte = data[at]
        at += 1
        group = byte & 0x7F
        if index == 9 and group > 1:
            raise ValueError("a varint exceeds 64 bits")
        value |= group << shift
        shift += 7
        if not byte & 0x80:
            if index > 0 and byte == 0:
                raise ValueError("a varint is not in its shortest form")
            return value, at
    raise ValueError("a varint is longer than 10 bytes")


def bound_key(bound):
    t, prefix = bound
    return (t, prefix + bytes(32 - len(prefix)))


def item_below(item, bound):
    t, h = item
    bt, prefix = bound
    if bt == INFINITY:
        return True
    return (t, h) < (bt, prefix + bytes(32 - len(prefix)))


def bound_between(a, b):
    if a[0] != b[0]:
        return (b[0], b"")
    n = 0
    while n < 32 and a[1][n] == b[1][n]:
        n += 1
    return (b[0], b[1][:min(n + 1, 32)])


def peer_fingerprint(items, salt):
    total = sum(int.from_bytes(h, "big") for _, h in items) % 2**256
    digest = hashlib.sha256(b"parley.peer.fp.v1" + salt.to_bytes(8, "big") + total.to_bytes(32, "big")
                            + len(items).to_bytes(8, "big")).digest()
    return digest[:4]


def short_id(h, salt):
    o = salt % 31
    return h[o] << 8 | h[o + 1]


def encode_message(salt, lower, ranges):
    out = bytearray(salt.to_bytes(8, "big"))
    out += varint(lower[0]) + bytes([len(lower[1])]) + lower[1]
    previous = lower[0]
    for upper, mode, payload in ranges:
        bits = {"skip": 0, "fingerprint": 1, "ids": 2, "want": 3}[mode]
        step = 0 if upper[0] == INFINITY else upper[0] - previous + 1
        out += varint(step << 3 | (4 if upper[1] else 0) | bits)
        if upper[1]:
            out += bytes([len(upper[1])]) + upper[1]
        previous = upper[0]
        if mode == "fingerprint":
            out += payload
        elif mode in ("ids", "want"):
            out += varint(len(payload)) + b"".join(i.to_bytes(2, "big") for i in payload)
    return bytes(out)


def decode_message(data):
    if len(data) > 65536:
        raise ValueError("too long")
    if len(data) < 8:
        raise ValueError("it ends early")
    salt = int.from_bytes(data[:8], "big")
    t, at = read_varint(data, 8)
    if t == INFINITY:
        raise ValueError("the lower bound is infinity")
    if at >= len(data):
        raise ValueError("it ends early")
    n = data[at]
    at += 1
    if n > 32 or at + n > len(data):
        raise ValueError("bad prefix")
    prefix = data[at:at + n]
    at += n
    if prefix and prefix[-1] == 0:
        raise ValueError("prefix ends in zero")
    lower = (t, prefix)
    ranges, previous, ids = [], lower, 0
    while at < len(data):
        if len(ranges) >= 8192:
            raise ValueError("too many ranges")
        if previous[0] == INFINITY:
            raise ValueError("a range follows the infinite bound")
        v, at = read_varint(data, at)
        step = v >> 3
        if step == 0:
            if v & 4:
                raise ValueError("the infinite bound has a prefix")
            upper = (INFINITY, b"")
        else:
            ut = previous[0] + step - 1
            if ut >= INFINITY:
                raise ValueError("a bound's timestamp overflows")
            prefix = b""
            if v & 4:
                if at >= len(data):
                    raise ValueError("it ends early")
                n = data[at]
                at += 1
                if not 1 <= n <= 32 or at + n > len(data):
                    raise ValueError("bad prefix")
                prefix = data[at:at + n]
                at += n
                if prefix[-1] == 0:
                    raise ValueError("prefix ends in zero")
            upper = (ut, prefix)
        if not (upper[0] == INFINITY and previous[0] != INFINITY) and not bound_key(previous) < bound_key(upper):
            raise ValueError("bounds do not increase")
        mode = ["skip", "fingerprint", "ids", "want"][v & 3]
        payload = None
        if mode == "fingerprint":
            if at + 4 > len(data):
                raise ValueError("it ends early")
            payload = data[at:at + 4]
            at += 4
        elif mode in ("ids", "want"):
            count, at = read_varint(data, at)
            ids += count
            if ids > 1024:
                raise ValueError("more than 1024 short ids")
            if at + 2 * count > len(data):
                raise ValueError("it ends early")
            payload = [int.from_bytes(data[at + 2 * i:at + 2 * i + 2], "big") for i in range(count)]
            at += 2 * count
        ranges.append((upper, mode, payload))
        previous = upper
    return salt, lower, ranges


def in_range(items, lower, upper):
    return [i for i in items if not item_below(i, lower) and item_below(i, upper)]


def cut(items, upper, salt):
    n = len(items)
    if n <= PEER_LIST:
        return [(upper, "ids", [short_id(h, salt) for _, h in items])]
    k = PEER_BRANCHES if n > PEER_BRANCHES * PEER_LEAF else -(-n // PEER_LEAF)
    out = []
    for part in range(k):
        start, end = n * part // k, n * (part + 1) // k
        part_upper = upper if part == k - 1 else bound_between(items[end - 1], items[end])
        chunk = items[start:end]
        if len(chunk) <= 1:
            out.append((part_upper, "ids", [short_id(h, salt) for _, h in chunk]))
        else:
            out.append((part_upper, "fingerprint", peer_fingerprint(chunk, salt)))
    return out


def answer(items, message):
    """Answers a decoded message over `items` (sorted): the answer (or None) and the items to send."""
    salt, lower, ranges = message
    out, send, previous, answer_lower = [], [], lower, lower

    def skip(upper):
        nonlocal answer_lower
        if not out:
            answer_lower = upper
        elif out[-1][1] == "skip":
            out[-1] = (upper, "skip", None)
        else:
            out.append((upper, "skip", None))

    for upper, mode, payload in ranges:
        mine = in_range(items, previous, upper)
        if mode == "skip":
            skip(upper)
        elif mode == "fingerprint":
            if peer_fingerprint(mine, salt) == payload:
                skip(upper)
            else:
                out.extend(cut(mine, upper, salt))
        elif mode == "ids":
            listed = set(payload)
            held = {short_id(h, salt) for _, h in mine}
            send += [i for i in mine if short_id(i[1], salt) not in listed]
            missing = []
            for i in payload:
                if i not in held and i not in missing:
                    missing.append(i)
            if missing:
                out.append((upper, "want", missing))
            else:
                skip(upper)
        else:
            asked = set(payload)
            send += [i for i in mine if short_id(i[1], salt) in asked]
            skip(upper)
        previous = upper
    if out and out[-1][1] == "skip":
        out.pop()
    return ((salt, answer_lower, out) if out else None), send


def peer_items(count, seed, start=1760000000000, span=86400000):
    items = []
    for index in range(count):
        digest = hashlib.sha256(f"parley vector peer item {seed} {index}".encode()).digest()
        items.append((start + int.from_bytes(digest[:8], "big") % span, hashlib.sha256(digest).digest()))
    return sorted(set(items))


def bloom_digest(hashes, salt, k=7, bits_per_item=10):
    m_bytes = (max(8, len(hashes) * bits_per_item) + 7) // 8
    bits = bytearray(m_bytes)
    m = m_bytes * 8
    rotated = ((salt << 32) | (salt >> 32)) & (2**64 - 1)
    for h in hashes:
        h1 = int.from_bytes(h[8:16], "big") ^ salt
        h2 = (int.from_bytes(h[16:24], "big") ^ rotated) | 1
        for j in range(k):
            position = ((h1 + j * h2) % 2**64) % m
            bits[position // 8] |= 1 << (position % 8)
    return salt.to_bytes(8, "big") + (0).to_bytes(2, "big") + (65535).to_bytes(2, "big") + bytes([k]) + bytes(bits)


def bloom_contains(digest, h):
    salt = int.from_bytes(digest[:8], "big")
    k = digest[12]
    bits = digest[13:]
    m = len(bits) * 8
    rotated = ((salt << 32) | (salt >> 32)) & (2**64 - 1)
    h1 = int.from_bytes(h[8:16], "big") ^ salt
    h2 = (int.from_bytes(h[16:24], "big") ^ rotated) | 1
    return all(bits[(((h1 + j * h2) % 2**64) % m) // 8] >> ((((h1 + j * h2) % 2**64) % m) % 8) & 1 for j in range(k))


def datagram(device, kind, room, sent_ms, nonce, echo, body, key=None, flags=None):
    sealed = key is not None
    header = b"PRL1" + bytes([kind, (1 if sealed else 0) if flags is None else flags, len(room)]) + room.encode() + device.public \
        + sent_ms.to_bytes(8, "big") + nonce + (echo or bytes(12))
    if sealed:
        body = AESGCM(key).encrypt(nonce, body, header)
    signature = device.private.sign(b"parley.peer.v1\n" + header + body)
    return header + body + signature


def fragments(lines, budget, batch_ids):
    room = budget - 12
    bodies, batch, ids = [], bytearray(), iter(batch_ids)

    def flush():
        nonlocal batch
        if not batch:
            return
        batch_id = next(ids)
        count = -(-len(batch) // room)
        for index in range(count):
            bodies.append(batch_id.to_bytes(8, "big") + index.to_bytes(2, "big") + count.to_bytes(2, "big")
                          + bytes(batch[index * room:(index + 1) * room]))
        batch = bytearray()

    for line in lines:
        if batch and len(batch) + len(line) + 1 > room:
            flush()
        batch += line + b"\n"
        if len(batch) > room:
            flush()
    flush()
    return bodies


def peer_vectors():
    """Peer datagrams (§17.1), reconciliation (§17.3), Bloom digests (§17.4) and event fragments (§17.5)."""
    salt = 0x0123456789ABCDEF
    items = peer_items(60, "fp")
    fingerprints = [{"from": a, "to": b, "fingerprint": peer_fingerprint(items[a:b], salt).hex()}
                    for a, b in [(0, 0), (0, 1), (0, 60), (10, 35), (59, 60)]]
    same_time = [(1760000000000, bytes.fromhex("abcd" + "00" * 30)), (1760000000000, bytes.fromhex("abce" + "00" * 30))]
    bounds = [{"lower": [items[0][0], items[0][1].hex()], "upper": [items[1][0], items[1][1].hex()],
               "bound": [bound_between(items[0], items[1])[0], bound_between(items[0], items[1])[1].hex()]},
              {"lower": [same_time[0][0], same_time[0][1].hex()], "upper": [same_time[1][0], same_time[1][1].hex()],
               "bound": [same_time[1][0], bound_between(*same_time)[1].hex()]}]

    sessions = []
    for name, a_count, a_only, b_only, session_salt in [
        ("two sets of 700 differing by 3 on one side and 2 on the other", 700, 3, 2, 0x1111222233334444),
        ("a side holding nothing", 0, 0, 40, 0x5555666677778888),
        ("sets of 300 differing by 30 on each side", 300, 30, 30, 0x9999AAAABBBBCCCC),
        ("equal sets of 600", 600, 0, 0, 0x0F0F0F0F0F0F0F0F),
    ]:
        shared = peer_items(a_count, name)
        a = sorted(set(shared + peer_items(a_only, name + " a")))
        b = sorted(set(shared + peer_items(b_only, name + " b")))
        sides = [a, b]
        first = cut(a, (INFINITY, b""), session_salt)
        message = (session_salt, (0, b""), first)
        steps, sender = [], 0
        encoded = encode_message(*message)
        while True:
            receiver = 1 - sender
            reply, send = answer(sides[receiver], decode_message(encoded))
            reply_bytes = encode_message(*reply) if reply else None
            steps.append({"from": "ab"[sender], "message_hex": encoded.hex(),
                          "answer_hex": reply_bytes.hex() if reply_bytes else None,
                          "sends": [[t, h.hex()] for t, h in send]})
            if reply_bytes is None:
                break
            encoded, sender = reply_bytes, receiver
        sessions.append({"name": name, "salt": f"{session_salt:016x}", "a": [[t, h.hex()] for t, h in a],
                         "b": [[t, h.hex()] for t, h in b], "steps": steps})

    def message_hex(lower, tail):
        return (salt.to_bytes(8, "big") + lower + tail).hex()
    malformed = [
        {"name": "shorter than its salt", "hex": "000000"},
        {"name": "a fingerprint cut short", "hex": message_hex(b"\x00\x00", bytes([(5 << 3) | 1, 1, 2]))},
        {"name": "an upper bound equal to the lower", "hex": message_hex(b"\x0a\x00", bytes([1 << 3]))},
        {"name": "a range after the infinite bound", "hex": message_hex(b"\x00\x00", bytes([0, 1 << 3]))},
        {"name": "the infinite bound with a prefix", "hex": message_hex(b"\x00\x00", bytes([4]))},
        {"name": "a prefix ending in a zero byte", "hex": message_hex(b"\x00\x00", bytes([(2 << 3) | 4, 1, 0]))},
        {"name": "a prefix of 33 bytes", "hex": message_hex(b"\x00\x00", bytes([(2 << 3) | 4, 33]) + bytes([1]) * 33)},
        {"name": "a varint not in its shortest form", "hex": message_hex(b"\x80\x00\x00", b"")},
        {"name": "a varint past 64 bits", "hex": message_hex(b"\xff" * 9 + b"\x02\x00", b"")},
        {"name": "1,025 short ids", "hex": message_hex(b"\x00\x00", bytes([2, 0x81, 0x08]) + bytes(2050))},
        {"name": "an infinite lower bound", "hex": message_hex(b"\xff" * 9 + b"\x01\x00", b"")},
    ]
    for case in malformed:
        try:
            decode_message(bytes.fromhex(case["hex"]))
            raise SystemExit(f"malformed message accepted: {case['name']}")
        except ValueError:
            pass

    hashes = [h for _, h in peer_items(50, "bloom")]
    others = [h for _, h in peer_items(200, "bloom others")]
    digest = bloom_digest(hashes, salt)
    bloom = {"salt": f"{salt:016x}", "hashes": [h.hex() for h in hashes], "digest_hex": digest.hex(),
             "others": [{"hash": h.hex(), "contained": bloom_contains(digest, h)} for h in others]}

    alice, mallory = Device("alice"), Device("mallory")
    nonce, echo = bytes(range(1, 13)), bytes(range(100, 112))
    room_key = hashlib.sha256(b"parley vector psk room key").digest()
    datagram_key = hkdf_sha256(room_key, b"general", b"parley.peer.datagram.v1", 32)
    plain = datagram(alice, 1, "general", 1760000000000, nonce, echo, b"\x01\x02\x03")
    sealed = datagram(alice, 3, "general", 1760000000000, nonce, None, b"sealed body", key=datagram_key)
    forged = bytearray(datagram(mallory, 1, "general", 1760000000000, nonce, echo, b"\x01\x02\x03"))
    forged[7 + 7:7 + 7 + 32] = alice.public
    altered = bytearray(plain)
    altered[-70] ^= 1
    datagrams = {
        "sender": "alice", "room_key_hex": room_key.hex(), "datagram_key_hex": datagram_key.hex(),
        "valid": [
            {"name": "a reconciliation message in clear, echoing a nonce", "kind": 1, "room_id": "general", "sent_ms": 1760000000000,
             "nonce_hex": nonce.hex(), "echo_hex": echo.hex(), "body_hex": "010203", "sealed": False, "hex": plain.hex()},
            {"name": "an event fragment sealed in a pre-shared-key room", "kind": 3, "room_id": "general", "sent_ms": 1760000000000,
             "nonce_hex": nonce.hex(), "echo_hex": "00" * 12, "body_hex": b"sealed body".hex(), "sealed": True, "hex": sealed.hex()},
        ],
        "invalid": [
            {"name": "one byte flipped in the body", "hex": bytes(altered).hex(), "error": "bad_signature"},
            {"name": "mallory's signature under alice's key", "hex": bytes(forged).hex(), "error": "bad_signature"},
            {"name": "cut short", "hex": plain[:60].hex(), "error": "malformed"},
            {"name": "an unknown kind", "hex": (plain[:4] + b"\x63" + plain[5:]).hex(), "error": "malformed"},
            {"name": "an unknown flag", "hex": (plain[:5] + b"\x02" + plain[6:]).hex(), "error": "malformed"},
            {"name": "a room id that is none", "hex": (plain[:7] + b"G" + plain[8:]).hex(), "error": "malformed"},
            {"name": "over 1,232 bytes", "hex": (plain + bytes(1232)).hex(), "error": "oversized"},
        ],
    }
    lines = [b'{"n":%d}' % i for i in range(5)] + [b"x" * 2500] + [b'{"n":9}']
    blocks = block_piece_vectors()
    announcements = announcement_vectors()
    batches = {"budget": 600, "batch_ids": [1, 2, 3, 4], "lines": [line.decode() for line in lines],
               "bodies_hex": [body.hex() for body in fragments(lines, 600, [1, 2, 3, 4])]}
    return {"description": "Peers (§17). `fingerprints`: for `items` ([timestamp_ms, event hash hex], sorted) and `salt` (hex), "
                           "the fingerprint of items[from..<to]. `bounds`: the shortest bound between two neighbours. "
                           "`sessions`: two sides `a` and `b`; `a` starts a session with `salt` (§17.3 cutting rules); each "
                           "step's `message_hex` answered by the other side MUST give exactly `answer_hex` (null: nothing to "
                           "send) and the items it `sends`. `malformed`: messages a reader MUST refuse. `bloom`: a digest over "
                           "all prefixes of `hashes`, and whether each of `others` is contained. `datagrams`: signed by the "
                           "vector device alice; `valid` ones MUST encode to `hex` from their fields (sealed under "
                           "`datagram_key_hex`, derived from `room_key_hex`) and verify; `invalid` ones MUST be refused with "
                           "`error`. `event_batches`: `lines` packed for a body `budget` with batch ids in order give "
                           "exactly `bodies_hex`. `blocks` (§17.6): each tier's piece count; `small_block_hex` cut into the "
                           "piece bodies `small_pieces_hex` and its absence `absent_hex`; `wants` of `large_block_id` "
                           "(tier 20) whose `ranges` ([start, end)) encode to `hex`; `refused_wants` a reader MUST refuse. "
                           "`announcements` (§17.9): each room's announcement `key_hex` from its create hash (and pre-shared "
                           "key), and the announcement of `port` at `sent_ms` with `nonce_hex` tagging the rooms in order.",
            "salt": f"{salt:016x}", "items": [[t, h.hex()] for t, h in items], "fingerprints": fingerprints, "bounds": bounds,
            "short_ids": [{"hash": items[i][1].hex(), "short_id": short_id(items[i][1], salt)} for i in range(3)],
            "sessions": sessions, "malformed": malformed, "bloom": bloom, "datagrams": datagrams, "event_batches": batches,
            "blocks": blocks, "announcements": announcements}


def announcement_key(create_hash, psk, room_id):
    return hkdf_sha256(create_hash.encode() + (psk or b""), b"parley.peer.discovery.v1", room_id.encode(), 32)


def announcement(port, sent_ms, nonce, keys):
    """A LAN announcement (§17.9) with a tag per room key, in the order given."""
    mac_input = b"parley.peer.announce.v1\n" + port.to_bytes(2, "big") + sent_ms.to_bytes(8, "big") + nonce
    tags = [hmac_sha256(key, mac_input)[:8] for key in keys]
    return b"PRLA" + bytes([1]) + port.to_bytes(2, "big") + sent_ms.to_bytes(8, "big") + nonce + bytes([len(tags)]) + b"".join(tags)


def announcement_vectors():
    """LAN announcements (§17.9)."""
    rooms = [("general", "4a5b" * 16, None), ("secret", "c0de" * 16, hashlib.sha256(b"parley vector psk room key").digest())]
    keys = [announcement_key(h, psk, r) for r, h, psk in rooms]
    nonce = bytes(range(40, 52))
    return {"rooms": [{"room_id": r, "create_hash": h, "pre_shared_key_hex": psk.hex() if psk else None, "key_hex": k.hex()}
                      for (r, h, psk), k in zip(rooms, keys)],
            "port": 7701, "sent_ms": 1760000000000, "nonce_hex": nonce.hex(),
            "hex": announcement(7701, 1760000000000, nonce, keys).hex()}


PIECE_BYTES, MAX_WANT_PIECES, MAX_WANT_RANGES = 960, 256, 16


def piece_count(tier):
    return -(-(1 << tier) // PIECE_BYTES)


def encode_want(block_id, tier, ranges):
    out, end = bytearray(block_id + bytes([tier]) + varint(len(ranges))), 0
    for start, stop in ranges:
        out += varint(start - end) + varint(stop - start)
        end = stop
    return bytes(out)


def decode_want(data):
    """A want's ranges (§17.6), or ValueError for any want a receiver refuses."""
    if len(data) < 33 or data[32] not in (10, 16, 20, 24):
        raise ValueError("no block id and known tier")
    tier, at = data[32], 33
    count, at = read_varint(data, at)
    if not 1 <= count <= MAX_WANT_RANGES:
        raise ValueError("range count")
    pieces, end, total, ranges = piece_count(tier), 0, 0, []
    for index in range(count):
        gap, at = read_varint(data, at)
        length, at = read_varint(data, at)
        if (index > 0 and gap < 1) or length < 1 or end + gap + length > pieces:
            raise ValueError("range")
        total += length
        if total > MAX_WANT_PIECES:
            raise ValueError("too many pieces")
        ranges.append([end + gap, end + gap + length])
        end += gap + length
    if at != len(data):
        raise ValueError("trailing bytes")
    return ranges


def block_piece_vectors():
    """Block wants and pieces (§17.6)."""
    small = bytes((i * 7 + 3) % 256 for i in range(1 << 10))
    small_id = hashlib.sha256(small).digest()
    pieces = [small[i * PIECE_BYTES:(i + 1) * PIECE_BYTES] for i in range(piece_count(10))]
    large_id = hashlib.sha256(b"a large block's id").digest()
    wants = [{"tier": 20, "ranges": r, "hex": encode_want(large_id, 20, r).hex()}
             for r in ([[0, 256]], [[3, 5], [9, 10], [1000, 1093]], [[1092, 1093]])]
    for want in wants:
        assert decode_want(bytes.fromhex(want["hex"])) == want["ranges"]
    refused = [
        {"name": "past the block's end", "hex": encode_want(large_id, 20, [[1090, 1094]]).hex()},
        {"name": "ranges that touch", "hex": (large_id + bytes([20, 2, 0, 5, 0, 5])).hex()},
        {"name": "257 pieces", "hex": encode_want(large_id, 20, [[0, 200], [201, 258]]).hex()},
        {"name": "no range", "hex": (large_id + bytes([20, 0])).hex()},
        {"name": "17 ranges", "hex": encode_want(large_id, 20, [[2 * i, 2 * i + 1] for i in range(17)]).hex()},
        {"name": "an unknown tier", "hex": (large_id + bytes([11, 1, 0, 1])).hex()},
        {"name": "a byte after its ranges", "hex": (encode_want(large_id, 20, [[0, 1]]) + b"\x00").hex()},
    ]
    for case in refused:
        try:
            decode_want(bytes.fromhex(case["hex"]))
            raise SystemExit(f"refused want accepted: {case['name']}")
        except ValueError:
            pass
    return {"piece_bytes": PIECE_BYTES, "piece_counts": {str(t): piece_count(t) for t in (10, 16, 20, 24)},
            "small_block_hex": small.hex(), "small_block_id": small_id.hex(),
            "small_pieces_hex": [(small_id + bytes([10]) + varint(i) + piece).hex() for i, piece in enumerate(pieces)],
            "absent_hex": (small_id + bytes([10])).hex(), "wants": wants, "refused_wants": refused,
            "large_block_id": large_id.hex()}


def main():
    outputs = {
        "canonical_json.json": canonical_vectors(),
        "ed25519_rfc8032.json": rfc8032_vectors(),
        "ed25519_strict.json": strict_vectors(),
        "events.json": event_vectors(),
        "chains.json": chain_vectors(),
        "state.json": state_vectors(),
        "encryption.json": encryption_vectors(),
        "codes.json": code_vectors(),
        "archives.json": archive_vectors(),
        "relay.json": relay_vectors(),
        "blocks.json": block_vectors(),
        "receipts.json": receipt_vectors(),
        "peers.json": peer_vectors(),
    }
    check = "--check" in sys.argv
    failed = False
    for name, value in outputs.items():
        text = json.dumps(value, indent=1, ensure_ascii=False) + "\n"
        path = os.path.join(VECTORS, name)
        if check:
            with open(path, encoding="utf-8") as handle:
                if handle.read() != text:
                    print(f"{name}: differs from what the generator produces", file=sys.stderr)
                    failed = True
        else:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
    if failed:
        sys.exit(1)
    print("vectors " + ("match" if check else "written") + ": " + ", ".join(outputs))


if __name__ == "__main__":
    main()
