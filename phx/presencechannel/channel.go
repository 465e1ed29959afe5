package presencechannel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/gopresence/presence"
	"github.com/gopresence/presence/internal/jsonscan"
	"github.com/gopresence/presence/internal/loglimit"
	"github.com/gopresence/presence/phx"
)

// Presence is what the channel needs of a presence.Presence (which
// satisfies it); tests may substitute their own.
type Presence interface {
	Track(ctx context.Context, owner, topic, key string, meta json.RawMessage) (ref string, err error)
	Update(ctx context.Context, owner, topic, key string, meta json.RawMessage) (ref string, err error)
	Untrack(ctx context.Context, owner, topic, key string) error
	UntrackOwner(ctx context.Context, owner string) error
	List(topic string) presence.State
	Get(topic, key string) *presence.Entry
	Subscribe(topic string, fn func(presence.Diff)) (cancel func())
	Snapshot(topic string) presence.EncodedState
	ViewCounts(topic string) (keys, metas int)
	Settle(ctx context.Context, topic string) error
}

var _ Presence = (*presence.Presence)(nil)

// Events of the built-in channel.
const (
	EventUpdate    = "presence:update"
	EventTrack     = "presence:track"
	EventUntrack   = "presence:untrack"
	EventBroadcast = "broadcast"
	EventState     = "presence_state"
	EventDiff      = "presence_diff"
)

// Defaults of Config (a zero field means the default).
const (
	DefaultCallTimeout       = 5 * time.Second
	DefaultLeeway            = 30 * time.Second
	DefaultMaxKeyLen         = 256
	DefaultMaxMetaBytes      = 4096
	DefaultMaxMetasPerKey    = 32
	DefaultMaxBroadcastBytes = 64 << 10
	DefaultBroadcastRate     = 20
	DefaultBroadcastBurst    = 40
	DefaultUpdateRate        = 10
	DefaultUpdateBurst       = 20
)

// Config configures a Channel.
type Config struct {
	// Presence tracks the members. Required.
	Presence Presence

	// Topics are the patterns the channel serves (exact topics or
	// "prefix*"). Default ["room:*"].
	Topics []string

	// Secret, when set, requires every connection to carry a JWT: socket
	// parameter "token" (or the auth token of the WebSocket subprotocol /
	// X-Phoenix-AuthToken header), HS256 under Secret, or signed with a
	// key of TokenAuth.Keyfunc (RS256, ES256, EdDSA, … as pinned by
	// TokenAuth.Algorithms). It must be at least MinSecretLen bytes (New
	// refuses a shorter one).
	//
	// The token's "sub" claim (TokenAuth.KeyClaim; a string) is the
	// presence key. An optional
	// "topics" claim limits the joinable topics: an array of exact topics
	// and patterns, "*" (every topic) or a prefix ending in ':', '/' or
	// '.' followed by "*" ("room:*" matches "room:x" and "room:x:y", not
	// "room:"); a '*' anywhere else ("room:a*") makes the token invalid.
	// "topics": null allows no topic; an absent claim allows all. exp and
	// nbf are honoured (with Leeway), and the connection is closed when
	// exp (plus Leeway) passes. Claim names match exactly, and a payload
	// naming a claim twice, or giving sub, exp, nbf or topics a value of
	// another type, is refused.
	//
	// With neither Secret nor Keyfunc (development mode) the socket parameter
	// "user_id" is the key, unauthenticated. Either way the key must
	// satisfy MaxKeyLen and hold no control characters (ErrBadKey).
	Secret []byte

	TokenAuth // asymmetric keys (Keyfunc), Algorithms, Issuer, Audience, KeyClaim: see keys.go

	// RequireExp refuses tokens without an exp claim: a token that never
	// expires cannot be withdrawn short of changing the Secret.
	RequireExp bool

	// Leeway is the clock skew tolerated on exp/nbf. Default 30 s.
	Leeway time.Duration

	// MaxKeyLen bounds a presence key in bytes. Default 256; negative: no
	// limit.
	MaxKeyLen int

	// MaxMetaBytes bounds a meta (of a join, presence:track or
	// presence:update) in bytes, as the client sent it; a larger one gets
	// the error reply {"reason":"meta too large"} (a join is refused with
	// it). Metas are kept for the presence's life and sent to every
	// member. Default 4096; negative: no limit.
	MaxMetaBytes int

	// MaxMetasPerKey bounds the metas one key may have in a topic (one per
	// tracking connection, across the cluster); a join or presence:track
	// that would exceed it gets {"reason":"too many presences for this
	// key"}. Concurrent joins of one key may overshoot it by the joins in
	// flight. Default 32; negative: no limit.
	MaxMetasPerKey int

	// MaxBroadcastBytes bounds a broadcast payload in bytes; a larger one
	// gets {"reason":"payload too large"} and is not relayed. Default
	// 64 KiB; negative: no limit.
	MaxBroadcastBytes int

	// BroadcastRate and BroadcastBurst limit broadcast events per
	// connection (token bucket: BroadcastRate a second, bursts of
	// BroadcastBurst), shared by every channel the connection joined. A
	// broadcast over the limit gets {"reason":"rate limited"} and is not
	// relayed. Defaults 20/s and 40; a negative BroadcastRate disables the
	// limit.
	BroadcastRate  float64
	BroadcastBurst int

	// UpdateRate and UpdateBurst limit presence:update, presence:track and
	// presence:untrack per connection, as BroadcastRate does broadcasts:
	// each one makes a presence_diff to every member of the topic.
	// Defaults 10/s and 20; a negative UpdateRate disables the limit.
	UpdateRate  float64
	UpdateBurst int

	// CallTimeout bounds each presence call made on behalf of a client: a
	// command whose shard stays busy past it is not applied, and a join
	// stops waiting for its diffs to settle. Default 5 s.
	CallTimeout time.Duration

	// Logger receives warnings (refused joins, rate-limited clients) and
	// errors of presence calls, each message rate-limited and its values
	// truncated (they quote what clients sent). Nil discards.
	Logger *slog.Logger
}

// Channel is the built-in presence channel: a phx.Channel and the phx.Config.Connect that goes with it.
//
// Join payload {"meta": {...}} tracks the connection under its user key;
// any other payload only watches. Either way the joiner then gets
// presence_state, and every member gets presence_diff broadcasts. Events:
// presence:update and presence:track {"meta": {...}} (errors "not tracked",
// "already tracked", "invalid meta"), presence:untrack (idempotent), and
// broadcast (relayed to the topic's other members; ok reply). The limits
// of Config answer with the errors "meta too large", "too many presences
// for this key", "payload too large" and "rate limited" (a join is
// refused with the first two), and change nothing.
type Channel struct {
	cfg    Config
	log    *slog.Logger
	direct *presence.Presence // cfg.Presence, if it is one (see metasOf)
	verify *verifier          // nil without a Secret or Keyfunc

	mu   sync.Mutex
	subs map[subKey]*topicSub
}

type subKey struct {
	srv   *phx.Server
	topic string
}

// topicSub is the one presence subscription of a topic on a server,
// shared by the local members.
type topicSub struct {
	n      int
	cancel func()
	modes  modeCounts

	// mu orders the broadcasts against the gaps (leave.go).
	mu      sync.Mutex
	gaps    map[*gap]struct{}
	recent  []recentDiff
	limited map[*phx.Socket]*limited
	// the counts of the last diff, to send presence_count on a change
	lastKeys, lastMetas int
	counts              countWindow
}

// member is the per-join state (phx.Socket.State).
type member struct {
	user    *User
	tracked bool // currently tracked in the topic
	ever    bool // tracked at some point: untrack the owner at the end
	mode    string
	limited bool // full with max_keys (modes.go)
	sub     *topicSub
}

// New returns a Channel for cfg.
func New(cfg Config) (*Channel, error) {
	if cfg.Presence == nil {
		return nil, errors.New("presencechannel: Config.Presence is required")
	}
	if len(cfg.Topics) == 0 {
		cfg.Topics = []string{"room:*"}
	}
	for _, p := range cfg.Topics {
		if i := strings.IndexByte(p, '*'); p == "" || (i >= 0 && i != len(p)-1) {
			return nil, fmt.Errorf("presencechannel: bad topic pattern %q", p)
		}
	}
	if n := len(cfg.Secret); n > 0 && n < MinSecretLen {
		return nil, fmt.Errorf("presencechannel: Config.Secret is %d bytes, at least %d are required: an HS256 key shorter than the hash can be guessed offline from one token", n, MinSecretLen)
	}
	if cfg.Leeway <= 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	orDefault(&cfg.MaxKeyLen, DefaultMaxKeyLen)
	orDefault(&cfg.MaxMetaBytes, DefaultMaxMetaBytes)
	orDefault(&cfg.MaxMetasPerKey, DefaultMaxMetasPerKey)
	orDefault(&cfg.MaxBroadcastBytes, DefaultMaxBroadcastBytes)
	if cfg.BroadcastRate == 0 {
		cfg.BroadcastRate = DefaultBroadcastRate
	}
	if cfg.BroadcastBurst <= 0 {
		cfg.BroadcastBurst = DefaultBroadcastBurst
	}
	if cfg.UpdateRate == 0 {
		cfg.UpdateRate = DefaultUpdateRate
	}
	if cfg.UpdateBurst <= 0 {
		cfg.UpdateBurst = DefaultUpdateBurst
	}
	cfg.Logger = loglimit.New(cfg.Logger)
	ch := &Channel{cfg: cfg, log: cfg.Logger, subs: make(map[subKey]*topicSub)}
	ch.direct, _ = cfg.Presence.(*presence.Presence)
	var err error
	if ch.verify, err = newVerifier(cfg); err != nil {
		return nil, err
	}
	return ch, nil
}

// orDefault sets a zero *v to def.
func orDefault(v *int, def int) {
	if *v == 0 {
		*v = def
	}
}

// over reports whether n exceeds the limit max (negative: none).
func over(n, max int) bool { return max >= 0 && n > max }

// callCtx bounds a presence call by CallTimeout, whatever the Presence:
// the tracker's commands honour ctx (one that ends while a command waits
// for its shard is not applied) and Settle waits for the diffs.
func (ch *Channel) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, ch.cfg.CallTimeout)
}

// Routes returns the phx routes of the configured topic patterns.
func (ch *Channel) Routes() []phx.Route {
	rs := make([]phx.Route, len(ch.cfg.Topics))
	for i, p := range ch.cfg.Topics {
		rs[i] = phx.Route{Pattern: p, Channel: ch}
	}
	return rs
}

// Connect authenticates a connection (use it as phx.Config.Connect): the
// JWT of socket parameter "token" (or the transport's auth token) when a
// Secret or a Keyfunc is configured, else a "user_id" parameter (see
// Config.Secret).
// The Identity's ID is "user:<key>" (phx.Server.Disconnect("user:<key>")
// logs the user out everywhere on this node), its Assigns a *User, and
// its ExpiresAt the token's exp plus Leeway, so that the connection ends
// with its credentials.
func (ch *Channel) Connect(ctx context.Context, info *phx.ConnectInfo) (phx.Identity, error) {
	var u *User
	var expires time.Time
	if ch.verify != nil {
		tok := info.Params.Get("token")
		if tok == "" {
			tok = info.AuthToken
		}
		if tok == "" {
			return phx.Identity{}, ErrNoCredentials
		}
		var err error
		if u, expires, err = ch.verify.verify(tok); err != nil {
			return phx.Identity{}, err
		}
	} else {
		if !info.Params.Has("user_id") {
			return phx.Identity{}, ErrNoCredentials
		}
		key := info.Params.Get("user_id")
		if err := checkKey(key, ch.cfg.MaxKeyLen); err != nil {
			return phx.Identity{}, err
		}
		u = &User{Key: key}
	}
	return phx.Identity{ID: "user:" + u.Key, Assigns: u, ExpiresAt: expires}, nil
}

var (
	replyNotTracked     = map[string]string{"reason": "not tracked"}
	replyAlreadyTracked = map[string]string{"reason": "already tracked"}
	replyInvalidMeta    = map[string]string{"reason": "invalid meta"}
	replyUnauthorized   = map[string]string{"reason": "unauthorized"}
	replyUnknownEvent   = map[string]string{"reason": "unknown event"}
	replyInvalidPayload = map[string]string{"reason": "invalid payload"}
	replyUnavailable    = map[string]string{"reason": "presence unavailable"}
	replyMetaTooLarge   = map[string]string{"reason": "meta too large"}
	replyTooManyMetas   = map[string]string{"reason": "too many presences for this key"}
	replyRateLimited    = map[string]string{"reason": "rate limited"}
	replyPayloadTooBig  = map[string]string{"reason": "payload too large"}
)

// metaRefusal returns the reply refusing meta as a new presence of key in
// topic (too large, or one too many for the key), or nil.
func (ch *Channel) metaRefusal(topic, key string, meta json.RawMessage, adds bool) map[string]string {
	if over(len(meta), ch.cfg.MaxMetaBytes) {
		return replyMetaTooLarge
	}
	if adds && ch.cfg.MaxMetasPerKey >= 0 && ch.metasOf(topic, key)+1 > ch.cfg.MaxMetasPerKey {
		return replyTooManyMetas
	}
	return nil
}

// metasOf counts key's metas in topic. A *presence.Presence is asked
// through its tracker, which skips the Fetch hook (Get would run it per
// join).
func (ch *Channel) metasOf(topic, key string) int {
	if ch.direct != nil {
		return ch.direct.Tracker().CountKey(topic, key)
	}
	if e := ch.cfg.Presence.Get(topic, key); e != nil {
		return len(e.Metas)
	}
	return 0
}

// metaOf returns the "meta" of a JSON object payload if it is an object.
// The key matches as encoding/json matches a struct field (the last
// occurrence, ignoring case); phx hands over valid JSON, which a scan of
// the top level reads without decoding anything (keys with escapes or
// non-ASCII bytes take encoding/json's path).
func metaOf(p phx.Payload) (json.RawMessage, bool) {
	if p.IsBinary {
		return nil, false
	}
	b := bytes.TrimSpace(p.JSON)
	if len(b) == 0 || b[0] != '{' {
		return nil, false
	}
	m, ok := scanMeta(b)
	if !ok {
		var in struct {
			Meta json.RawMessage `json:"meta"`
		}
		if json.Unmarshal(b, &in) != nil {
			return nil, false
		}
		m = in.Meta
	}
	m = bytes.TrimSpace(m)
	if len(m) == 0 || m[0] != '{' {
		return nil, false
	}
	return m, true
}

// scanMeta finds the value of the top-level "meta" member of the valid
// JSON object b; ok is false when it cannot tell without decoding (a key
// with escapes or non-ASCII bytes, which encoding/json would unescape or
// fold differently, or nesting deeper than jsonscan follows).
func scanMeta(b []byte) (meta []byte, ok bool) {
	plain := true
	_, err := jsonscan.EachField(b, 0, func(key []byte, i int) (int, error) {
		for _, c := range key {
			if c == '\\' || c >= 0x80 {
				plain = false
			}
		}
		v, err := jsonscan.SkipValue(b, i)
		if err == nil && len(key) == 4 && strings.EqualFold(string(key), "meta") {
			meta = b[i:v]
		}
		return v, err
	})
	if err != nil || !plain {
		return nil, false
	}
	return meta, true
}

// Join implements phx.Channel.
func (ch *Channel) Join(ctx context.Context, s *phx.Socket, p phx.Payload) (any, error) {
	u, ok := s.Assigns().(*User)
	if !ok || u == nil {
		ch.log.Warn("presencechannel: join refused: the connection has no *User", "topic", s.Topic())
		return nil, phx.Refuse(replyUnauthorized)
	}
	if !u.mayJoin(s.Topic()) {
		ch.log.Warn("presencechannel: join refused: topic not allowed by the token", "key", u.Key, "topic", s.Topic())
		return nil, phx.Refuse(replyUnauthorized)
	}
	mode, maxKeys, ok := modeOf(p)
	if !ok {
		ch.log.Warn("presencechannel: join refused: invalid presence mode", "key", u.Key, "topic", s.Topic())
		return nil, phx.Refuse(replyInvalidMode)
	}
	ignore(s, mode)
	m := &member{user: u, mode: mode, limited: maxKeys > 0}
	meta, track := metaOf(p)
	if track {
		if r := ch.metaRefusal(s.Topic(), u.Key, meta, true); r != nil {
			ch.log.Warn("presencechannel: join refused", "key", u.Key, "topic", s.Topic(), "reason", r["reason"], "meta_bytes", len(meta))
			return nil, phx.Refuse(r)
		}
	}
	// Subscribe before tracking, so that the joiner sees its own join.
	m.sub = ch.acquire(s.Server(), s.Topic())
	m.sub.modes.add(mode, 1) // before the state: no diff after it may be skipped
	if mode == ModeFull {
		ch.pushGap(u, s) // ahead of everything after the reply
	}
	// One CallTimeout bounds the join's Track and Settle together (one
	// timer per join, not two).
	cctx := ctx
	if track {
		var cancel context.CancelFunc
		cctx, cancel = ch.callCtx(ctx)
		defer cancel()
		_, err := ch.cfg.Presence.Track(cctx, s.Owner(), s.Topic(), u.Key, meta)
		if err != nil {
			m.sub.modes.add(mode, -1)
			ch.release(s.Server(), s.Topic())
			ch.log.Error("presencechannel: track on join failed", "topic", s.Topic(), "key", u.Key, "err", err)
			if errors.Is(err, presence.ErrInvalidMeta) {
				return nil, phx.Refuse(replyInvalidMeta)
			}
			return nil, phx.Refuse(replyUnavailable)
		}
		m.tracked, m.ever = true, true
	}
	s.State = m
	// The state is the topic as its diffs left it (Snapshot), so that the
	// diffs after it, which this socket receives, are exactly what it
	// lacks. Settling the join first puts the member in it when the topic
	// is quiet; in a busy one the next diff brings it.
	if track {
		if err := ch.cfg.Presence.Settle(cctx, s.Topic()); err != nil {
			ch.log.Warn("presencechannel: join not settled before its presence_state", "topic", s.Topic(), "err", err)
		}
	}
	// Held by phx until the join reply is queued.
	switch {
	case m.limited:
		ch.joinLimited(s, m.sub, maxKeys)
	case mode == ModeFull:
		ch.push(s, EventState, ch.cfg.Presence.Snapshot(s.Topic()))
	case mode == ModeCount:
		keys, metas := ch.cfg.Presence.ViewCounts(s.Topic())
		ch.push(s, EventCount, countPayload{keys, metas})
	}
	return nil, nil
}

// HandleIn implements phx.Channel.
func (ch *Channel) HandleIn(ctx context.Context, s *phx.Socket, event string, p phx.Payload) (*phx.Reply, error) {
	m := s.State.(*member)
	switch event {
	case EventUpdate, EventTrack, EventUntrack:
		if !ch.allow(m.user, ch.limits(m.user).update, event, s.Topic()) {
			return phx.ReplyError(replyRateLimited), nil
		}
	case EventBroadcast:
		if !ch.allow(m.user, ch.limits(m.user).broadcast, event, s.Topic()) {
			return phx.ReplyError(replyRateLimited), nil
		}
	}
	switch event {
	case EventUpdate, EventTrack:
		meta, ok := metaOf(p)
		if !ok {
			return phx.ReplyError(replyInvalidMeta), nil
		}
		if r := ch.metaRefusal(s.Topic(), m.user.Key, meta, event == EventTrack && !m.tracked); r != nil {
			return phx.ReplyError(r), nil
		}
		cctx, cancel := ch.callCtx(ctx)
		defer cancel()
		var err error
		if event == EventUpdate {
			if !m.tracked {
				return phx.ReplyError(replyNotTracked), nil
			}
			_, err = ch.cfg.Presence.Update(cctx, s.Owner(), s.Topic(), m.user.Key, meta)
		} else {
			if m.tracked {
				return phx.ReplyError(replyAlreadyTracked), nil
			}
			_, err = ch.cfg.Presence.Track(cctx, s.Owner(), s.Topic(), m.user.Key, meta)
			if err == nil {
				m.tracked, m.ever = true, true
			}
		}
		switch {
		case err == nil:
			return phx.ReplyOK(nil), nil
		case errors.Is(err, presence.ErrNotTracked):
			m.tracked = false
			return phx.ReplyError(replyNotTracked), nil
		case errors.Is(err, presence.ErrAlreadyTracked):
			m.tracked, m.ever = true, true
			return phx.ReplyError(replyAlreadyTracked), nil
		case errors.Is(err, presence.ErrInvalidMeta):
			return phx.ReplyError(replyInvalidMeta), nil
		default:
			ch.log.Error("presencechannel: presence call failed", "event", event, "topic", s.Topic(), "err", err)
			return phx.ReplyError(replyUnavailable), nil
		}
	case EventUntrack:
		if m.tracked {
			cctx, cancel := ch.callCtx(ctx)
			defer cancel()
			if err := ch.cfg.Presence.Untrack(cctx, s.Owner(), s.Topic(), m.user.Key); err != nil {
				ch.log.Error("presencechannel: untrack failed", "topic", s.Topic(), "err", err)
				return phx.ReplyError(replyUnavailable), nil
			}
			m.tracked = false
		}
		return phx.ReplyOK(nil), nil
	case EventBroadcast:
		var payload any = p.JSON
		n := len(p.JSON)
		if p.IsBinary {
			payload, n = phx.Binary(p.Binary), len(p.Binary)
		}
		if over(n, ch.cfg.MaxBroadcastBytes) {
			return phx.ReplyError(replyPayloadTooBig), nil
		}
		if err := s.BroadcastFrom(EventBroadcast, payload); err != nil {
			return phx.ReplyError(replyInvalidPayload), nil
		}
		return phx.ReplyOK(nil), nil
	}
	return phx.ReplyError(replyUnknownEvent), nil
}

// Terminate implements phx.Channel: the channel's presences leave.
func (ch *Channel) Terminate(s *phx.Socket, reason error) {
	m, ok := s.State.(*member)
	if ok && m.sub != nil {
		if m.limited {
			m.sub.leaveLimited(s)
		} else {
			m.sub.modes.add(m.mode, -1)
		}
	}
	if ok && m.mode == ModeFull && stays(reason) {
		arm := ch.startGap(m.user, s.Server(), s.Topic()) // see leave.go
		defer arm()
	}
	if ok && m.ever {
		ctx, cancel := ch.callCtx(context.Background())
		if err := ch.cfg.Presence.UntrackOwner(ctx, s.Owner()); err != nil {
			ch.log.Error("presencechannel: untrack on terminate failed", "topic", s.Topic(), "owner", s.Owner(), "err", err)
		}
		cancel()
	}
	ch.release(s.Server(), s.Topic())
}

// acquire takes a reference on the topic's presence subscription, making
// it on first use: every diff of the topic is broadcast to the topic's
// local members as presence_diff (encoded once per serializer by phx).
func (ch *Channel) acquire(srv *phx.Server, topic string) *topicSub {
	k := subKey{srv, topic}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ts := ch.subs[k]
	if ts == nil {
		ts = &topicSub{lastKeys: -1, lastMetas: -1}
		ts.cancel = ch.cfg.Presence.Subscribe(topic, func(d presence.Diff) { ch.broadcastDiff(srv, topic, ts, d) })
		ch.subs[k] = ts
	}
	ts.n++
	return ts
}

// release drops a reference; the last one cancels the subscription.
func (ch *Channel) release(srv *phx.Server, topic string) {
	k := subKey{srv, topic}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ts := ch.subs[k]
	if ts == nil {
		return
	}
	if ts.n--; ts.n == 0 {
		ts.cancel()
		delete(ch.subs, k)
		ts.mu.Lock() // after cancel: a diff being broadcast holds it
		ts.counts.stop()
		ts.mu.Unlock()
	}
}
