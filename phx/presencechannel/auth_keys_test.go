package presencechannel_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/gopresence/presence"
	"github.com/gopresence/presence/phx"
	"github.com/gopresence/presence/phx/presencechannel"
)

// testPresence is a presence nobody starts, for New.
func testPresence(t *testing.T) *presence.Presence {
	t.Helper()
	p, err := presence.New(presence.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testKey is a key pair of one algorithm, its public half as PEM.
type testKey struct {
	alg    string
	method jwt.SigningMethod
	priv   crypto.Signer
	pem    []byte
}

func newTestKeys(t *testing.T) []testKey {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, dk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var out []testKey
	for _, k := range []testKey{{"RS256", jwt.SigningMethodRS256, rk, nil}, {"ES256", jwt.SigningMethodES256, ek, nil},
		{"EdDSA", jwt.SigningMethodEdDSA, dk, nil}} {
		der, err := x509.MarshalPKIXPublicKey(k.priv.Public())
		if err != nil {
			t.Fatal(err)
		}
		k.pem = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		out = append(out, k)
	}
	return out
}

func (k testKey) sign(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(k.method, claims).SignedString(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func pemChannel(t *testing.T, k testKey, cfg presencechannel.Config) *presencechannel.Channel {
	t.Helper()
	pk, err := presencechannel.ParsePublicKey(k.pem)
	if err != nil {
		t.Fatal(err)
	}
	if pk.Algorithm != k.alg {
		t.Fatalf("algorithm of the %s key: %s", k.alg, pk.Algorithm)
	}
	cfg.Keyfunc, cfg.Algorithms = pk.Keyfunc, []string{pk.Algorithm}
	return newChannel(t, cfg)
}

// A token of each asymmetric algorithm, verified with the PEM public key
// of its signer, connects as its sub with its topics; the same token
// signed by another key of the same type is refused.
func TestAsymmetricTokens(t *testing.T) {
	keys, others := newTestKeys(t), newTestKeys(t)
	for i, k := range keys {
		t.Run(k.alg, func(t *testing.T) {
			ch := pemChannel(t, k, presencechannel.Config{})
			claims := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(), "topics": []string{"room:*"}}
			id, err := connectToken(ch, k.sign(t, claims))
			if err != nil {
				t.Fatal(err)
			}
			if u := userOf(t, id); u.Key != "alice" || len(u.Topics) != 1 || u.Topics[0] != "room:*" {
				t.Errorf("user %+v", u)
			}
			if _, err := connectToken(ch, others[i].sign(t, claims)); !errors.Is(err, presencechannel.ErrBadToken) {
				t.Errorf("signed by another key: %v", err)
			}
			// Another algorithm than the key's is not accepted, even
			// with a Keyfunc that would hand out a matching key.
			other := keys[(i+1)%len(keys)]
			if _, err := connectToken(ch, other.sign(t, claims)); !errors.Is(err, presencechannel.ErrBadToken) {
				t.Errorf("%s token: %v", other.alg, err)
			}
		})
	}
}

// ParsePublicKey takes the key types' PEM and refuses private keys and
// what is no key, saying what it found.
func TestParsePublicKey(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(rk)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	pder, _ := x509.MarshalPKIXPublicKey(p384.Public())
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	sder, _ := x509.MarshalPKIXPublicKey(small.Public())
	if k, err := presencechannel.ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pder})); err != nil || k.Algorithm != "ES384" {
		t.Errorf("P-384: %+v, %v", k, err)
	}
	if k, err := presencechannel.ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rk.PublicKey)})); err != nil || k.Algorithm != "RS256" {
		t.Errorf("PKCS #1: %+v, %v", k, err)
	}
	for name, c := range map[string]struct {
		pem  []byte
		want string
	}{
		"private":  {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), "not a public key"},
		"not PEM":  {[]byte("0123456789abcdef0123456789abcdef"), "no PEM block"},
		"garbage":  {pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("xx")}), "no RSA, ECDSA or Ed25519"},
		"RSA 1024": {pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: sder}), "at least 2048"},
	} {
		if _, err := presencechannel.ParsePublicKey(c.pem); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}

// rawToken joins header and payload as given, with signature sig.
func rawToken(header, payload, sig string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(payload)) + "." + sig
}

// The tokens an asymmetric (or mixed) configuration must refuse, each for
// its own reason.
func TestRefusedTokens(t *testing.T) {
	keys := newTestKeys(t)
	rsaKey := keys[0]
	exp := time.Now().Add(time.Hour).Unix()
	base := func() jwt.MapClaims {
		return jwt.MapClaims{"sub": "alice", "exp": exp, "iss": "https://idp.example", "aud": "presence"}
	}
	with := func(k string, v any) jwt.MapClaims {
		c := base()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	unsignedNone, err := jwt.NewWithClaims(jwt.SigningMethodNone, base()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	// The classic confusion: the public key's PEM, which is no secret,
	// used as an HMAC key in the hope that the server feeds it to HS256.
	confused, err := jwt.NewWithClaims(jwt.SigningMethodHS256, base()).SignedString(rsaKey.pem)
	if err != nil {
		t.Fatal(err)
	}
	auth := presencechannel.TokenAuth{Issuer: "https://idp.example", Audience: "presence"}
	for _, mode := range []string{"public key", "public key and secret"} {
		cfg := presencechannel.Config{TokenAuth: auth, RequireExp: true}
		if mode == "public key and secret" {
			cfg.Secret = testSecret
		}
		ch := pemChannel(t, rsaKey, cfg)
		if _, err := connectToken(ch, rsaKey.sign(t, base())); err != nil {
			t.Fatalf("%s: the good token: %v", mode, err)
		}
		for name, c := range map[string]struct {
			tok  string
			want error
			why  string // in the error; "" where it differs by mode
		}{
			"no exp":                       {rsaKey.sign(t, with("exp", nil)), presencechannel.ErrBadToken, "exp claim is required"},
			"alg none":                     {unsignedNone, presencechannel.ErrBadToken, "signing method none is invalid"},
			"alg none, empty signature":    {rawToken(`{"alg":"none","typ":"JWT"}`, `{"sub":"alice","iss":"https://idp.example","aud":"presence"}`, ""), presencechannel.ErrBadToken, "signing method none is invalid"},
			"HS256 under the public key":   {confused, presencechannel.ErrBadToken, ""},
			"expired":                      {rsaKey.sign(t, with("exp", time.Now().Add(-time.Hour).Unix())), presencechannel.ErrTokenExpired, ""},
			"not yet valid":                {rsaKey.sign(t, with("nbf", time.Now().Add(time.Hour).Unix())), presencechannel.ErrBadToken, "not valid yet"},
			"wrong issuer":                 {rsaKey.sign(t, with("iss", "https://evil.example")), presencechannel.ErrBadToken, "invalid issuer"},
			"no issuer":                    {rsaKey.sign(t, with("iss", nil)), presencechannel.ErrBadToken, "iss claim is required"},
			"issuer not a string":          {rsaKey.sign(t, with("iss", []string{"https://idp.example"})), presencechannel.ErrBadToken, "iss claim must be a string"},
			"wrong audience":               {rsaKey.sign(t, with("aud", []string{"other", "more"})), presencechannel.ErrBadToken, "invalid audience"},
			"no audience":                  {rsaKey.sign(t, with("aud", nil)), presencechannel.ErrBadToken, "aud claim is required"},
			"audience not strings":         {rsaKey.sign(t, with("aud", []any{"presence", 1})), presencechannel.ErrBadToken, "aud claim must be"},
			"missing key claim":            {rsaKey.sign(t, with("sub", nil)), presencechannel.ErrBadToken, "sub claim required"},
			"key claim not a string":       {rsaKey.sign(t, with("sub", 42)), presencechannel.ErrBadToken, "sub claim must be a string"},
			"topics not an array":          {rsaKey.sign(t, with("topics", "room:*")), presencechannel.ErrBadToken, "topics claim must be"},
			"topics with a bad pattern":    {rsaKey.sign(t, with("topics", []string{"room:a*"})), presencechannel.ErrBadToken, "must follow"},
			"RS256 with a tampered claim":  {tamper(rsaKey.sign(t, base())), presencechannel.ErrBadToken, "verification error"},
			"RS256 signed by another key":  {newTestKeys(t)[0].sign(t, base()), presencechannel.ErrBadToken, "verification error"},
			"RS384 (not pinned)":           {signRS384(t, rsaKey, base()), presencechannel.ErrBadToken, "signing method RS384 is invalid"},
			"HS256 under the wrong secret": {mustHS256(t, []byte("another secret of at least 32 bytes."), base()), presencechannel.ErrBadToken, ""},
		} {
			_, err := connectToken(ch, c.tok)
			t.Logf("%s: %s: %v", mode, name, err)
			if !errors.Is(err, c.want) || !strings.Contains(fmt.Sprint(err), c.why) {
				t.Errorf("%s: %s: %v, want %v", mode, name, err, c.want)
			}
		}
		if cfg.Secret != nil {
			// The secret's tokens pass, under the same claim checks.
			if _, err := connectToken(ch, mustHS256(t, testSecret, base())); err != nil {
				t.Errorf("%s: HS256 under the secret: %v", mode, err)
			}
			if _, err := connectToken(ch, mustHS256(t, testSecret, with("aud", "other"))); !errors.Is(err, presencechannel.ErrBadToken) {
				t.Errorf("%s: HS256 of another audience: %v", mode, err)
			}
		}
	}
}

// tamper changes the payload of a signed token (sub "alice" → "mallory").
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(b), "alice", "mallory", 1)))
	return strings.Join(parts, ".")
}

func signRS384(t *testing.T, k testKey, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodRS384, c).SignedString(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustHS256(t *testing.T, secret []byte, c jwt.MapClaims) string {
	t.Helper()
	s, err := presencechannel.SignHS256(secret, c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// KeyClaim picks the claim of the key; sub is then an ordinary claim.
// Claims read for another purpose cannot be the key claim.
func TestKeyClaim(t *testing.T) {
	k := newTestKeys(t)[1]
	ch := pemChannel(t, k, presencechannel.Config{TokenAuth: presencechannel.TokenAuth{KeyClaim: "user_id"}})
	id, err := connectToken(ch, k.sign(t, jwt.MapClaims{"user_id": "bob", "sub": 7}))
	if err != nil {
		t.Fatal(err)
	}
	if u := userOf(t, id); u.Key != "bob" {
		t.Errorf("key %q, want bob", u.Key)
	}
	if _, err := connectToken(ch, k.sign(t, jwt.MapClaims{"sub": "bob"})); !errors.Is(err, presencechannel.ErrBadToken) ||
		!strings.Contains(err.Error(), "user_id claim required") {
		t.Errorf("without user_id: %v", err)
	}
	for _, name := range []string{"exp", "nbf", "iss", "aud", "topics"} {
		if _, err := presencechannel.New(presencechannel.Config{Presence: testPresence(t), Secret: testSecret,
			TokenAuth: presencechannel.TokenAuth{KeyClaim: name}}); err == nil {
			t.Errorf("KeyClaim %q accepted", name)
		}
	}
}

// New refuses algorithms that are not asymmetric, Algorithms without a
// Keyfunc and claim checks with no token mode; a Keyfunc alone is token
// mode.
func TestTokenAuthConfig(t *testing.T) {
	kf := func(*jwt.Token) (any, error) { return nil, errors.New("no") }
	for name, c := range map[string]presencechannel.Config{
		"none":                {TokenAuth: presencechannel.TokenAuth{Keyfunc: kf, Algorithms: []string{"none"}}},
		"HS256 in Algorithms": {Secret: testSecret, TokenAuth: presencechannel.TokenAuth{Keyfunc: kf, Algorithms: []string{"HS256"}}},
		"Algorithms alone":    {Secret: testSecret, TokenAuth: presencechannel.TokenAuth{Algorithms: []string{"RS256"}}},
		"Issuer in dev mode":  {TokenAuth: presencechannel.TokenAuth{Issuer: "x"}},
	} {
		c.Presence = testPresence(t)
		if _, err := presencechannel.New(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	ch := newChannel(t, presencechannel.Config{TokenAuth: presencechannel.TokenAuth{Keyfunc: kf}})
	if _, err := ch.Connect(t.Context(), &phx.ConnectInfo{Params: url.Values{"user_id": {"alice"}}}); !errors.Is(err, presencechannel.ErrNoCredentials) {
		t.Errorf("Keyfunc alone, no token: %v (want token mode)", err)
	}
}

// A Keyfunc's error refuses the token without its words, which may quote
// the sender's kid.
func TestKeyfuncErrorNotQuoted(t *testing.T) {
	k := newTestKeys(t)[0]
	ch := newChannel(t, presencechannel.Config{TokenAuth: presencechannel.TokenAuth{Keyfunc: func(tok *jwt.Token) (any, error) {
		return nil, fmt.Errorf("kid %v not found", tok.Header["kid"])
	}}})
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"sub": "alice"})
	tok.Header["kid"] = "<script>"
	s, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := connectToken(ch, s); !errors.Is(err, presencechannel.ErrBadToken) || strings.Contains(err.Error(), "<script>") {
		t.Errorf("%v", err)
	}
}

// iss and aud are decoded as strictly as the other claims: exact names,
// no repeats, their types only (aud: a string or an array of strings).
func TestIssuerAudienceDecoding(t *testing.T) {
	ch := newChannel(t, presencechannel.Config{Secret: testSecret,
		TokenAuth: presencechannel.TokenAuth{Issuer: "idp", Audience: "presence"}})
	for payload, ok := range map[string]bool{
		`{"sub":"a","iss":"idp","aud":"presence"}`:                 true,
		`{"sub":"a","iss":"idp","aud":["x","presence"]}`:           true,
		`{"sub":"a","iss":"idp","aud":"presence","iss":"idp"}`:     false,
		`{"sub":"a","iss":"evil","ISS":"idp","aud":"presence"}`:    false,
		`{"sub":"a","iss":"idp","aud":null}`:                       false,
		`{"sub":"a","iss":"idp","aud":{"0":"presence"}}`:           false,
		`{"sub":"a","iss":"idp","aud":["presence"],"aud":["x"]}`:   false,
		`{"sub":"a","iss":null,"aud":"presence"}`:                  false,
		`{"sub":"a","Iss":"idp","aud":"presence"}`:                 false,
		`{"sub":"a","iss":"idp","aud":"presence","extra":[1,{}]}`:  true,
		`{"sub":"a","iss":"idp","aud":"presence","topics":["*"]}`:  true,
		`{"sub":"a","iss":"idp","aud":"presence","topics":"room"}`: false,
	} {
		_, err := connectToken(ch, signRaw(testSecret, payload))
		if (err == nil) != ok {
			t.Errorf("%s: %v, want ok=%v", payload, err, ok)
		}
	}
}
