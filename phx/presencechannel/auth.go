package presencechannel

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// Errors of connection authentication (wrapped; the connection is
// refused).
var (
	// ErrNoCredentials: neither a token (in token mode: a Secret or a
	// Keyfunc) nor a user_id (in development mode) was given.
	ErrNoCredentials = errors.New("presencechannel: no user_id or token")
	// ErrBadToken: the token is malformed, signed with an algorithm not
	// accepted (see TokenAuth.Algorithms) or badly, not valid yet, of
	// another issuer or audience, has no key claim or no exp
	// (Config.RequireExp), or has claims that are ambiguous or of the
	// wrong type (see Config.Secret).
	ErrBadToken = errors.New("presencechannel: invalid token")
	// ErrTokenExpired: the token's exp has passed.
	ErrTokenExpired = errors.New("presencechannel: token expired")
	// ErrBadKey: the presence key (user_id, or the token's sub) is empty,
	// longer than Config.MaxKeyLen, not UTF-8, or holds control
	// characters. Keys are written into every presence frame and log line
	// about the user.
	ErrBadKey = errors.New("presencechannel: invalid presence key")
)

// MinSecretLen is the shortest Config.Secret accepted, in bytes: an HS256
// key shorter than the SHA-256 output can be guessed offline from a
// single token.
const MinSecretLen = 32

// User is the identity of a connection: the assigns every channel of the
// connection sees (phx.Socket.Assigns returns a *User). It also holds the
// connection's rate limits, shared by every channel it joined; a User
// built by hand gets them on first use.
type User struct {
	// Key is the presence key the connection tracks under (the user id).
	Key string
	// Topics, when non-nil, limits the topics the user may join (the
	// token's "topics" claim; empty: none). Each entry is an exact topic,
	// "*" (every topic), or a prefix ending in ':', '/' or '.' followed by
	// "*": "room:*" matches every topic that starts with "room:" and has
	// at least one more character ("room:x", "room:x:y", not "room:"). An
	// entry with a '*' anywhere else matches nothing (Connect refuses such
	// a token).
	Topics []string

	mu   sync.Mutex
	lim  *connLimits     // made on first use (see Channel.limits)
	gaps map[string]*gap // topics left, whose diffs are recorded for a rejoin (leave.go)
}

// mayJoin reports whether u may join topic.
func (u *User) mayJoin(topic string) bool {
	if u.Topics == nil {
		return true
	}
	for _, p := range u.Topics {
		if matchPattern(p, topic) {
			return true
		}
	}
	return false
}

// matchPattern reports whether topic matches the topics-claim pattern p
// (see User.Topics); a malformed pattern matches nothing.
func matchPattern(p, topic string) bool {
	if checkPattern(p) != nil {
		return false
	}
	if p == "*" {
		return true
	}
	if prefix, ok := strings.CutSuffix(p, "*"); ok {
		return len(topic) > len(prefix) && strings.HasPrefix(topic, prefix)
	}
	return p == topic
}

// checkPattern says why p is not a topics-claim pattern, or returns nil.
// A '*' inside a segment ("room:a*") would grant every topic sharing a
// prefix of a name ("room:admin"), which no issuer means to grant.
func checkPattern(p string) error {
	i := strings.IndexByte(p, '*')
	switch {
	case p == "":
		return errors.New("empty topic pattern")
	case i < 0 || p == "*":
		return nil
	case i != len(p)-1:
		return fmt.Errorf("topic pattern %q: '*' must be the last character", p)
	case !strings.ContainsRune(":/.", rune(p[i-1])):
		return fmt.Errorf("topic pattern %q: '*' must follow ':', '/' or '.'", p)
	}
	return nil
}

// checkKey says why key cannot be a presence key (ErrBadKey), or returns
// nil; maxLen < 0 means no length limit.
func checkKey(key string, maxLen int) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrBadKey)
	case maxLen >= 0 && len(key) > maxLen:
		return fmt.Errorf("%w: %d bytes, at most %d", ErrBadKey, len(key), maxLen)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: not UTF-8", ErrBadKey)
	}
	for _, r := range key {
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) {
			return fmt.Errorf("%w: control character U+%04X", ErrBadKey, r)
		}
	}
	return nil
}

// tokenClaims are the claims a token is read for. Its UnmarshalJSON walks
// the top-level object itself rather than leaving it to encoding/json,
// which matches names ignoring case ("SUB" would fill the sub) and keeps
// the last of a repeated name: either lets a token mean something other
// than what a reader of its claims (or the issuer's library) sees, so a
// name matches exactly, a repeated one is refused, and a claim of the
// wrong type is refused rather than ignored.
type tokenClaims struct {
	keyClaim  string // the claim holding the presence key (TokenAuth.KeyClaim), set before decoding
	decoded   bool   // UnmarshalJSON ran to the end
	key       string
	hasKey    bool
	exp, nbf  *jwt.NumericDate
	iss       string
	aud       jwt.ClaimStrings
	topics    []string
	hasTopics bool // "topics" given; null gives an empty topics
}

var _ jwt.Claims = (*tokenClaims)(nil)

// UnmarshalJSON implements json.Unmarshaler (jwt decodes the payload with
// it; the bytes are valid JSON by then).
func (c *tokenClaims) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("claims are not a JSON object")
	}
	seen := make(map[string]bool, 8)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := t.(string) // an object's keys are strings
		if seen[name] {
			return fmt.Errorf("claim %q appears twice", name)
		}
		seen[name] = true
		switch name {
		case c.keyClaim:
			c.key, err = stringClaim(dec, name)
			c.hasKey = err == nil
		case "iss":
			c.iss, err = stringClaim(dec, name)
		case "aud":
			c.aud, err = audienceClaim(dec)
		case "exp":
			c.exp, err = dateClaim(dec, name)
		case "nbf":
			c.nbf, err = dateClaim(dec, name)
		case "topics":
			c.topics, err = topicsClaim(dec)
			c.hasTopics = true
		default:
			var skip json.RawMessage
			err = dec.Decode(&skip)
		}
		if err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return err
	}
	c.decoded = true
	return nil
}

// stringClaim reads a claim that must be a string.
func stringClaim(dec *json.Decoder, name string) (string, error) {
	t, err := dec.Token()
	if err != nil {
		return "", err
	}
	s, ok := t.(string)
	if !ok {
		return "", fmt.Errorf("%s claim must be a string", name)
	}
	return s, nil
}

// audienceClaim reads aud: a string or an array of strings (RFC 7519
// 4.1.3); anything else, null included, is refused.
func audienceClaim(dec *json.Decoder) (jwt.ClaimStrings, error) {
	bad := errors.New("aud claim must be a string or an array of strings")
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if s, ok := t.(string); ok {
		return jwt.ClaimStrings{s}, nil
	}
	if t != json.Delim('[') {
		return nil, bad
	}
	return stringsAfterBracket(dec, bad)
}

// dateClaim reads a NumericDate: a number of seconds since the epoch. A
// value time.Time cannot hold is refused rather than wrapped around.
func dateClaim(dec *json.Decoder, name string) (*jwt.NumericDate, error) {
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	n, ok := t.(json.Number)
	if !ok {
		return nil, fmt.Errorf("%s claim must be a number", name)
	}
	f, err := n.Float64()
	if err != nil || math.Abs(f) > 1<<53 {
		return nil, fmt.Errorf("%s claim out of range", name)
	}
	sec, frac := math.Modf(f)
	return &jwt.NumericDate{Time: time.Unix(int64(sec), int64(frac*1e9))}, nil
}

// topicsClaim reads the topics claim: an array of strings; null is an
// empty list (no topic may be joined), never "unrestricted".
func topicsClaim(dec *json.Decoder) ([]string, error) {
	bad := errors.New("topics claim must be an array of strings")
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if t == nil {
		return []string{}, nil
	}
	if t != json.Delim('[') {
		return nil, bad
	}
	return stringsAfterBracket(dec, bad)
}

// stringsAfterBracket reads the strings of an array whose '[' was read,
// and its ']'; an element of another type is bad.
func stringsAfterBracket(dec *json.Decoder, bad error) ([]string, error) {
	out := []string{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		s, ok := t.(string)
		if !ok {
			return nil, bad
		}
		out = append(out, s)
	}
	if _, err := dec.Token(); err != nil { // the closing ']'
		return nil, err
	}
	return out, nil
}

// GetExpirationTime implements jwt.Claims.
func (c *tokenClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.exp, nil }

// GetNotBefore implements jwt.Claims.
func (c *tokenClaims) GetNotBefore() (*jwt.NumericDate, error) { return c.nbf, nil }

// GetIssuedAt implements jwt.Claims (iat is not read).
func (c *tokenClaims) GetIssuedAt() (*jwt.NumericDate, error) { return nil, nil }

// GetIssuer implements jwt.Claims.
func (c *tokenClaims) GetIssuer() (string, error) { return c.iss, nil }

// GetSubject implements jwt.Claims (sub is checked as the key claim, if
// it is that, never by jwt).
func (c *tokenClaims) GetSubject() (string, error) { return "", nil }

// GetAudience implements jwt.Claims.
func (c *tokenClaims) GetAudience() (jwt.ClaimStrings, error) { return c.aud, nil }

// verifier checks tokens for a Channel.
type verifier struct {
	secret    []byte      // HMAC tokens are checked against it alone
	keyfunc   jwt.Keyfunc // asymmetric tokens are checked against it alone
	keyClaim  string
	parser    *jwt.Parser
	leeway    time.Duration
	maxKeyLen int
}

// newVerifier returns the verifier of cfg (its defaults applied), or nil
// when cfg has neither a Secret nor a Keyfunc (development mode).
func newVerifier(cfg Config) (*verifier, error) {
	a := cfg.TokenAuth
	if len(cfg.Secret) == 0 && a.Keyfunc == nil {
		if len(a.Algorithms) > 0 || a.Issuer != "" || a.Audience != "" || a.KeyClaim != "" {
			return nil, errors.New("presencechannel: TokenAuth is set but neither Secret nor Keyfunc: tokens would never be checked")
		}
		return nil, nil
	}
	var methods []string
	if len(cfg.Secret) > 0 {
		methods = append(methods, "HS256")
	}
	switch {
	case a.Keyfunc == nil && len(a.Algorithms) > 0:
		return nil, errors.New("presencechannel: TokenAuth.Algorithms needs a Keyfunc (HS256 is Secret's)")
	case a.Keyfunc != nil && len(a.Algorithms) == 0:
		methods = append(methods, DefaultAlgorithms...)
	}
	for _, alg := range a.Algorithms {
		if !slices.Contains(asymmetricAlgorithms, alg) {
			return nil, fmt.Errorf("presencechannel: TokenAuth.Algorithms: %q is not an asymmetric JWS algorithm (%s)", alg, strings.Join(asymmetricAlgorithms, ", "))
		}
		if !slices.Contains(methods, alg) {
			methods = append(methods, alg)
		}
	}
	keyClaim := cmp.Or(a.KeyClaim, "sub")
	if slices.Contains(reservedClaims, keyClaim) {
		return nil, fmt.Errorf("presencechannel: TokenAuth.KeyClaim %q is a claim read for another purpose (%s)", keyClaim, strings.Join(reservedClaims, ", "))
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		// Strict: a signature whose unused low bits differ is another
		// string for the same token, and a token must have one spelling.
		jwt.WithStrictDecoding(),
		jwt.WithLeeway(cfg.Leeway),
	}
	if cfg.RequireExp {
		opts = append(opts, jwt.WithExpirationRequired())
	}
	if a.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(a.Issuer))
	}
	if a.Audience != "" {
		opts = append(opts, jwt.WithAudience(a.Audience))
	}
	return &verifier{secret: cfg.Secret, keyfunc: a.Keyfunc, keyClaim: keyClaim, parser: jwt.NewParser(opts...),
		leeway: cfg.Leeway, maxKeyLen: cfg.MaxKeyLen}, nil
}

// key is the parser's Keyfunc. The token's algorithm is one of the pinned
// ones by then (jwt checks before calling it); an HMAC token gets the
// secret and any other the Keyfunc's key, so that a public key never
// reaches an HMAC method and a secret never an asymmetric one.
func (v *verifier) key(t *jwt.Token) (any, error) {
	if _, hmac := t.Method.(*jwt.SigningMethodHMAC); hmac {
		if len(v.secret) == 0 {
			return nil, errors.New("no secret for an HMAC token")
		}
		return v.secret, nil
	}
	if v.keyfunc == nil {
		return nil, errors.New("no public key for an asymmetric token")
	}
	k, err := v.keyfunc(t)
	if err != nil {
		// Not the Keyfunc's words: they may quote the token's header
		// (its kid), which the sender chose.
		return nil, errors.New("no public key for the token (unknown kid, or a key of another algorithm)")
	}
	return k, nil
}

// isTokenByte reports whether b may appear in a compact JWT. base64
// decoding skips CR and LF even when strict, so without this check a
// signature with line breaks in it would pass as the same token.
func isTokenByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_' || b == '.'
}

// verify checks a compact JWT and returns its user and the time its
// connection must end (exp plus leeway; zero without exp). Errors wrap
// ErrBadToken, ErrTokenExpired or ErrBadKey and never quote the token.
func (v *verifier) verify(token string) (*User, time.Time, error) {
	for i := 0; i < len(token); i++ {
		if !isTokenByte(token[i]) {
			return nil, time.Time{}, fmt.Errorf("%w: not a compact JWT", ErrBadToken)
		}
	}
	c := tokenClaims{keyClaim: v.keyClaim}
	_, err := v.parser.ParseWithClaims(token, &c, v.key)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, time.Time{}, ErrTokenExpired
	case err != nil:
		return nil, time.Time{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	case !c.decoded:
		return nil, time.Time{}, fmt.Errorf("%w: claims are not a JSON object", ErrBadToken)
	case !c.hasKey:
		return nil, time.Time{}, fmt.Errorf("%w: %s claim required", ErrBadToken, v.keyClaim)
	}
	if err := checkKey(c.key, v.maxKeyLen); err != nil {
		return nil, time.Time{}, err
	}
	u := &User{Key: c.key}
	if c.hasTopics {
		for _, p := range c.topics {
			if err := checkPattern(p); err != nil {
				return nil, time.Time{}, fmt.Errorf("%w: %v", ErrBadToken, err)
			}
		}
		u.Topics = c.topics
	}
	var expires time.Time
	if c.exp != nil {
		expires = c.exp.Add(v.leeway)
	}
	return u, expires, nil
}

// SignHS256 makes a compact HS256 JWT with the given claims (for tests and
// tools; servers only verify). It signs under any secret, so that tests
// can make tokens a server must refuse.
func SignHS256(secret []byte, claims map[string]any) (string, error) {
	return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(claims)).SignedString(secret)
}
