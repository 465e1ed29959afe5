package phx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/gopresence/presence/internal/loglimit"
)

// Defaults of Config (a zero field means the default).
const (
	DefaultMount           = "/socket"
	DefaultMaxChannels     = 100
	DefaultMaxFrameSize    = 1 << 20
	DefaultSendQueueLen    = 1024
	DefaultIdleTimeout     = 60 * time.Second
	DefaultWriteTimeout    = 10 * time.Second
	DefaultJoinRate        = 10
	DefaultJoinBurst       = 100
	DefaultLongPollWindow  = 10 * time.Second
	DefaultLongPollMaxBody = 2 << 20
	DefaultMaxQueueBytes   = 8 << 20
	DefaultMaxConnsPerIP   = 100
	DefaultMaxConnsPerID   = 32
	DefaultMaxTopicLen     = 256
)

// Config configures a Server. The zero value of every field means its
// documented default.
type Config struct {
	// Mount is the path under which the transports are served:
	// Mount+"/websocket" and Mount+"/longpoll". Default "/socket".
	Mount string

	// Channels routes topics to channels, first match wins (exact topics
	// or "prefix*" patterns, as Phoenix's channel routes). A topic no route matches gets an
	// "unmatched topic" error reply. Required for anything useful.
	Channels []Route

	// Connect authorizes a new connection (a WebSocket upgrade, or the GET
	// that creates a long-poll session) and returns its identity. It runs
	// on the request's goroutine before anything is sent. A nil Connect
	// accepts every connection with empty assigns. Returning an error
	// refuses the connection: WebSocket with HTTP 403 (or the Status of a
	// *ConnectError), long-poll with body status 403.
	Connect func(ctx context.Context, info *ConnectInfo) (Identity, error)

	// AllowedOrigins is the list form of Phoenix's check_origin, consulted
	// only when a request has an Origin header. Entries are "https://host",
	// "https://host:port", "//host" (any scheme and port), "//*.host"
	// (host and its subdomains); an entry with a scheme but no port allows
	// only that scheme's default port. The single entry "*" allows every
	// origin, "null" included. Empty (default): same origin only — the
	// Origin's scheme, host and port must equal the request's own
	// (Phoenix's check_origin: :conn).
	// Phoenix's default (`true`: compare the host with the endpoint's
	// configured host, "localhost" unless set) is the list "//localhost".
	AllowedOrigins []string

	// OriginHint is added to the warning logged for a refused origin: how
	// the operator allows it (presenced names its --origins flag). Default
	// "see Config.AllowedOrigins".
	OriginHint string

	// CheckOrigin, if set, replaces AllowedOrigins: it is called for every
	// request that has an Origin header, with that header parsed.
	CheckOrigin func(r *http.Request, origin *url.URL) bool

	// MaxChannels is the number of channels one connection may join
	// (Phoenix's max_channels_per_transport). Default 100.
	MaxChannels int

	// MaxFrameSize is the largest client frame accepted, in bytes (also
	// after base64 decoding on long-poll). A larger frame closes the
	// connection (WebSocket close 1009). Default 1 MiB. Phoenix has no limit.
	MaxFrameSize int64

	// SendQueueLen bounds the frames queued for one client. A client whose
	// queue is full is disconnected (WebSocket close 1008 "slow consumer";
	// long-poll: the session ends), never allowed to stall others.
	// Default 1024.
	SendQueueLen int

	// IdleTimeout closes a WebSocket connection from which nothing was
	// received for that long (close code 1002, as Bandit). It must exceed
	// the client heartbeat interval (30 s). Default 60 s.
	IdleTimeout time.Duration

	// WriteTimeout bounds one write to a WebSocket; a client that does not
	// read for that long is dropped. Default 10 s.
	WriteTimeout time.Duration

	// JoinRate and JoinBurst limit joins per connection (token bucket:
	// JoinRate joins per second, bursts of JoinBurst). A join over the
	// limit gets an error reply {"reason":"too many joins"}. Defaults 10/s
	// and 100 (a reconnecting client may rejoin 100 channels at once).
	// A negative JoinRate disables the limit.
	JoinRate  float64
	JoinBurst int

	// LongPoll enables the long-poll transport (off upstream by default;
	// the official client uses it only as a fallback). Default false.
	LongPoll bool

	// DisableWebSocket turns the WebSocket transport off. Default false.
	DisableWebSocket bool

	// LongPollWindow is how long a poll waits for output before answering
	// 204 (Phoenix's window_ms); sessions without a poll for 1.5 windows
	// end. Must stay below the client's 20 s request timeout. Default 10 s.
	LongPollWindow time.Duration

	// LongPollMaxBody bounds a long-poll POST body in bytes; a larger body
	// gets HTTP 413 (checked against Content-Length before anything is
	// read). Default 2 MiB.
	LongPollMaxBody int64

	// MaxQueueBytes bounds the bytes waiting to be written to one client
	// (queued frames and the unwritten rest of the frame being written).
	// A frame that would take a non-empty queue past it closes the
	// connection as a slow consumer (WebSocket close 1008); a single frame
	// larger than the bound still goes out when nothing else waits.
	// Default 8 MiB; at most 1 GiB.
	MaxQueueBytes int64

	// MaxConnsPerIP bounds the live connections (WebSockets and long-poll
	// sessions) from one peer IP address; one more is refused with HTTP
	// 429 (long-poll: body status 429). Loopback peers are not counted: a
	// reverse proxy on the same host makes every client look like one.
	// Default 100; negative: no limit.
	MaxConnsPerIP int

	// MaxConnsPerID bounds the live connections of one Identity.ID (one
	// user, with presencechannel); one more is refused with HTTP 429.
	// Default 32; negative: no limit.
	MaxConnsPerID int

	// MaxTopicLen bounds a topic's length in bytes; a join of a longer
	// topic, or of one holding control characters or invalid UTF-8, gets
	// an error reply {"reason":"invalid topic"}. Default 256.
	MaxTopicLen int

	// TrustForwardedProto makes the same-origin check (AllowedOrigins
	// empty) take the request's scheme from X-Forwarded-Proto (or the
	// proto of Forwarded), as sent by a TLS-terminating reverse proxy.
	// Only for servers reachable through such a proxy alone: a client
	// reaching the server directly could set it. Default false.
	TrustForwardedProto bool

	// Logger receives warnings (refused connections, unmatched topics,
	// closed connections). Nil discards.
	Logger *slog.Logger
}

// maxQueueBytes caps Config.MaxQueueBytes (a connection counts its queue
// in 32 bits).
const maxQueueBytes = 1 << 30

// Route maps a topic pattern to a channel.
type Route struct {
	// Pattern is an exact topic ("room:lobby") or a prefix followed by
	// "*" ("room:*" matches every topic starting with "room:"; "*" matches
	// all).
	Pattern string
	// Channel handles every join of a matching topic.
	Channel Channel
}

func (r Route) match(topic string) bool {
	if n := len(r.Pattern); n > 0 && r.Pattern[n-1] == '*' {
		return len(topic) >= n-1 && topic[:n-1] == r.Pattern[:n-1]
	}
	return topic == r.Pattern
}

// ConnectInfo describes a connection being opened, for Config.Connect.
type ConnectInfo struct {
	// Request is the WebSocket upgrade request or the long-poll GET that
	// creates the session. Its body must not be read; do not keep it.
	Request *http.Request
	// Params are the query parameters (vsn included).
	Params url.Values
	// Transport is "websocket" or "longpoll".
	Transport string
	// Vsn is the negotiated serializer version: "1.0.0" or "2.0.0".
	Vsn string
	// AuthToken is the token the client offered in the
	// "base64url.bearer.phx.<token>" WebSocket subprotocol, or in the
	// X-Phoenix-AuthToken long-poll header; "" if none.
	AuthToken string
}

// Identity is what Config.Connect returns for an accepted connection.
type Identity struct {
	// ID identifies the socket (e.g. "user_socket:42"); Server.Disconnect(ID)
	// closes every connection with that ID. Empty: none.
	ID string
	// Assigns is any value the channels of this connection can read with
	// Socket.Assigns (e.g. the authenticated user). Treat it as read-only:
	// channels of one connection share it.
	Assigns any
	// ExpiresAt, when set, is when the connection's credentials expire
	// (a token's exp): the server closes the connection then (WebSocket
	// close 1008 "token expired"; a long-poll session ends). Zero: never.
	ExpiresAt time.Time
}

// ConnectError refuses a connection with an HTTP status (WebSocket only;
// long-poll always answers body status 403), e.g. 429 for rate limiting.
type ConnectError struct {
	Status int   // HTTP status, default 403
	Err    error // cause, logged
}

// Error implements error.
func (e *ConnectError) Error() string {
	return fmt.Sprintf("phx: connection refused (%d): %v", e.Status, e.Err)
}

// Unwrap returns the cause.
func (e *ConnectError) Unwrap() error { return e.Err }

// ErrClosed is returned by Socket.Push and the broadcasts of a closed
// channel or server.
var ErrClosed = errors.New("phx: closed")

func (c *Config) withDefaults() Config {
	d := *c
	if d.Mount == "" {
		d.Mount = DefaultMount
	}
	if d.MaxChannels <= 0 {
		d.MaxChannels = DefaultMaxChannels
	}
	if d.MaxFrameSize <= 0 {
		d.MaxFrameSize = DefaultMaxFrameSize
	}
	if d.SendQueueLen <= 0 {
		d.SendQueueLen = DefaultSendQueueLen
	}
	if d.IdleTimeout <= 0 {
		d.IdleTimeout = DefaultIdleTimeout
	}
	if d.WriteTimeout <= 0 {
		d.WriteTimeout = DefaultWriteTimeout
	}
	if d.JoinRate == 0 {
		d.JoinRate = DefaultJoinRate
	}
	if d.JoinBurst <= 0 {
		d.JoinBurst = DefaultJoinBurst
	}
	if d.LongPollWindow <= 0 {
		d.LongPollWindow = DefaultLongPollWindow
	}
	if d.LongPollMaxBody <= 0 {
		d.LongPollMaxBody = DefaultLongPollMaxBody
	}
	if d.OriginHint == "" {
		d.OriginHint = "see Config.AllowedOrigins"
	}
	if d.MaxQueueBytes <= 0 {
		d.MaxQueueBytes = DefaultMaxQueueBytes
	}
	d.MaxQueueBytes = min(d.MaxQueueBytes, maxQueueBytes)
	if d.MaxConnsPerIP == 0 {
		d.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if d.MaxConnsPerID == 0 {
		d.MaxConnsPerID = DefaultMaxConnsPerID
	}
	if d.MaxTopicLen <= 0 {
		d.MaxTopicLen = DefaultMaxTopicLen
	}
	d.Logger = loglimit.New(d.Logger)
	return d
}
