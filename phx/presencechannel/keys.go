package presencechannel

import (
	"crypto"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// TokenAuth is what token mode needs beyond Config.Secret: the public keys
// of asymmetric tokens and the claims checked. Config embeds it. Token
// mode is on when Config.Secret or Keyfunc is set; with both, an HMAC
// token (HS256) is checked against the Secret alone and any other against
// Keyfunc alone.
type TokenAuth struct {
	// Keyfunc returns the public key that verifies an asymmetric token
	// (RS*, PS*, ES*, EdDSA): a JWKS client's (keyfunc/v3's Keyfunc
	// method) or PublicKey.Keyfunc for one key from a PEM file. It is
	// called only for a token whose algorithm is one of Algorithms, and
	// never for an HMAC token. Called from the connecting request's
	// goroutine; it may block on a refresh.
	Keyfunc jwt.Keyfunc

	// Algorithms are the asymmetric algorithms accepted, pinned so that a
	// token cannot choose how it is checked. Default DefaultAlgorithms
	// (with a Keyfunc); for one PEM key, PublicKey.Algorithm. HS256 is
	// accepted exactly when Secret is set; none and the HMAC algorithms
	// are refused here.
	Algorithms []string

	// Issuer, when set, requires the token's iss claim (a string) to
	// equal it.
	Issuer string

	// Audience, when set, requires the token's aud claim (a string or an
	// array of strings) to hold it.
	Audience string

	// KeyClaim names the claim (a string) whose value is the presence
	// key. Default "sub". The claims read for other purposes (exp, nbf,
	// iss, aud, topics) are refused: a key must not double as a date or a
	// grant.
	KeyClaim string
}

// DefaultAlgorithms are the algorithms a Keyfunc's tokens may use when
// TokenAuth.Algorithms is empty: the usual ones of an identity provider's
// JWKS (one per key type).
var DefaultAlgorithms = []string{"RS256", "ES256", "EdDSA"}

// asymmetricAlgorithms are the values TokenAuth.Algorithms may hold.
var asymmetricAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// reservedClaims are the claims TokenAuth.KeyClaim may not name.
var reservedClaims = []string{"exp", "nbf", "iss", "aud", "topics"}

// PublicKey is one public key that verifies tokens, read from PEM.
type PublicKey struct {
	// Key is an *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey.
	Key crypto.PublicKey
	// Algorithm is the one algorithm the key is accepted with: RS256 for
	// RSA, ES256 / ES384 / ES512 for ECDSA on P-256 / P-384 / P-521,
	// EdDSA for Ed25519.
	Algorithm string
}

// Keyfunc returns the key, for TokenAuth.Keyfunc.
func (k *PublicKey) Keyfunc(*jwt.Token) (any, error) { return k.Key, nil }

// ParsePublicKey reads a PEM public key (PKIX "PUBLIC KEY", PKCS #1 "RSA
// PUBLIC KEY", or a certificate) of type RSA, ECDSA or Ed25519. A private
// key is refused: the server only verifies, and a private key on it is
// one more copy to lose.
func ParsePublicKey(b []byte) (*PublicKey, error) {
	block, _ := pem.Decode(b)
	switch {
	case block == nil:
		return nil, errors.New("no PEM block")
	case strings.Contains(block.Type, "PRIVATE KEY"):
		return nil, fmt.Errorf("a %s, not a public key (openssl pkey -in key.pem -pubout writes the public key)", block.Type)
	}
	if k, err := jwt.ParseRSAPublicKeyFromPEM(b); err == nil {
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("an RSA key of %d bits; at least 2048 are required", k.N.BitLen())
		}
		return &PublicKey{Key: k, Algorithm: "RS256"}, nil
	}
	if k, err := jwt.ParseECPublicKeyFromPEM(b); err == nil {
		alg, ok := map[elliptic.Curve]string{elliptic.P256(): "ES256", elliptic.P384(): "ES384", elliptic.P521(): "ES512"}[k.Curve]
		if !ok {
			return nil, fmt.Errorf("an ECDSA key on %s; P-256, P-384 or P-521 are accepted", k.Curve.Params().Name)
		}
		return &PublicKey{Key: k, Algorithm: alg}, nil
	}
	if k, err := jwt.ParseEdPublicKeyFromPEM(b); err == nil {
		if ek, ok := k.(ed25519.PublicKey); ok {
			return &PublicKey{Key: ek, Algorithm: "EdDSA"}, nil
		}
	}
	return nil, fmt.Errorf("a PEM %s that is no RSA, ECDSA or Ed25519 public key", block.Type)
}
