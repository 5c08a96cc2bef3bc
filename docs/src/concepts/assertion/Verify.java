// Verify a Portcullis identity assertion in a Java service (Java 17 or later;
// no libraries needed; a service with a JSON library uses it for the claims).
//
//     java Verify.java ed25519|hmac KEY_FILE AUDIENCE METHOD TARGET TOKEN
//
// KEY_FILE is the gateway's Ed25519 public key (PEM) or the shared HMAC
// secret (64 hex characters); TARGET is the path and query the request
// arrived with. Prints the partner id and exits 0, or prints why and exits 1.

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.Key;
import java.security.KeyFactory;
import java.security.MessageDigest;
import java.security.PublicKey;
import java.security.Signature;
import java.security.spec.X509EncodedKeySpec;
import java.util.Base64;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.Map;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

public final class Verify {
    private static final long LEEWAY_SECONDS = 5;

    public static Key loadKey(String algorithm, Path keyFile) throws Exception {
        String text = Files.readString(keyFile, StandardCharsets.US_ASCII).trim();
        if (algorithm.equals("ed25519")) {
            String body = text.replaceAll("-----[A-Z ]+-----", "").replaceAll("\\s", "");
            byte[] der = Base64.getDecoder().decode(body);
            return KeyFactory.getInstance("Ed25519").generatePublic(new X509EncodedKeySpec(der));
        }
        byte[] secret = HexFormat.of().parseHex(text);
        if (secret.length != 32) {
            throw new IllegalArgumentException("the secret must be 64 hex characters");
        }
        return new SecretKeySpec(secret, "HmacSHA256");
    }

    /** The partner id the assertion names; throws saying why not. */
    public static String verify(String token, String algorithm, Key key, String audience,
            String method, String target, long now) throws GeneralSecurityException {
        String[] parts = token.split("\\.", -1);
        if (parts.length != 3) {
            throw new GeneralSecurityException("not a compact JWT");
        }
        Base64.Decoder b64 = Base64.getUrlDecoder();
        byte[] signed = (parts[0] + "." + parts[1]).getBytes(StandardCharsets.US_ASCII);
        Map<String, Object> header = Claims.parse(new String(b64.decode(parts[0]), StandardCharsets.UTF_8));
        byte[] signature = b64.decode(parts[2]);
        // The algorithm is the service's choice, never the token's.
        if (algorithm.equals("ed25519")) {
            if (!"EdDSA".equals(header.get("alg"))) {
                throw new GeneralSecurityException("not an EdDSA token");
            }
            Signature verifier = Signature.getInstance("Ed25519");
            verifier.initVerify((PublicKey) key);
            verifier.update(signed);
            if (!verifier.verify(signature)) {
                throw new GeneralSecurityException("bad signature");
            }
        } else {
            if (!"HS256".equals(header.get("alg"))) {
                throw new GeneralSecurityException("not an HS256 token");
            }
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(key);
            if (!MessageDigest.isEqual(mac.doFinal(signed), signature)) {
                throw new GeneralSecurityException("bad signature");
            }
        }
        Map<String, Object> claims = Claims.parse(new String(b64.decode(parts[1]), StandardCharsets.UTF_8));
        if (!"portcullis".equals(claims.get("iss")) || !audience.equals(claims.get("aud"))) {
            throw new GeneralSecurityException("issued for someone else");
        }
        if (!(claims.get("iat") instanceof Long iat) || !(claims.get("exp") instanceof Long exp)) {
            throw new GeneralSecurityException("no iat or exp");
        }
        if (now < iat - LEEWAY_SECONDS || now > exp + LEEWAY_SECONDS) {
            throw new GeneralSecurityException("expired or not yet valid");
        }
        // Bound to this exact request: a token lifted from another is worthless.
        if (!method.equals(claims.get("htm")) || !target.equals(claims.get("htu"))) {
            throw new GeneralSecurityException("issued for another request");
        }
        String[] segments = target.split("\\?", 2)[0].split("/", -1);
        if (segments.length > 2 && segments[1].equals("partners") && !segments[2].equals(claims.get("sub"))) {
            throw new GeneralSecurityException("issued for another partner");
        }
        if (!(claims.get("sub") instanceof String sub)) {
            throw new GeneralSecurityException("no sub");
        }
        return sub;
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 6 || !(args[0].equals("ed25519") || args[0].equals("hmac"))) {
            System.err.println("usage: java Verify.java ed25519|hmac KEY_FILE AUDIENCE METHOD TARGET TOKEN");
            System.exit(2);
        }
        Key key = loadKey(args[0], Path.of(args[1]));
        try {
            long now = System.currentTimeMillis() / 1000;
            System.out.println(verify(args[5], args[0], key, args[2], args[3], args[4], now));
        } catch (GeneralSecurityException | IllegalArgumentException e) {
            System.out.println("refused: " + e.getMessage());
            System.exit(1);
        }
    }

    /** A flat JSON object of strings and integers: all a JWT header or these claims hold. */
    static final class Claims {
        private final String text;
        private int at;

        private Claims(String text) {
            this.text = text;
        }

        static Map<String, Object> parse(String text) throws GeneralSecurityException {
            Claims p = new Claims(text);
            Map<String, Object> out = new HashMap<>();
            p.expect('{');
            if (p.peek() == '}') {
                p.at++;
            } else {
                do {
                    String name = p.string();
                    p.expect(':');
                    if (out.put(name, p.value()) != null) {
                        throw new GeneralSecurityException("repeated claim " + name);
                    }
                } while (p.next() == ',');
                p.at--;
                p.expect('}');
            }
            p.skipSpace();
            if (p.at != text.length()) {
                throw new GeneralSecurityException("trailing bytes after the claims");
            }
            return out;
        }

        private Object value() throws GeneralSecurityException {
            if (peek() == '"') {
                return string();
            }
            int start = at;
            if (text.startsWith("-", at)) {
                at++;
            }
            while (at < text.length() && Character.isDigit(text.charAt(at))) {
                at++;
            }
            try {
                return Long.parseLong(text.substring(start, at));
            } catch (NumberFormatException e) {
                throw new GeneralSecurityException("a claim is neither text nor an integer");
            }
        }

        private String string() throws GeneralSecurityException {
            expect('"');
            StringBuilder out = new StringBuilder();
            while (at < text.length()) {
                char c = text.charAt(at++);
                if (c == '"') {
                    return out.toString();
                }
                if (c != '\\') {
                    out.append(c);
                    continue;
                }
                if (at >= text.length()) {
                    break;
                }
                char e = text.charAt(at++);
                switch (e) {
                    case '"', '\\', '/' -> out.append(e);
                    case 'b' -> out.append('\b');
                    case 'f' -> out.append('\f');
                    case 'n' -> out.append('\n');
                    case 'r' -> out.append('\r');
                    case 't' -> out.append('\t');
                    case 'u' -> {
                        if (at + 4 > text.length()) {
                            throw new GeneralSecurityException("bad escape");
                        }
                        out.append((char) Integer.parseInt(text.substring(at, at + 4), 16));
                        at += 4;
                    }
                    default -> throw new GeneralSecurityException("bad escape");
                }
            }
            throw new GeneralSecurityException("unterminated string");
        }

        private void skipSpace() {
            while (at < text.length() && Character.isWhitespace(text.charAt(at))) {
                at++;
            }
        }

        private char peek() throws GeneralSecurityException {
            skipSpace();
            if (at >= text.length()) {
                throw new GeneralSecurityException("truncated claims");
            }
            return text.charAt(at);
        }

        private char next() throws GeneralSecurityException {
            char c = peek();
            at++;
            return c;
        }

        private void expect(char c) throws GeneralSecurityException {
            if (next() != c) {
                throw new GeneralSecurityException("malformed claims");
            }
        }
    }
}
