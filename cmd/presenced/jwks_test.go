package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

// signer is a private key with its kid and algorithm.
type signer struct {
	kid    string
	method jwt.SigningMethod
	key    crypto.Signer
}

func newSigner(t *testing.T, kid, alg string) signer {
	t.Helper()
	var k crypto.Signer
	var err error
	switch alg {
	case "RS256":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid: kid, method: jwt.GetSigningMethod(alg), key: k}
}

// token signs claims with a kid header.
func (s signer) token(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(s.method, claims)
	tok.Header["kid"] = s.kid
	str, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatal(err)
	}
	return str
}

// jwk is the public JWK of s (RFC 7517, 7518 6, 8037).
func (s signer) jwk() map[string]string {
	b64 := base64.RawURLEncoding.EncodeToString
	m := map[string]string{"kid": s.kid, "alg": s.method.Alg(), "use": "sig"}
	switch k := s.key.Public().(type) {
	case *rsa.PublicKey:
		m["kty"], m["n"], m["e"] = "RSA", b64(k.N.Bytes()), b64(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PublicKey:
		b, _ := k.Bytes() // 0x04 || X || Y
		m["kty"], m["crv"], m["x"], m["y"] = "EC", "P-256", b64(b[1:33]), b64(b[33:])
	case ed25519.PublicKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", b64(k)
	}
	return m
}

func (s signer) pemFile(t *testing.T) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(s.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// jwksServer serves a JWKS the test can change, and counts its fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	keys    []signer
	fetches atomic.Int32
}

func newJWKSServer(t *testing.T, keys ...signer) *jwksServer {
	s := &jwksServer{keys: keys}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		set := []map[string]string{}
		for _, k := range s.keys {
			set = append(set, k.jwk())
		}
		w.Header().Set("content-type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"keys": set})
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(keys ...signer) {
	s.mu.Lock()
	s.keys = keys
	s.mu.Unlock()
}

// dialToken opens a WebSocket of the node at addr with tok.
func dialToken(addr, tok string) error {
	ws, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/socket/websocket?vsn=2.0.0&token="+tok, nil)
	if err != nil {
		if resp != nil {
			return fmt.Errorf("%v (HTTP %d)", err, resp.StatusCode)
		}
		return err
	}
	ws.Close()
	return nil
}

func claims(sub string) jwt.MapClaims {
	return jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix()}
}

// A node with --jwt-jwks-url accepts tokens of every key of the JWKS,
// RS256, ES256 and EdDSA, and a token of a key added to the JWKS later:
// its unknown kid makes keyfunc fetch the JWKS again.
func TestJWKS(t *testing.T) {
	rs, es, ed := newSigner(t, "r1", "RS256"), newSigner(t, "e1", "ES256"), newSigner(t, "d1", "EdDSA")
	srv := newJWKSServer(t, rs, es, ed)
	n := startNode(t, []string{"--jwt-jwks-url", srv.URL}, nil, nil)
	if !strings.Contains(n.out.String(), "RS256/ES256/EdDSA from "+srv.URL) {
		t.Errorf("the startup line does not say the JWKS:\n%s", n.out)
	}
	for _, s := range []signer{rs, es, ed} {
		if err := dialToken(n.addr, s.token(t, claims("alice"))); err != nil {
			t.Errorf("%s token: %v", s.method.Alg(), err)
		}
	}
	// A token of a key the JWKS does not hold, an HS256 token under the
	// RSA key's PEM (no secret: HS256 is not accepted at all), one
	// without kid of an unknown key.
	stranger := newSigner(t, "r1", "RS256") // the kid of a held key
	der, _ := x509.MarshalPKIXPublicKey(rs.key.Public())
	confused, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims("alice")).SignedString(
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	noKid, _ := jwt.NewWithClaims(jwt.SigningMethodRS256, claims("alice")).SignedString(stranger.key)
	for name, tok := range map[string]string{"another key, held kid": stranger.token(t, claims("alice")),
		"HS256 under the public key": confused, "no kid, unknown key": noKid} {
		if err := dialToken(n.addr, tok); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if got := srv.fetches.Load(); got != 1 {
		t.Fatalf("%d fetches before the rotation, want 1", got)
	}

	// Rotation: r2 replaces r1.
	r2 := newSigner(t, "r2", "RS256")
	srv.set(r2, es, ed)
	if err := dialToken(n.addr, r2.token(t, claims("bob"))); err != nil {
		t.Fatalf("token of the new key after the JWKS changed: %v", err)
	}
	if got := srv.fetches.Load(); got != 2 {
		t.Errorf("%d fetches after the rotation, want 2 (one refresh for the unknown kid)", got)
	}
	if err := dialToken(n.addr, rs.token(t, claims("alice"))); err == nil {
		t.Error("a token of the retired key r1 accepted after the refresh")
	}
}

// A JWKS that cannot be fetched at start stops the node, naming the flag.
func TestJWKSUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	o, err := parse([]string{"--listen", "127.0.0.1:0", "--jwt-jwks-url", url + "/jwks.json"}, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = serve(context.Background(), o, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "--jwt-jwks-url") {
		t.Fatalf("serve: %v, want an error naming --jwt-jwks-url", err)
	}
}

// A node with --jwt-public-key accepts that key's tokens, with
// --jwt-issuer, --jwt-audience and --jwt-key-claim checked; with
// --jwt-secret too, the secret's HS256 tokens, but never an HS256 token
// under the public key's PEM.
func TestJWTPublicKey(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			s := newSigner(t, "k", alg)
			file := s.pemFile(t)
			pemBytes, _ := os.ReadFile(file)
			n := startNode(t, []string{"--jwt-public-key", file, "--jwt-secret", secret32, "--jwt-issuer", "idp",
				"--jwt-audience", "presence", "--jwt-key-claim", "uid"}, nil, nil)
			good := jwt.MapClaims{"uid": "alice", "iss": "idp", "aud": []string{"presence", "other"}}
			if err := dialToken(n.addr, s.token(t, good)); err != nil {
				t.Fatalf("%s token: %v", alg, err)
			}
			hs, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, good).SignedString([]byte(secret32))
			if err := dialToken(n.addr, hs); err != nil {
				t.Errorf("HS256 token under the secret: %v", err)
			}
			confused, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, good).SignedString(pemBytes)
			bad := map[string]string{"HS256 under the public key": confused}
			for name, c := range map[string]jwt.MapClaims{
				"wrong issuer":      {"uid": "alice", "iss": "other", "aud": "presence"},
				"wrong audience":    {"uid": "alice", "iss": "idp", "aud": "other"},
				"missing key claim": {"sub": "alice", "iss": "idp", "aud": "presence"},
			} {
				bad[name] = s.token(t, c)
			}
			for name, tok := range bad {
				if err := dialToken(n.addr, tok); err == nil {
					t.Errorf("%s: accepted", name)
				}
			}
		})
	}
}

// The token flags refuse, at start and with a message, what cannot work.
func TestTokenFlagErrors(t *testing.T) {
	dir := t.TempDir()
	priv := filepath.Join(dir, "private.pem")
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(rk)
	os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	notPEM := filepath.Join(dir, "secret.txt")
	os.WriteFile(notPEM, []byte(secret32), 0o600)
	pub := newSigner(t, "k", "ES256").pemFile(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--jwt-public-key", filepath.Join(dir, "missing.pem")}, "no such file"},
		{[]string{"--jwt-public-key", priv}, "not a public key"},
		{[]string{"--jwt-public-key", notPEM}, "no PEM block"},
		{[]string{"--jwt-public-key", pub, "--jwt-jwks-url", "https://idp.example/jwks"}, "choose one"},
		{[]string{"--jwt-jwks-url", "idp.example/jwks"}, "http(s) URL"},
		{[]string{"--jwt-issuer", "idp"}, "needs token mode"},
		{[]string{"--jwt-audience", "x"}, "needs token mode"},
		{[]string{"--jwt-key-claim", "uid"}, "needs token mode"},
		{[]string{"--jwt-secret", secret32, "--jwt-key-claim", "exp"}, "another purpose"},
		{[]string{"--jwt-secret", secret32, "--jwt-key-claim", "topics"}, "another purpose"},
		{[]string{"--jwt-public-key", ""}, "set but empty"},
	} {
		_, err := parse(c.args, env(nil), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.args, err, c.want)
		}
	}
	for _, name := range []string{"PRESENCE_JWT_PUBLIC_KEY", "PRESENCE_JWT_JWKS_URL"} {
		// An empty variable is an error, never dev mode.
		if _, err := parse(nil, env(map[string]string{name: ""}), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), name+" is set but empty") {
			t.Errorf("%s empty: %v", name, err)
		}
	}
}

// presenced token writes the issuer, audience and key claim of the node's
// environment, so that its token passes the node's checks.
func TestTokenCommandClaims(t *testing.T) {
	e := map[string]string{"PRESENCE_JWT_SECRET": secret32, "PRESENCE_JWT_ISSUER": "idp",
		"PRESENCE_JWT_AUDIENCE": "presence", "PRESENCE_JWT_KEY_CLAIM": "uid"}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"token", "--sub", "alice", "--ttl", "10m"}, env(e), &out, &out); err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(out.String())
	var c jwt.MapClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil {
		t.Fatal(err)
	}
	if c["uid"] != "alice" || c["iss"] != "idp" || c["aud"] != "presence" || c["sub"] != nil {
		t.Errorf("claims %v", c)
	}
	n := startNode(t, nil, e, nil)
	if err := dialToken(n.addr, tok); err != nil {
		t.Errorf("the node of the same environment refuses the token: %v", err)
	}
}

// presenced version and --version print the module version, the commit
// and Go; versionString reads them from the build info.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var out bytes.Buffer
		if err := run(context.Background(), args, env(nil), &out, &out); err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		if !strings.HasPrefix(out.String(), "presenced ") || !strings.Contains(out.String(), "go1.") {
			t.Errorf("%q: %q", args, out.String())
		}
	}
	bi := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.2.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.modified", Value: "true"}}}
	if got := versionString(bi, true); !strings.HasPrefix(got, "presenced v1.2.0 (commit 0123abcd, modified) go1.26.0 ") {
		t.Errorf("versionString: %q", got)
	}
	bi.Settings = bi.Settings[:1]
	if got := versionString(bi, true); !strings.HasPrefix(got, "presenced v1.2.0 (commit 0123abcd) go1.26.0 ") {
		t.Errorf("versionString, not modified: %q", got)
	}
	if got := versionString(&debug.BuildInfo{}, true); !strings.HasPrefix(got, "presenced (devel) go") {
		t.Errorf("versionString, no version: %q", got)
	}
	if got := versionString(nil, false); !strings.Contains(got, "no build info") {
		t.Errorf("versionString, no build info: %q", got)
	}
}
