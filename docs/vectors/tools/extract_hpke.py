#!/usr/bin/env python3
"""Extracts Parley's HPKE suite from the RFC 9180 test vectors shipped with swift-crypto.

Reads the full vector list (a JSON array) on stdin and writes the subset Parley's key seals use to stdout: base mode
(mode 0) with DHKEM(X25519, HKDF-SHA256) (kem_id 32), HKDF-SHA256 (kdf_id 1) and AES-256-GCM (aead_id 2). Each
entry keeps all its fields except `exports`, and only its first 8 `encryptions`.

    git -C /path/to/swift-crypto show "4.5.2:Tests/CryptoTests/HPKE/hpke-test-vectors.json" \\
        | python3 docs/vectors/tools/extract_hpke.py > docs/vectors/hpke_rfc9180.json
"""
import json
import sys

SUITE = {"mode": 0, "kem_id": 32, "kdf_id": 1, "aead_id": 2}
ENCRYPTIONS = 8


def extract(vectors):
    subset = []
    for entry in vectors:
        if all(entry.get(field) == value for field, value in SUITE.items()):
            kept = {key: value for key, value in entry.items() if key != "exports"}
            kept["encryptions"] = entry["encryptions"][:ENCRYPTIONS]
            subset.append(kept)
    if not subset:
        raise SystemExit("no vectors of the suite mode 0, kem 32, kdf 1, aead 2 in the input")
    return subset


def main():
    sys.stdout.write(json.dumps(extract(json.load(sys.stdin)), indent=1) + "\n")


if __name__ == "__main__":
    main()
