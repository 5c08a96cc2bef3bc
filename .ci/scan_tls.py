"""Checks an sslyze JSON report against Portcullis' transport policy."""
import json
import sys

report = json.load(open(sys.argv[1]))
results = report["server_scan_results"]
if not results or results[0].get("scan_status") != "COMPLETED":
    sys.exit(f"scan_tls: sslyze did not complete: {results[0].get('connectivity_error_trace') if results else 'no result'}")
scan = results[0]["scan_result"]
problems = []


def accepted(name):
    attempt = scan.get(name) or {}
    if attempt.get("status") != "COMPLETED":
        problems.append(f"{name}: scan {attempt.get('status')}")
        return []
    return [s["cipher_suite"]["name"] for s in attempt["result"]["accepted_cipher_suites"]]


for old in ("ssl_2_0_cipher_suites", "ssl_3_0_cipher_suites", "tls_1_0_cipher_suites", "tls_1_1_cipher_suites"):
    if accepted(old):
        problems.append(f"{old}: accepted {accepted(old)}")
tls12 = accepted("tls_1_2_cipher_suites")
tls13 = accepted("tls_1_3_cipher_suites")
if not tls13:
    problems.append("TLS 1.3 is not offered")
for suite in tls12:
    forward_secret = "_ECDHE_" in suite
    aead = suite.endswith("_GCM_SHA256") or suite.endswith("_GCM_SHA384") or "CHACHA20_POLY1305" in suite
    if not (forward_secret and aead):
        problems.append(f"TLS 1.2 suite {suite} is not a forward-secret AEAD suite")
for suite in tls13:
    if not ("_GCM_" in suite or "CHACHA20_POLY1305" in suite):
        problems.append(f"TLS 1.3 suite {suite} is not AEAD")

reneg = (scan.get("session_renegotiation") or {}).get("result") or {}
if reneg.get("is_vulnerable_to_client_renegotiation_dos"):
    problems.append("client-initiated renegotiation is accepted")
if tls12 and reneg.get("supports_secure_renegotiation") is not True:
    problems.append("TLS 1.2 without the secure renegotiation indication (RFC 5746)")
compression = (scan.get("tls_compression") or {}).get("result") or {}
if compression.get("supports_compression"):
    problems.append("TLS compression is supported (CRIME)")
headers = (scan.get("http_headers") or {}).get("result") or {}
hsts = headers.get("strict_transport_security_header")
if not hsts or not hsts.get("max_age"):
    problems.append(f"no HSTS header: {hsts}")

print(f"scan_tls: TLS 1.2 suites {tls12}")
print(f"scan_tls: TLS 1.3 suites {tls13}")
print(f"scan_tls: renegotiation {reneg}, compression {compression.get('supports_compression')}, HSTS {hsts}")
if problems:
    sys.exit("scan_tls: FAIL:\n  " + "\n  ".join(problems))
print("scan_tls: OK")
