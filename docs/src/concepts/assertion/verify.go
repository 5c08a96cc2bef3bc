// Verify a Portcullis identity assertion in a Go service (standard library
// only).
//
//	go run verify.go ed25519|hmac KEY_FILE AUDIENCE METHOD TARGET TOKEN
//
// KEY_FILE is the gateway's Ed25519 public key (PEM) or the shared HMAC
// secret (64 hex characters); TARGET is the path and query the request
// arrived with. Prints the partner id and exits 0, or prints why and exits 1.
package main

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

const leewaySeconds = 5

type claims struct {
	Iss string `json:"iss"`
	Aud string `json:"aud"`
	Sub string `json:"sub"`
	Htm string `json:"htm"`
	Htu string `json:"htu"`
	Iat *int64 `json:"iat"`
	Exp *int64 `json:"exp"`
}

func loadKey(algorithm, keyFile string) (any, error) {
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	if algorithm == "ed25519" {
		block, _ := pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM block in the key file")
		}
		key, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		public, ok := key.(ed25519.PublicKey)
		if !ok {
			return nil, errors.New("not an Ed25519 public key")
		}
		return public, nil
	}
	secret, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(secret) != 32 {
		return nil, errors.New("the secret must be 64 hex characters")
	}
	return secret, nil
}

// verify returns the partner id the assertion names, or why not.
func verify(token, algorithm string, key any, audience, method, target string, now time.Time) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", errors.New("not a compact JWT")
	}
	b64 := base64.RawURLEncoding
	headerJSON, err1 := b64.DecodeString(parts[0])
	claimsJSON, err2 := b64.DecodeString(parts[1])
	signature, err3 := b64.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return "", errors.New("not base64url")
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(headerJSON, &header); err != nil {
		return "", errors.New("malformed header")
	}
	signed := []byte(parts[0] + "." + parts[1])
	// The algorithm is the service's choice, never the token's.
	if algorithm == "ed25519" {
		if header.Alg != "EdDSA" {
			return "", errors.New("not an EdDSA token")
		}
		if !ed25519.Verify(key.(ed25519.PublicKey), signed, signature) {
			return "", errors.New("bad signature")
		}
	} else {
		if header.Alg != "HS256" {
			return "", errors.New("not an HS256 token")
		}
		mac := hmac.New(sha256.New, key.([]byte))
		mac.Write(signed)
		if !hmac.Equal(mac.Sum(nil), signature) {
			return "", errors.New("bad signature")
		}
	}
	var c claims
	if err := json.Unmarshal(claimsJSON, &c); err != nil {
		return "", errors.New("malformed claims")
	}
	if c.Iss != "portcullis" || c.Aud != audience {
		return "", errors.New("issued for someone else")
	}
	if c.Iat == nil || c.Exp == nil {
		return "", errors.New("no iat or exp")
	}
	seconds := now.Unix()
	if seconds < *c.Iat-leewaySeconds || seconds > *c.Exp+leewaySeconds {
		return "", errors.New("expired or not yet valid")
	}
	// Bound to this exact request: a token lifted from another is worthless.
	if c.Htm != method || c.Htu != target {
		return "", errors.New("issued for another request")
	}
	path, _, _ := strings.Cut(target, "?")
	segments := strings.Split(path, "/")
	if len(segments) > 2 && segments[1] == "partners" && segments[2] != c.Sub {
		return "", errors.New("issued for another partner")
	}
	return c.Sub, nil
}

func main() {
	args := os.Args[1:]
	if len(args) != 6 || (args[0] != "ed25519" && args[0] != "hmac") {
		fmt.Fprintln(os.Stderr, "usage: go run verify.go ed25519|hmac KEY_FILE AUDIENCE METHOD TARGET TOKEN")
		os.Exit(2)
	}
	key, err := loadKey(args[0], args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	partner, err := verify(args[5], args[0], key, args[2], args[3], args[4], time.Now())
	if err != nil {
		fmt.Println("refused:", err)
		os.Exit(1)
	}
	fmt.Println(partner)
}
