package presencechannel

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors of token verification (wrapped; the connection is refused).
var (
	// ErrNoCredentials: neither a token (with a Secret) nor a user_id
	// (without) was given.
	ErrNoCredentials = errors.New("presencechannel: no user_id or token")
	// ErrBadToken: the token is malformed, not HS256, badly signed, not
	// valid yet, or has no sub.
	ErrBadToken = errors.New("presencechannel: invalid token")
	// ErrTokenExpired: the token's exp has passed.
	ErrTokenExpired = errors.New("presencechannel: token expired")
)

// User is the identity of a connection: the assigns every channel of the
// connection sees (phx.Socket.Assigns returns a *User).
type User struct {
	// Key is the presence key the connection tracks under (the user id).
	Key string
	// Topics, when non-nil, limits the topics the user may join: exact
	// topics or "prefix*" patterns (the token's "topics" claim).
	Topics []string
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

func matchPattern(p, topic string) bool {
	if prefix, ok := strings.CutSuffix(p, "*"); ok {
		return strings.HasPrefix(topic, prefix)
	}
	return p == topic
}

// claims are the JWT claims we read.
type claims struct {
	Sub    string          `json:"sub"`
	Exp    *float64        `json:"exp"`
	Nbf    *float64        `json:"nbf"`
	Topics json.RawMessage `json:"topics"`
}

// verifyHS256 verifies a compact JWT signed with HMAC-SHA256 under secret
// and returns its user: sub is the key (required, non-empty), exp and nbf
// are honoured (with leeway), the optional "topics" claim (an array of
// strings) limits the joinable topics.
func verifyHS256(token string, secret []byte, now time.Time, leeway time.Duration) (*User, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: not a compact JWT", ErrBadToken)
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrBadToken, err)
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(hb, &hdr); err != nil || hdr.Alg != "HS256" {
		return nil, fmt.Errorf("%w: alg must be HS256", ErrBadToken)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("%w: signature encoding", ErrBadToken)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return nil, fmt.Errorf("%w: bad signature", ErrBadToken)
	}
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: payload encoding", ErrBadToken)
	}
	var c claims
	if err := json.Unmarshal(pb, &c); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrBadToken, err)
	}
	t := float64(now.Unix())
	l := leeway.Seconds()
	if c.Exp != nil && t > *c.Exp+l {
		return nil, ErrTokenExpired
	}
	if c.Nbf != nil && t+l < *c.Nbf {
		return nil, fmt.Errorf("%w: not valid yet", ErrBadToken)
	}
	if c.Sub == "" {
		return nil, fmt.Errorf("%w: sub claim required", ErrBadToken)
	}
	u := &User{Key: c.Sub}
	if len(c.Topics) > 0 && string(c.Topics) != "null" {
		if err := json.Unmarshal(c.Topics, &u.Topics); err != nil {
			return nil, fmt.Errorf("%w: topics claim must be an array of strings", ErrBadToken)
		}
		if u.Topics == nil {
			u.Topics = []string{}
		}
	}
	return u, nil
}

// SignHS256 makes a compact HS256 JWT with the given claims (for tests and
// tools; servers only verify).
func SignHS256(secret []byte, claims map[string]any) (string, error) {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	p, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	s := h + "." + base64.RawURLEncoding.EncodeToString(p)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(s))
	return s + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), nil
}
