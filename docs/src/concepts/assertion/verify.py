#!/usr/bin/env python3
"""Verify a Portcullis identity assertion in a Python service.

Needs the `cryptography` package for Ed25519 (`pip install cryptography`, or
Debian's python3-cryptography); HS256 needs only the standard library.

    python3 verify.py ed25519|hmac KEY_FILE AUDIENCE METHOD TARGET TOKEN

KEY_FILE is the gateway's Ed25519 public key (PEM) or the shared HMAC secret
(64 hex characters); TARGET is the path and query the request arrived with.
Prints the partner id and exits 0, or prints why and exits 1.
"""

import base64
import hashlib
import hmac
import json
import sys
import time

LEEWAY_SECONDS = 5


def _b64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_key(algorithm, key_file):
    with open(key_file, "rb") as f:
        data = f.read()
    if algorithm == "ed25519":
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        return load_pem_public_key(data)
    secret = bytes.fromhex(data.decode().strip())
    if len(secret) != 32:
        raise ValueError("the secret must be 64 hex characters")
    return secret


def verify(token, algorithm, key, audience, method, target, now=None):
    """The partner id the assertion names, or ValueError saying why not."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWT")
    signed = f"{parts[0]}.{parts[1]}".encode()
    header = json.loads(_b64url(parts[0]))
    signature = _b64url(parts[2])
    # The algorithm is the service's choice, never the token's.
    if algorithm == "ed25519":
        from cryptography.exceptions import InvalidSignature

        if header.get("alg") != "EdDSA":
            raise ValueError("not an EdDSA token")
        try:
            key.verify(signature, signed)
        except InvalidSignature:
            raise ValueError("bad signature") from None
    else:
        if header.get("alg") != "HS256":
            raise ValueError("not an HS256 token")
        expected = hmac.new(key, signed, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, signature):
            raise ValueError("bad signature")
    claims = json.loads(_b64url(parts[1]))
    now = time.time() if now is None else now
    if claims.get("iss") != "portcullis" or claims.get("aud") != audience:
        raise ValueError("issued for someone else")
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int) or not isinstance(exp, int):
        raise ValueError("no iat or exp")
    if not iat - LEEWAY_SECONDS <= now <= exp + LEEWAY_SECONDS:
        raise ValueError("expired or not yet valid")
    # Bound to this exact request: a token lifted from another is worthless.
    if claims.get("htm") != method or claims.get("htu") != target:
        raise ValueError("issued for another request")
    segments = target.split("?", 1)[0].split("/")
    if len(segments) > 2 and segments[1] == "partners" and segments[2] != claims.get("sub"):
        raise ValueError("issued for another partner")
    return claims["sub"]


def main(argv):
    if len(argv) != 7 or argv[1] not in ("ed25519", "hmac"):
        print("usage: verify.py ed25519|hmac KEY_FILE AUDIENCE METHOD TARGET TOKEN", file=sys.stderr)
        return 2
    _, algorithm, key_file, audience, method, target, token = argv
    try:
        print(verify(token, algorithm, load_key(algorithm, key_file), audience, method, target))
    except (ValueError, KeyError) as e:
        print(f"refused: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
