// Verify a Portcullis identity assertion in a Node.js service (18 or later;
// no packages needed).
//
//     node verify.mjs ed25519|hmac KEY_FILE AUDIENCE METHOD TARGET TOKEN
//
// KEY_FILE is the gateway's Ed25519 public key (PEM) or the shared HMAC
// secret (64 hex characters); TARGET is the path and query the request
// arrived with. Prints the partner id and exits 0, or prints why and exits 1.

import { createHmac, createPublicKey, timingSafeEqual, verify } from "node:crypto";
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const LEEWAY_SECONDS = 5;

export function loadKey(algorithm, keyFile) {
  const data = readFileSync(keyFile);
  if (algorithm === "ed25519") return createPublicKey(data);
  const secret = Buffer.from(data.toString().trim(), "hex");
  if (secret.length !== 32) throw new Error("the secret must be 64 hex characters");
  return secret;
}

// The partner id the assertion names; throws saying why not.
export function verifyAssertion(token, algorithm, key, audience, method, target, now = Date.now() / 1000) {
  const parts = token.split(".");
  if (parts.length !== 3) throw new Error("not a compact JWT");
  const signed = Buffer.from(`${parts[0]}.${parts[1]}`);
  const header = JSON.parse(Buffer.from(parts[0], "base64url"));
  const signature = Buffer.from(parts[2], "base64url");
  // The algorithm is the service's choice, never the token's.
  if (algorithm === "ed25519") {
    if (header.alg !== "EdDSA") throw new Error("not an EdDSA token");
    if (!verify(null, signed, key, signature)) throw new Error("bad signature");
  } else {
    if (header.alg !== "HS256") throw new Error("not an HS256 token");
    const expected = createHmac("sha256", key).update(signed).digest();
    if (expected.length !== signature.length || !timingSafeEqual(expected, signature)) {
      throw new Error("bad signature");
    }
  }
  const claims = JSON.parse(Buffer.from(parts[1], "base64url"));
  if (claims.iss !== "portcullis" || claims.aud !== audience) throw new Error("issued for someone else");
  if (!Number.isInteger(claims.iat) || !Number.isInteger(claims.exp)) throw new Error("no iat or exp");
  if (now < claims.iat - LEEWAY_SECONDS || now > claims.exp + LEEWAY_SECONDS) {
    throw new Error("expired or not yet valid");
  }
  // Bound to this exact request: a token lifted from another is worthless.
  if (claims.htm !== method || claims.htu !== target) throw new Error("issued for another request");
  const segments = target.split("?")[0].split("/");
  if (segments.length > 2 && segments[1] === "partners" && segments[2] !== claims.sub) {
    throw new Error("issued for another partner");
  }
  return claims.sub;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [algorithm, keyFile, audience, method, target, token] = process.argv.slice(2);
  if (process.argv.length !== 8 || !["ed25519", "hmac"].includes(algorithm)) {
    console.error("usage: node verify.mjs ed25519|hmac KEY_FILE AUDIENCE METHOD TARGET TOKEN");
    process.exit(2);
  }
  try {
    console.log(verifyAssertion(token, algorithm, loadKey(algorithm, keyFile), audience, method, target));
  } catch (e) {
    console.log(`refused: ${e.message}`);
    process.exit(1);
  }
}
