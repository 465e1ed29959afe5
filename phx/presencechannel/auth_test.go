package presencechannel_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gopresence/presence"
	"github.com/gopresence/presence/phx"
	"github.com/gopresence/presence/phx/presencechannel"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// signRaw signs payload as it is (SignHS256 marshals a map, which sorts
// the names and cannot repeat one).
func signRaw(secret []byte, payload string) string {
	s := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(s))
	return s + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// newChannel returns a Channel over a presence nobody starts (Connect
// does not touch it).
func newChannel(t *testing.T, cfg presencechannel.Config) *presencechannel.Channel {
	t.Helper()
	p, err := presence.New(presence.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Presence = p
	ch, err := presencechannel.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func connectToken(ch *presencechannel.Channel, tok string) (phx.Identity, error) {
	return ch.Connect(context.Background(), &phx.ConnectInfo{Params: url.Values{"token": {tok}}})
}

func userOf(t *testing.T, id phx.Identity) *presencechannel.User {
	t.Helper()
	u, ok := id.Assigns.(*presencechannel.User)
	if !ok {
		t.Fatalf("assigns %T", id.Assigns)
	}
	return u
}

// A secret shorter than the hash is refused; empty (dev mode) and
// MinSecretLen bytes are fine.
func TestSecretLength(t *testing.T) {
	p, err := presence.New(presence.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, presencechannel.MinSecretLen, 64} {
		if _, err := presencechannel.New(presencechannel.Config{Presence: p, Secret: make([]byte, n)}); err != nil {
			t.Errorf("%d bytes: %v", n, err)
		}
	}
	for _, n := range []int{1, 6, presencechannel.MinSecretLen - 1} {
		_, err := presencechannel.New(presencechannel.Config{Presence: p, Secret: make([]byte, n)})
		if err == nil || !strings.Contains(err.Error(), "guessed") {
			t.Errorf("%d bytes: %v, want a refusal saying why", n, err)
		}
	}
}

// A token has one spelling: a signature whose unused low bits differ, or
// with a line break in it, is refused although it decodes to the same
// bytes.
func TestTokenStrictEncoding(t *testing.T) {
	ch := newChannel(t, presencechannel.Config{Secret: testSecret})
	tok, _ := presencechannel.SignHS256(testSecret, map[string]any{"sub": "alice"})
	if _, err := connectToken(ch, tok); err != nil {
		t.Fatalf("valid token: %v", err)
	}
	// 32 signature bytes are 43 characters, the last carrying 2 unused
	// bits: flipping them keeps the bytes.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tok[len(tok)-1])
	padded := tok[:len(tok)-1] + string(alphabet[last^1])
	if a, b := tok[strings.LastIndexByte(tok, '.')+1:], padded[strings.LastIndexByte(padded, '.')+1:]; a == b {
		t.Fatal("test broken: same signature text")
	}
	i := strings.LastIndexByte(tok, '.') + 10
	for name, bad := range map[string]string{
		"padding bits": padded,
		"LF in sig":    tok[:i] + "\n" + tok[i:],
		"CRLF in sig":  tok[:i] + "\r\n" + tok[i:],
		"trailing LF":  tok + "\n",
		"= padding":    tok + "=",
		"two dots":     tok + ".",
	} {
		if _, err := connectToken(ch, bad); !errors.Is(err, presencechannel.ErrBadToken) {
			t.Errorf("%s: %v, want ErrBadToken", name, err)
		}
	}
}

// Signature and algorithm checks of the library are in force.
func TestTokenSignatureAndAlg(t *testing.T) {
	ch := newChannel(t, presencechannel.Config{Secret: testSecret})
	other, _ := presencechannel.SignHS256([]byte("another-secret-another-secret-an"), map[string]any{"sub": "x"})
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"x"}`)) + "."
	hs512 := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS512"}`)) + "." + strings.SplitN(signRaw(testSecret, `{"sub":"x"}`), ".", 2)[1]
	for name, tok := range map[string]string{"bad sig": other, "alg none": none, "HS512": hs512, "garbage": "a.b.c", "empty parts": ".."} {
		if _, err := connectToken(ch, tok); !errors.Is(err, presencechannel.ErrBadToken) {
			t.Errorf("%s: %v, want ErrBadToken", name, err)
		}
	}
	nbf, _ := presencechannel.SignHS256(testSecret, map[string]any{"sub": "x", "nbf": time.Now().Add(time.Hour).Unix()})
	if _, err := connectToken(ch, nbf); !errors.Is(err, presencechannel.ErrBadToken) {
		t.Errorf("nbf in an hour: %v, want ErrBadToken", err)
	}
	soon, _ := presencechannel.SignHS256(testSecret, map[string]any{"sub": "x", "nbf": time.Now().Add(10 * time.Second).Unix()})
	if _, err := connectToken(ch, soon); err != nil {
		t.Errorf("nbf within the leeway: %v", err)
	}
}

// Claim names match exactly and a name given twice is refused: a reader
// that folds case or keeps the first occurrence sees another token.
func TestClaimsFailClosed(t *testing.T) {
	ch := newChannel(t, presencechannel.Config{Secret: testSecret})
	past, future := time.Now().Add(-time.Hour).Unix(), time.Now().Add(time.Hour).Unix()
	id, err := connectToken(ch, signRaw(testSecret, `{"sub":"alice","SUB":"admin","Topics":["*"],"TOPICS":["*"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if u := userOf(t, id); u.Key != "alice" || u.Topics != nil {
		t.Errorf("user %+v, want alice unrestricted (SUB, TOPICS ignored)", u)
	}
	id, err = connectToken(ch, signRaw(testSecret, `{"sub":"alice","topics":["room:a"],"TOPICS":["*"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if u := userOf(t, id); len(u.Topics) != 1 || u.Topics[0] != "room:a" {
		t.Errorf("topics %q, want [room:a]", u.Topics)
	}
	if _, err := connectToken(ch, signRaw(testSecret, `{"sub":"alice","exp":`+itoa(past)+`,"EXP":`+itoa(future)+`}`)); !errors.Is(err, presencechannel.ErrTokenExpired) {
		t.Errorf("exp past, EXP future: %v, want ErrTokenExpired", err)
	}

	for name, payload := range map[string]string{
		"sub twice":          `{"sub":"alice","sub":"admin"}`,
		"sub twice, escaped": `{"sub":"alice","s\u0075b":"admin"}`,
		"exp twice":          `{"sub":"alice","exp":` + itoa(past) + `,"exp":` + itoa(future) + `}`,
		"topics twice":       `{"sub":"alice","topics":["room:a"],"topics":["*"]}`,
		"other twice":        `{"sub":"alice","x":1,"x":2}`,
		"sub a number":       `{"sub":7}`,
		"sub null":           `{"sub":null}`,
		"sub an object":      `{"sub":{"id":"a"}}`,
		"no sub":             `{"name":"alice"}`,
		"exp a string":       `{"sub":"alice","exp":"` + itoa(future) + `"}`,
		"exp null":           `{"sub":"alice","exp":null}`,
		"exp huge":           `{"sub":"alice","exp":1e300}`,
		"nbf a string":       `{"sub":"alice","nbf":"0"}`,
		"topics a string":    `{"sub":"alice","topics":"room:*"}`,
		"topics an object":   `{"sub":"alice","topics":{"a":"room:*"}}`,
		"topics of numbers":  `{"sub":"alice","topics":[1]}`,
		"topics with null":   `{"sub":"alice","topics":["room:a",null]}`,
		"topics nested":      `{"sub":"alice","topics":[["room:a"]]}`,
		"payload null":       `null`,
		"payload an array":   `[{"sub":"alice"}]`,
		"payload a string":   `"alice"`,
	} {
		if _, err := connectToken(ch, signRaw(testSecret, payload)); !errors.Is(err, presencechannel.ErrBadToken) {
			t.Errorf("%s: %v, want ErrBadToken", name, err)
		}
	}
	// Names repeated below the top level are the claim's business.
	if _, err := connectToken(ch, signRaw(testSecret, `{"sub":"alice","ctx":{"a":1,"a":2}}`)); err != nil {
		t.Errorf("nested repeat: %v", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// "topics": null allows no topic; absent allows all; an empty array none.
func TestTopicsClaimNull(t *testing.T) {
	ch := newChannel(t, presencechannel.Config{Secret: testSecret})
	for payload, none := range map[string]bool{
		`{"sub":"a","topics":null}`: true,
		`{"sub":"a","topics":[]}`:   true,
		`{"sub":"a"}`:               false,
	} {
		id, err := connectToken(ch, signRaw(testSecret, payload))
		if err != nil {
			t.Fatalf("%s: %v", payload, err)
		}
		if u := userOf(t, id); (u.Topics != nil && len(u.Topics) == 0) != none {
			t.Errorf("%s: topics %#v", payload, u.Topics)
		}
	}

	st := newStackCfg(t, presencechannel.Config{Secret: testSecret})
	c, code := st.dial(t, url.Values{"token": {signRaw(testSecret, `{"sub":"a","topics":null}`)}})
	if code != 101 {
		t.Fatalf("dial %d", code)
	}
	c.send(`["1","1","room:x","phx_join",{}]`)
	r, _ := c.recvEvent("phx_reply")
	if got := payloadJSON(r); got != `{"response":{"reason":"unauthorized"},"status":"error"}` {
		t.Fatalf("join with topics null: %s", got)
	}
}

// A '*' of a topics-claim pattern stands only for whole trailing segments
// (after ':', '/' or '.') or for everything; any other '*' invalidates
// the token, with the reason.
func TestTopicsClaimPatterns(t *testing.T) {
	ch := newChannel(t, presencechannel.Config{Secret: testSecret})
	for _, p := range []string{"room:a*", "room:user:1*", "a*b", "*room", "room:*:x", "**", "room*", ":*x", ""} {
		tok, _ := presencechannel.SignHS256(testSecret, map[string]any{"sub": "a", "topics": []string{"room:ok", p}})
		_, err := connectToken(ch, tok)
		if !errors.Is(err, presencechannel.ErrBadToken) || (p != "" && !strings.Contains(err.Error(), p)) {
			t.Errorf("pattern %q: %v, want ErrBadToken naming it", p, err)
		}
	}
	for _, p := range []string{"*", "room:*", "a/b/*", "x.*", "room:lobby", "room:a:*"} {
		tok, _ := presencechannel.SignHS256(testSecret, map[string]any{"sub": "a", "topics": []string{p}})
		if _, err := connectToken(ch, tok); err != nil {
			t.Errorf("pattern %q: %v", p, err)
		}
	}

	st := newStackCfg(t, presencechannel.Config{Secret: testSecret, Topics: []string{"*"}})
	tok, _ := presencechannel.SignHS256(testSecret, map[string]any{"sub": "a", "topics": []string{"room:*", "doc/7/*", "lobby"}})
	c, code := st.dial(t, url.Values{"token": {tok}})
	if code != 101 {
		t.Fatalf("dial %d", code)
	}
	for i, tc := range []struct {
		topic string
		ok    bool
	}{
		{"room:x", true}, {"room:x:y", true}, {"room:", false}, {"room", false}, {"roomx", false},
		{"doc/7/a", true}, {"doc/7/", false}, {"doc/70", false}, {"lobby", true}, {"lobby:x", false},
	} {
		ref := strconv.Itoa(i + 1)
		c.send(`["` + ref + `","` + ref + `","` + tc.topic + `","phx_join",{}]`)
		r, _ := c.recvEvent("phx_reply")
		if got := strings.Contains(payloadJSON(r), `"status":"ok"`); got != tc.ok {
			t.Errorf("join %q: %s, want ok=%v", tc.topic, payloadJSON(r), tc.ok)
		}
	}
}

// Connect sets the Identity's ExpiresAt to exp plus Leeway, so that phx
// closes the connection when the token expires; RequireExp refuses a
// token without exp.
func TestTokenExpiresAt(t *testing.T) {
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	ch := newChannel(t, presencechannel.Config{Secret: testSecret, Leeway: 5 * time.Second})
	tok, _ := presencechannel.SignHS256(testSecret, map[string]any{"sub": "a", "exp": exp.Unix()})
	id, err := connectToken(ch, tok)
	if err != nil {
		t.Fatal(err)
	}
	if want := exp.Add(5 * time.Second); !id.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt %v, want %v", id.ExpiresAt, want)
	}
	noexp, _ := presencechannel.SignHS256(testSecret, map[string]any{"sub": "a"})
	if id, err := connectToken(ch, noexp); err != nil || !id.ExpiresAt.IsZero() {
		t.Errorf("no exp: %v, %v; want zero ExpiresAt", id.ExpiresAt, err)
	}
	// Expired, but within the leeway: accepted, and closed when it ends.
	recent, _ := presencechannel.SignHS256(testSecret, map[string]any{"sub": "a", "exp": time.Now().Add(-2 * time.Second).Unix()})
	if id, err := connectToken(ch, recent); err != nil || id.ExpiresAt.After(time.Now().Add(5*time.Second)) {
		t.Errorf("exp within the leeway: %v, %v", id.ExpiresAt, err)
	}

	req := newChannel(t, presencechannel.Config{Secret: testSecret, RequireExp: true})
	if _, err := connectToken(req, noexp); !errors.Is(err, presencechannel.ErrBadToken) || !strings.Contains(err.Error(), "exp") {
		t.Errorf("RequireExp, no exp: %v, want ErrBadToken about exp", err)
	}
	if _, err := connectToken(req, tok); err != nil {
		t.Errorf("RequireExp, exp: %v", err)
	}
	old, _ := presencechannel.SignHS256(testSecret, map[string]any{"sub": "a", "exp": time.Now().Add(-time.Hour).Unix()})
	if _, err := connectToken(req, old); !errors.Is(err, presencechannel.ErrTokenExpired) {
		t.Errorf("RequireExp, expired: %v, want ErrTokenExpired", err)
	}
}

// Keys are refused when empty, too long, not UTF-8 or holding control
// characters, in dev mode and from a token's sub.
func TestKeys(t *testing.T) {
	bad := []string{"", strings.Repeat("k", presencechannel.DefaultMaxKeyLen+1), "a\xffb", "a\x00b", "a\nb", "a\x1fb", "a\x7fb", "a\u0085b", "a\u009fb"}
	good := []string{"u1", strings.Repeat("k", presencechannel.DefaultMaxKeyLen), "ünï cödé", "a\u00a0b", "user@example.com"}
	dev := newChannel(t, presencechannel.Config{})
	jwtc := newChannel(t, presencechannel.Config{Secret: testSecret})
	for _, k := range bad {
		if _, err := dev.Connect(context.Background(), &phx.ConnectInfo{Params: url.Values{"user_id": {k}}}); !errors.Is(err, presencechannel.ErrBadKey) {
			t.Errorf("dev %q: %v, want ErrBadKey", k, err)
		}
		if !utf8.ValidString(k) {
			continue // JSON cannot carry it: a decoder makes it U+FFFD
		}
		tok, _ := presencechannel.SignHS256(testSecret, map[string]any{"sub": k})
		if _, err := connectToken(jwtc, tok); !errors.Is(err, presencechannel.ErrBadKey) {
			t.Errorf("sub %q: %v, want ErrBadKey", k, err)
		}
	}
	for _, k := range good {
		id, err := dev.Connect(context.Background(), &phx.ConnectInfo{Params: url.Values{"user_id": {k}}})
		if err != nil || userOf(t, id).Key != k {
			t.Errorf("dev %q: %v", k, err)
		}
		tok, _ := presencechannel.SignHS256(testSecret, map[string]any{"sub": k})
		if id, err := connectToken(jwtc, tok); err != nil || userOf(t, id).Key != k {
			t.Errorf("sub %q: %v", k, err)
		}
	}
	if _, err := dev.Connect(context.Background(), &phx.ConnectInfo{Params: url.Values{}}); !errors.Is(err, presencechannel.ErrNoCredentials) {
		t.Errorf("no user_id: %v, want ErrNoCredentials", err)
	}
	short := newChannel(t, presencechannel.Config{MaxKeyLen: 3})
	if _, err := short.Connect(context.Background(), &phx.ConnectInfo{Params: url.Values{"user_id": {"abcd"}}}); !errors.Is(err, presencechannel.ErrBadKey) {
		t.Errorf("MaxKeyLen 3, 4 bytes: %v", err)
	}
	unlimited := newChannel(t, presencechannel.Config{MaxKeyLen: -1})
	if _, err := unlimited.Connect(context.Background(), &phx.ConnectInfo{Params: url.Values{"user_id": {strings.Repeat("k", 10000)}}}); err != nil {
		t.Errorf("MaxKeyLen -1: %v", err)
	}
}
