package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/net/netutil"

	"github.com/gopresence/presence"
	"github.com/gopresence/presence/internal/loglimit"
	"github.com/gopresence/presence/phx"
	"github.com/gopresence/presence/phx/presencechannel"
	"github.com/gopresence/presence/pubsub"
	"github.com/gopresence/presence/pubsub/membus"
	"github.com/gopresence/presence/pubsub/natsbus"
	"github.com/gopresence/presence/pubsub/natsbus/natsembed"
	"github.com/gopresence/presence/pubsub/redisbus"
	"github.com/gopresence/presence/tracker"
	"github.com/gopresence/presence/web"
)

var errHelp = errors.New("help")

// options are the command line, each flag also settable as PRESENCE_<FLAG>.
type options struct {
	listen             string
	node               string
	natsURL            string
	natsEmbed          bool
	natsListen         string
	natsClusterListen  string
	natsRoutes         string
	redisURL           string
	clusterSecret      string
	clusterSecretFile  string
	routeTLSCert       string
	routeTLSKey        string
	routeTLSCA         string
	namespace          string
	broadcastPeriod    time.Duration
	downPeriod         time.Duration
	permdownPeriod     time.Duration
	flushInterval      time.Duration
	diffWindow         time.Duration
	permdownOnShutdown bool
	shutdownGrace      time.Duration
	poolSize           int
	jwtSecret          string
	jwtSecretFile      string
	jwtPublicKey       string
	jwtJWKSURL         string
	jwtIssuer          string
	jwtAudience        string
	jwtKeyClaim        string
	version            bool
	insecure           bool
	origins            string
	topics             string
	longPoll           bool
	shutdownTimeout    time.Duration
	logLevel           string
	demo               bool
	maxConnections     int

	// limits of phx.Config
	maxQueueBytes       int64
	maxConnsPerIP       int
	maxConnsPerUser     int
	maxTopicLen         int
	longPollMaxBody     int64
	trustForwardedProto bool

	// limits of presencechannel.Config
	jwtRequireExp     bool
	maxMetaBytes      int
	maxMetasPerKey    int
	maxKeyLen         int
	maxBroadcastBytes int
	broadcastRate     float64
	broadcastBurst    int
	updateRate        float64
	updateBurst       int

	// publicKey is --jwt-public-key's key, read by parse.
	publicKey *presencechannel.PublicKey

	// warnings are what parse noticed but did not refuse (unknown
	// PRESENCE_ variables), logged when the node starts.
	warnings []string

	// http are the HTTP server's timeouts: not flags, but fields, so that
	// tests can shorten them.
	http httpTimeouts

	// onListen, when set (by tests), is called with the HTTP address once
	// it listens and the startup line is written.
	onListen func(net.Addr)
	// onEmbedded, when set (by tests), is called with the embedded NATS
	// server once it runs.
	onEmbedded func(*natsembed.Server)
}

// httpTimeouts are the http.Server's timeouts. WebSockets are hijacked
// (phx then sets its own deadlines per read and write) and long-poll GETs,
// which wait up to the 10 s long-poll window, get per-request deadlines
// from phx: these bound everything else, chiefly clients that send
// slowly, read slowly or hold idle connections.
type httpTimeouts struct {
	readHeader, read, write, idle time.Duration
}

var defaultHTTPTimeouts = httpTimeouts{readHeader: 10 * time.Second, read: 30 * time.Second,
	write: 30 * time.Second, idle: 60 * time.Second}

// maxHeaderBytes bounds a request's header (http.Server's default is 1 MiB).
const maxHeaderBytes = 64 << 10

// Bounds of the --max-connections default: what the open-file limit leaves
// after a reserve for the bus, the log and the node's other descriptors,
// but never less than a floor.
const (
	fdReserve          = 256
	minConnectionsFlag = 64
)

func defaultMaxConnections() int { return max(openFileLimit()-fdReserve, minConnectionsFlag) }

// environ lists the environment, for unknownEnv (tests replace it).
var environ = os.Environ

// otherEnv are PRESENCE_ variables of the test harnesses, not settings.
var otherEnv = []string{"PRESENCE_REQUIRE_ALL", "PRESENCE_URL", "PRESENCE_URLS", "PRESENCE_CONTROL_URL", "PRESENCE_COMPAT_OUT"}

// unknownEnv returns a warning for each PRESENCE_ variable of env that is
// no flag's (a typo would otherwise be ignored without a word).
func unknownEnv(fs *flag.FlagSet, env []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		rest, ok := strings.CutPrefix(name, "PRESENCE_")
		if !ok || slices.Contains(otherEnv, name) {
			continue
		}
		if fs.Lookup(strings.ToLower(strings.ReplaceAll(rest, "_", "-"))) == nil {
			out = append(out, fmt.Sprintf("%s is not a presenced setting: ignored (presenced --help lists them; each flag --x-y is PRESENCE_X_Y)", name))
		}
	}
	return out
}

// secretFlags are the flags that hold a secret or name its file. Unlike the
// other flags, setting one of them to "" (flag or environment) is an
// error: an empty secret would otherwise mean "no secret", which for
// --jwt-secret is dev mode, where anyone may claim any user id.
var secretFlags = []string{"jwt-secret", "jwt-secret-file", "cluster-secret", "cluster-secret-file"}

// keyFlags name the public keys of token mode: set to "", they are an
// error too, not dev mode.
var keyFlags = []string{"jwt-public-key", "jwt-jwks-url"}

// parse reads the flags, over the environment (lookup is os.LookupEnv:
// "set but empty" must be told apart from "unset").
func parse(args []string, lookup func(string) (string, bool), out io.Writer) (*options, error) {
	o := &options{http: defaultHTTPTimeouts}
	host, _ := os.Hostname()
	if host == "" {
		host = "presenced"
	}
	fs := flag.NewFlagSet("presenced", flag.ContinueOnError)
	// Parse errors come back as one line (run's caller prints it); only
	// --help prints the usage, to out.
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:4000", "HTTP listen address (the demo page, /socket, /healthz, /api/v1/cluster)")
	fs.StringVar(&o.node, "node", "", "this node's name; unique in the cluster (default: the host name)")
	fs.StringVar(&o.natsURL, "nats-url", "", "join an external NATS at this URL (comma-separated URLs allowed)")
	fs.BoolVar(&o.natsEmbed, "nats-embed", false, "run a NATS server inside this node and replicate over it")
	fs.StringVar(&o.natsListen, "nats-listen", "127.0.0.1:0", "client address of the embedded NATS server (port 0: random)")
	fs.StringVar(&o.natsClusterListen, "nats-cluster-listen", "", "route address of the embedded NATS server, to form a NATS cluster with other nodes (e.g. 127.0.0.1:6222)")
	fs.StringVar(&o.natsRoutes, "nats-routes", "", "comma-separated route URLs of the other nodes' embedded NATS servers (nats-route://host:port)")
	fs.StringVar(&o.redisURL, "redis-url", "", "replicate over Redis at this URL (redis://host:port/db; with a password: redis://:password@host:port/db, or rediss:// for TLS)")
	fs.StringVar(&o.clusterSecret, "cluster-secret", "", "shared secret of the nodes' NATS: with --nats-embed the embedded server requires it of clients (token) and routes (password), and this node sends it; with --nats-url it is sent as the token. Prefer PRESENCE_CLUSTER_SECRET or --cluster-secret-file")
	fs.StringVar(&o.clusterSecretFile, "cluster-secret-file", "", "read the cluster secret from this file (trailing newline trimmed), instead of --cluster-secret")
	fs.StringVar(&o.routeTLSCert, "nats-route-tls-cert", "", "with --nats-embed: PEM certificate this node presents on NATS routes, accepted and dialed (needs --nats-route-tls-key and --nats-route-tls-ca)")
	fs.StringVar(&o.routeTLSKey, "nats-route-tls-key", "", "PEM private key of --nats-route-tls-cert")
	fs.StringVar(&o.routeTLSCA, "nats-route-tls-ca", "", "PEM CA certificates that route peers' certificates must chain to (routes are mutually authenticated)")
	fs.StringVar(&o.namespace, "namespace", "presence", "prefix of the bus subjects/channels, so clusters can share a NATS or Redis")
	fs.DurationVar(&o.broadcastPeriod, "broadcast-period", 1500*time.Millisecond, "heartbeat period")
	fs.DurationVar(&o.downPeriod, "down-period", 0, "silence after which a peer is down and its presences leave (default 20 × broadcast period)")
	fs.DurationVar(&o.permdownPeriod, "permdown-period", 20*time.Minute, "silence after which a peer's presences are deleted")
	fs.DurationVar(&o.flushInterval, "flush-interval", 5*time.Millisecond, "longest wait before a local change is sent to the other nodes")
	fs.DurationVar(&o.diffWindow, "diff-window", presence.DefaultDiffWindow, "longest time a busy topic's changes are held to go to its members as one presence_diff (the window grows with the topic, 1 ms per key, up to this); a change to a quiet topic goes at once; 0: one presence_diff per change, as Phoenix")
	fs.DurationVar(&o.shutdownGrace, "shutdown-grace", tracker.DefaultShutdownGrace, "on SIGTERM, tell peers this node is stopping (/api/v1/cluster shows it as stopping) and have them keep its presences this long: clients that reconnect to another node within it never leave for anyone, the others leave when it ends. This node does not wait for it. 0: peers are not told and keep its presences for --down-period, as after a crash")
	fs.BoolVar(&o.permdownOnShutdown, "permdown-on-shutdown", false, "on SIGTERM, tell peers to drop this node's presences at once, instead of --shutdown-grace: all its users leave, and those who reconnect elsewhere join again")
	fs.IntVar(&o.poolSize, "pool-size", 1, "tracker shards per node; must be equal on every node")
	fs.StringVar(&o.jwtSecret, "jwt-secret", "", "HS256 secret (at least 32 bytes): sockets must send a JWT as param token, sub = user key, optional topics claim. Without it, --jwt-public-key or --jwt-jwks-url, dev mode takes the key from param user_id. Visible in the process list: prefer PRESENCE_JWT_SECRET or --jwt-secret-file")
	fs.StringVar(&o.jwtSecretFile, "jwt-secret-file", "", "read the HS256 secret from this file (trailing newline trimmed), instead of --jwt-secret")
	fs.StringVar(&o.jwtPublicKey, "jwt-public-key", "", "PEM file of the public key (RSA, ECDSA or Ed25519) that verifies tokens; it pins the algorithm: RS256, ES256/ES384/ES512 by curve, EdDSA. With --jwt-secret too, HS256 tokens are checked against the secret and the others against this key")
	fs.StringVar(&o.jwtJWKSURL, "jwt-jwks-url", "", "URL of the identity provider's JWKS, fetched at start (a failure refuses to start), refreshed hourly and when a token names an unknown kid (at most every 5 min); tokens may use RS256, ES256 or EdDSA. Not with --jwt-public-key")
	fs.StringVar(&o.jwtIssuer, "jwt-issuer", "", "require tokens' iss claim to be this")
	fs.StringVar(&o.jwtAudience, "jwt-audience", "", "require tokens' aud claim (a string or an array) to hold this")
	fs.StringVar(&o.jwtKeyClaim, "jwt-key-claim", "sub", "the token claim (a string) that is the presence key; not exp, nbf, iss, aud or topics")
	fs.BoolVar(&o.version, "version", false, "print the version (module, commit, Go) and exit; also presenced version")
	fs.BoolVar(&o.jwtRequireExp, "jwt-require-exp", false, "refuse tokens without an exp claim (a token that never expires cannot be withdrawn short of changing the secret)")
	fs.BoolVar(&o.insecure, "insecure", false, "allow dev mode (no --jwt-secret, --jwt-public-key or --jwt-jwks-url) on a non-loopback address")
	fs.StringVar(&o.origins, "origins", "", "comma-separated Origins whose pages may open sockets (https://app.example.com, //*.example.com, or * for every origin, null included); default: same origin, plus pages on any loopback origin in dev mode on a loopback --listen")
	fs.StringVar(&o.topics, "topics", "room:*", "comma-separated topic patterns the built-in channel serves")
	fs.BoolVar(&o.longPoll, "longpoll", true, "serve the long-poll transport (phoenix.js's fallback)")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long a graceful shutdown may take")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&o.demo, "demo", true, "serve the demo page at / (--demo=false: / is 404)")
	fs.Int64Var(&o.maxQueueBytes, "max-queue-bytes", phx.DefaultMaxQueueBytes, "bytes waiting to be written to one client; a client that falls further behind is closed (WebSocket 1008 slow consumer)")
	fs.IntVar(&o.maxConnsPerIP, "max-conns-per-ip", phx.DefaultMaxConnsPerIP, "live connections from one client IP; one more is refused with 429. Loopback peers (a local proxy) are not counted; negative: no limit")
	fs.IntVar(&o.maxConnsPerUser, "max-conns-per-user", phx.DefaultMaxConnsPerID, "live connections of one user; one more is refused with 429; negative: no limit")
	fs.IntVar(&o.maxTopicLen, "max-topic-len", phx.DefaultMaxTopicLen, "longest topic in bytes; a join of a longer one is refused (invalid topic)")
	fs.Int64Var(&o.longPollMaxBody, "longpoll-max-body", phx.DefaultLongPollMaxBody, "largest long-poll POST body in bytes; a larger one gets 413")
	fs.BoolVar(&o.trustForwardedProto, "trust-forwarded-proto", false, "take the scheme of the same-origin check from X-Forwarded-Proto or Forwarded, as set by a TLS-terminating proxy; only when clients can reach this node through that proxy alone")
	fs.IntVar(&o.maxMetaBytes, "max-meta-bytes", presencechannel.DefaultMaxMetaBytes, "largest meta of a join, presence:track or presence:update in bytes; a larger one is refused (meta too large); negative: no limit")
	fs.IntVar(&o.maxMetasPerKey, "max-metas-per-key", presencechannel.DefaultMaxMetasPerKey, "most metas (tracked connections) of one key in one topic, cluster-wide; one more is refused; negative: no limit")
	fs.IntVar(&o.maxKeyLen, "max-key-len", presencechannel.DefaultMaxKeyLen, "longest presence key (user id, JWT sub) in bytes; a longer one is refused at connect; negative: no limit")
	fs.IntVar(&o.maxBroadcastBytes, "max-broadcast-bytes", presencechannel.DefaultMaxBroadcastBytes, "largest client broadcast payload in bytes; a larger one is refused and not relayed; negative: no limit")
	fs.Float64Var(&o.broadcastRate, "broadcast-rate", presencechannel.DefaultBroadcastRate, "client broadcast events per second per connection (token bucket with --broadcast-burst); over it: refused (rate limited), not relayed; negative: no limit. Not --broadcast-period, the nodes' heartbeat")
	fs.IntVar(&o.broadcastBurst, "broadcast-burst", presencechannel.DefaultBroadcastBurst, "burst of --broadcast-rate")
	fs.Float64Var(&o.updateRate, "update-rate", presencechannel.DefaultUpdateRate, "presence:update, presence:track and presence:untrack per second per connection (token bucket with --update-burst); over it: refused (rate limited); negative: no limit")
	fs.IntVar(&o.updateBurst, "update-burst", presencechannel.DefaultUpdateBurst, "burst of --update-rate")
	fs.IntVar(&o.maxConnections, "max-connections", defaultMaxConnections(), fmt.Sprintf("most TCP connections the HTTP listener holds at once (WebSockets, long-polls, health checks); more wait in the kernel's backlog (default: the soft open-file limit − %d, at least %d)", fdReserve, minConnectionsFlag))
	usage := func() {
		fs.SetOutput(out)
		defer fs.SetOutput(io.Discard)
		fmt.Fprintf(out, "Usage: presenced [flags]\n\nA Presence node: Phoenix channels + replicated presence. Every flag can also be set\nwith the environment variable PRESENCE_<FLAG> (upper case, - as _), e.g. PRESENCE_NATS_URL.\n\nCommands:\n  presenced token --sub KEY   print a JWT for this node's --jwt-secret (presenced token --help)\n  presenced version           print the version\n\nFlags:\n")
		fs.PrintDefaults()
	}
	// Environment first, flags override. An empty variable is ignored
	// (compose files often pass through unset variables as ""), except for
	// the secrets; set records where each flag was given, for the errors.
	set := map[string]string{}
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := "PRESENCE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok := lookup(name)
		if !ok || f.Name == "version" || (v == "" && !slices.Contains(secretFlags, f.Name) && !slices.Contains(keyFlags, f.Name)) {
			return
		}
		set[f.Name] = name
		if err := f.Value.Set(v); err != nil && envErr == nil {
			envErr = fmt.Errorf("%s: %v", name, err)
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage()
			return nil, errHelp
		}
		return nil, fmt.Errorf("%v (presenced --help lists the flags)", err)
	}
	if o.node == "" {
		o.node = host
	}
	o.warnings = unknownEnv(fs, environ())
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = "--" + f.Name })
	var err error
	if o.jwtSecret, err = secret("jwt-secret", o.jwtSecret, o.jwtSecretFile, set); err != nil {
		return nil, err
	}
	if o.clusterSecret, err = secret("cluster-secret", o.clusterSecret, o.clusterSecretFile, set); err != nil {
		return nil, err
	}
	if o.clusterSecret != "" && !o.natsEmbed && o.natsURL == "" {
		if o.redisURL != "" {
			return nil, errors.New("--cluster-secret is for NATS; give Redis's password in --redis-url (redis://:password@host:port)")
		}
		return nil, errors.New("--cluster-secret needs --nats-embed or --nats-url")
	}
	if tlsSet := (o.routeTLSCert != "") || (o.routeTLSKey != "") || (o.routeTLSCA != ""); tlsSet {
		if o.routeTLSCert == "" || o.routeTLSKey == "" || o.routeTLSCA == "" {
			return nil, errors.New("route TLS needs all of --nats-route-tls-cert, --nats-route-tls-key and --nats-route-tls-ca")
		}
		if !o.natsEmbed || (o.natsClusterListen == "" && o.natsRoutes == "") {
			return nil, errors.New("--nats-route-tls-* need --nats-embed with --nats-cluster-listen or --nats-routes")
		}
	}
	// presencechannel refuses it too; here the error can say where it came from
	if n := len(o.jwtSecret); n > 0 && n < presencechannel.MinSecretLen {
		return nil, fmt.Errorf("the JWT secret (%s) is %d bytes; at least %d are required (e.g. openssl rand -base64 48)",
			orDefault(set["jwt-secret"], set["jwt-secret-file"]), n, presencechannel.MinSecretLen)
	}
	for _, name := range keyFlags {
		if src := set[name]; src != "" && fs.Lookup(name).Value.String() == "" {
			return nil, fmt.Errorf("%s is set but empty: give a value, or unset it", src)
		}
	}
	if err := o.parseTokenAuth(); err != nil {
		return nil, err
	}
	n := 0
	for _, b := range []bool{o.natsURL != "", o.natsEmbed, o.redisURL != ""} {
		if b {
			n++
		}
	}
	if n > 1 {
		return nil, errors.New("choose one of --nats-url, --nats-embed, --redis-url")
	}
	for name, v := range map[string]int64{"max-connections": int64(o.maxConnections), "max-queue-bytes": o.maxQueueBytes,
		"max-topic-len": int64(o.maxTopicLen), "longpoll-max-body": o.longPollMaxBody} {
		if v <= 0 {
			return nil, fmt.Errorf("--%s must be positive", name)
		}
	}
	if o.diffWindow < 0 {
		return nil, errors.New("--diff-window must not be negative (0: one presence_diff per change)")
	}
	if o.shutdownGrace < 0 {
		return nil, errors.New("--shutdown-grace must not be negative (0: peers keep this node's presences for the down period)")
	}
	for name, v := range map[string]int64{"broadcast-burst": int64(o.broadcastBurst), "update-burst": int64(o.updateBurst)} {
		if v <= 0 {
			return nil, fmt.Errorf("--%s must be positive", name)
		}
	}
	for name, v := range map[string]float64{"max-conns-per-ip": float64(o.maxConnsPerIP), "max-conns-per-user": float64(o.maxConnsPerUser),
		"max-meta-bytes": float64(o.maxMetaBytes), "max-metas-per-key": float64(o.maxMetasPerKey), "max-key-len": float64(o.maxKeyLen),
		"max-broadcast-bytes": float64(o.maxBroadcastBytes), "broadcast-rate": o.broadcastRate, "update-rate": o.updateRate} {
		if v == 0 {
			return nil, fmt.Errorf("--%s must be positive, or negative for no limit", name)
		}
	}
	return o, nil
}

// parseTokenAuth checks the token flags beyond the secret and reads
// --jwt-public-key, so that a bad key file stops the node at start.
func (o *options) parseTokenAuth() error {
	if o.jwtPublicKey != "" && o.jwtJWKSURL != "" {
		return errors.New("--jwt-public-key and --jwt-jwks-url are both set: choose one")
	}
	if !o.tokenMode() {
		for name, v := range map[string]string{"jwt-issuer": o.jwtIssuer, "jwt-audience": o.jwtAudience} {
			if v != "" {
				return fmt.Errorf("--%s needs token mode: --jwt-secret, --jwt-public-key or --jwt-jwks-url", name)
			}
		}
		if o.jwtKeyClaim != "sub" {
			return errors.New("--jwt-key-claim needs token mode: --jwt-secret, --jwt-public-key or --jwt-jwks-url")
		}
	}
	switch o.jwtKeyClaim {
	case "":
		return errors.New("--jwt-key-claim is empty (default: sub)")
	case "exp", "nbf", "iss", "aud", "topics":
		return fmt.Errorf("--jwt-key-claim %s: that claim is read for another purpose; the key needs a claim of its own (sub, email, …)", o.jwtKeyClaim)
	}
	if o.jwtJWKSURL != "" {
		u, err := url.Parse(o.jwtJWKSURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("--jwt-jwks-url %q: want an http(s) URL", o.jwtJWKSURL)
		}
	}
	if o.jwtPublicKey != "" {
		b, err := os.ReadFile(o.jwtPublicKey)
		if err != nil {
			return fmt.Errorf("--jwt-public-key: %v", err)
		}
		if o.publicKey, err = presencechannel.ParsePublicKey(b); err != nil {
			return fmt.Errorf("--jwt-public-key %s: %v", o.jwtPublicKey, err)
		}
	}
	return nil
}

// tokenMode reports whether connections must carry a token (else dev
// mode takes user ids on trust).
func (o *options) tokenMode() bool {
	return o.jwtSecret != "" || o.jwtPublicKey != "" || o.jwtJWKSURL != ""
}

// identityDesc says how connections are identified, for the startup line.
func (o *options) identityDesc() string {
	if !o.tokenMode() {
		return "dev mode (param user_id, on trust)"
	}
	var algs []string
	if o.jwtSecret != "" {
		algs = append(algs, "HS256")
	}
	switch {
	case o.publicKey != nil:
		algs = append(algs, o.publicKey.Algorithm+" from "+o.jwtPublicKey)
	case o.jwtJWKSURL != "":
		algs = append(algs, strings.Join(presencechannel.DefaultAlgorithms, "/")+" from "+redactURLs(o.jwtJWKSURL))
	}
	return fmt.Sprintf("JWT (%s; key claim %s; param token)", strings.Join(algs, ", "), o.jwtKeyClaim)
}

// secret resolves the secret flag name, given inline or, by name+"-file",
// as a file. A secret set to "" anywhere is an error, never "no secret".
func secret(name, inline, file string, set map[string]string) (string, error) {
	src, fileSrc := set[name], set[name+"-file"]
	switch {
	case src != "" && inline == "":
		return "", fmt.Errorf("%s is set but empty: give a secret, or unset it", src)
	case fileSrc != "" && file == "":
		return "", fmt.Errorf("%s is set but empty: give a file name, or unset it", fileSrc)
	case inline != "" && file != "":
		return "", fmt.Errorf("--%s and --%s-file are both set: choose one", name, name)
	case file == "":
		return inline, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %v", fileSrc, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s: %s is empty", fileSrc, file)
	}
	return s, nil
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// isLoopback reports whether the listen address addr (host:port) is on a
// loopback interface.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && loopbackHost(host)
}

// loopbackHost reports whether host (a name or an IP, IPv6 with or without
// brackets, no port) is localhost or a loopback IP.
func loopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return strings.EqualFold(host, "localhost") || loopbackIP(host)
}

func loopbackIP(s string) bool {
	ip := net.ParseIP(s)
	return ip != nil && ip.IsLoopback()
}

// localOnly guards the API, which bypasses the channels' authorization
// (it lists any topic's members): it answers only a request that is made
// on this host to this host. A loopback peer alone is not enough: a reverse
// proxy on the same host is a loopback peer for every client it forwards,
// and a browser page elsewhere can reach a loopback port under a name of
// its own choosing (DNS rebinding), which shows in the Host header. So the
// Host must be loopback too, and no Forwarded or X-Forwarded-* header may
// say the request was relayed. Anything else gets 403 with a JSON reason.
func localOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if reason := notLocal(r); reason != "" {
			w.Header().Set("content-type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			json.NewEncoder(w).Encode(map[string]string{"error": reason})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// notLocal says why r is not a local request, or "" when it is.
func notLocal(r *http.Request) string {
	if peer, _, err := net.SplitHostPort(r.RemoteAddr); err != nil || !loopbackIP(peer) {
		return "the API answers loopback peers only"
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if !loopbackHost(host) {
		return "the API answers only requests addressed to a loopback Host (localhost, 127.0.0.1, [::1])"
	}
	for k := range r.Header {
		if k = http.CanonicalHeaderKey(k); k == "Forwarded" || strings.HasPrefix(k, "X-Forwarded-") {
			return "the API answers no forwarded request (" + k + " header)"
		}
	}
	return ""
}

// run starts a node and serves until ctx ends, then shuts down gracefully.
func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "token" {
		return runToken(args[1:], lookup, stdout)
	}
	if len(args) > 0 && args[0] == "version" {
		fmt.Fprintln(stdout, version())
		return nil
	}
	o, err := parse(args, lookup, stdout)
	if err != nil {
		return err
	}
	if o.version {
		fmt.Fprintln(stdout, version())
		return nil
	}
	return serve(ctx, o, stdout, stderr)
}

// devModeWarning is printed on stderr, outside the log, so that it shows
// even with --log-level error.
const devModeWarning = "DEV MODE: user_id taken on trust, no authentication"

// serve runs a node with the options o until ctx ends.
func serve(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %v", err)
	}
	// Log lines carry values clients choose (origins, topics): truncated
	// and rate-limited, they can neither flood nor bloat the log.
	log := loglimit.New(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})))
	for _, w := range o.warnings {
		log.Warn(w)
	}
	if !o.tokenMode() {
		if !isLoopback(o.listen) && !o.insecure {
			return fmt.Errorf("dev mode (no --jwt-secret, --jwt-public-key or --jwt-jwks-url) takes user ids on trust; it is only allowed on a loopback --listen address, unless --insecure")
		}
		fmt.Fprintln(stderr, devModeWarning)
		log.Warn(devModeWarning, "listen", o.listen)
	}

	// the bus
	var bus pubsub.Bus
	var embedded *natsembed.Server
	busDesc := "in-process (one node)"
	switch {
	case o.natsEmbed:
		host, port, err := splitHostPort(o.natsListen)
		if err != nil {
			return fmt.Errorf("--nats-listen: %v", err)
		}
		cfg := natsembed.Config{Host: host, Port: port, ServerName: o.node, Logger: log.With("component", "nats"),
			Secret: o.clusterSecret}
		if o.natsClusterListen != "" || o.natsRoutes != "" {
			ch, cp, err := splitHostPort(orDefault(o.natsClusterListen, host+":0"))
			if err != nil {
				return fmt.Errorf("--nats-cluster-listen: %v", err)
			}
			cfg.Cluster = &natsembed.Cluster{Host: ch, Port: cp, Routes: splitList(o.natsRoutes)}
			if o.routeTLSCert != "" {
				if cfg.Cluster.TLS, err = routeTLS(o.routeTLSCert, o.routeTLSKey, o.routeTLSCA); err != nil {
					return err
				}
			}
		}
		embedded, err = natsembed.Start(ctx, cfg)
		if err != nil {
			return fmt.Errorf("embedded nats: %v", err)
		}
		defer embedded.Close()
		if o.onEmbedded != nil {
			o.onEmbedded(embedded)
		}
		log.Info("embedded NATS", "client", embedded.ClientURL(), "cluster", embedded.ClusterURL(),
			"authenticated", o.clusterSecret != "", "route_tls", cfg.Cluster != nil && cfg.Cluster.TLS != nil)
		if o.clusterSecret == "" {
			where := embedded.ClientURL()
			if u := embedded.ClusterURL(); u != "" {
				where += " and " + u
			}
			fmt.Fprintf(stderr, "%s: anyone who reaches %s can read and forge presence; set --cluster-secret\n", natsOpenWarning, where)
			log.Warn(natsOpenWarning, "client", embedded.ClientURL(), "cluster", embedded.ClusterURL())
		}
		b, err := retryName(ctx, log, func() (pubsub.Bus, error) {
			return natsbus.New(ctx, natsbus.Config{URL: embedded.ClientURL(), NodeName: o.node, Namespace: o.namespace, Logger: log,
				Options: natsAuth(o.clusterSecret)})
		})
		if err != nil {
			return err
		}
		bus = b
		busDesc = "embedded NATS " + embedded.ClientURL()
	case o.natsURL != "":
		b, err := retryName(ctx, log, func() (pubsub.Bus, error) {
			return natsbus.New(ctx, natsbus.Config{URL: o.natsURL, NodeName: o.node, Namespace: o.namespace, Logger: log,
				Options: natsAuth(o.clusterSecret)})
		})
		if err != nil {
			return err
		}
		bus = b
		busDesc = "NATS " + redactURLs(o.natsURL)
	case o.redisURL != "":
		b, err := retryName(ctx, log, func() (pubsub.Bus, error) {
			return redisbus.New(ctx, redisbus.Config{URL: o.redisURL, NodeName: o.node, Namespace: o.namespace, Logger: log})
		})
		if err != nil {
			return err
		}
		bus = b
		busDesc = "Redis " + redactURLs(o.redisURL)
	default:
		bus = membus.New(o.node)
	}
	defer bus.Close()

	grace := o.shutdownGrace
	if grace == 0 {
		grace = -1 // the tracker's "do not tell peers"
	}
	p, err := presence.New(presence.Config{Logger: log, DiffWindow: o.diffWindow, Tracker: tracker.Config{
		Bus: bus, PoolSize: o.poolSize, BroadcastPeriod: o.broadcastPeriod, DownPeriod: o.downPeriod,
		PermdownPeriod: o.permdownPeriod, FlushInterval: o.flushInterval, PermdownOnShutdown: o.permdownOnShutdown,
		ShutdownGrace: grace, Logger: log,
	}})
	switch {
	case errors.Is(err, tracker.ErrDownPeriod):
		return fmt.Errorf("--down-period (%v) must be at least twice --broadcast-period (%v)", o.downPeriod, o.broadcastPeriod)
	case errors.Is(err, tracker.ErrPermdownPeriod):
		return fmt.Errorf("--permdown-period (%v) must be longer than --down-period (%v)", o.permdownPeriod, o.downPeriod)
	case err != nil:
		return err
	}
	if err := p.Start(ctx); err != nil {
		return err
	}
	var ready atomic.Bool
	ready.Store(true)

	ccfg := o.channelConfig()
	ccfg.Presence, ccfg.Logger = p, log
	if o.jwtJWKSURL != "" {
		if ccfg.Keyfunc, err = jwks(ctx, o.jwtJWKSURL, log); err != nil {
			return err
		}
	}
	srv, _, err := presencechannel.NewServer(ccfg, o.phxConfig())
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	for _, m := range []string{"GET", "POST", "OPTIONS"} { // the transports' methods
		mux.Handle(m+" /socket/", srv)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /api/v1/cluster", localOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		type replica struct {
			Name   string `json:"name"`
			Vsn    int64  `json:"vsn"`
			Status string `json:"status"` // up, down or stopping
			Self   bool   `json:"self,omitempty"`
			// GraceLeftMs: for a stopping replica, how long until its
			// presences leave.
			GraceLeftMs int64 `json:"grace_left_ms,omitempty"`
		}
		tr := p.Tracker()
		out := []replica{{Name: tr.Node(), Vsn: tr.Vsn(), Status: "up", Self: true}}
		for _, r := range tr.Replicas() { // one entry per replica
			rep := replica{Name: r.Name, Vsn: r.Vsn, Status: r.Status()}
			if r.Stopping {
				rep.GraceLeftMs = max(r.GraceLeft.Milliseconds(), 1)
			}
			out = append(out, rep)
		}
		w.Header().Set("content-type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"node": tr.Node(), "replicas": out})
	})))
	// The presence_state of a topic as this node sees it, for operators
	// and tests.
	mux.Handle("GET /api/v1/topics/{topic}", localOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "application/json")
		json.NewEncoder(w).Encode(p.List(r.PathValue("topic")))
	})))
	if o.demo {
		// GET only: a POST to a GET route (the API's) answers 405.
		mux.Handle("GET /", web.Handler(web.Config{TokenMode: o.tokenMode()}))
	}

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	ln = netutil.LimitListener(ln, o.maxConnections)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: o.http.readHeader, ReadTimeout: o.http.read,
		WriteTimeout: o.http.write, IdleTimeout: o.http.idle, MaxHeaderBytes: maxHeaderBytes}
	identity := o.identityDesc()
	demo := " (demo page at /)"
	if !o.demo {
		demo = ""
	}
	fmt.Fprintf(stdout, "presenced: node %s listening on http://%s%s; bus: %s; identity: %s; origins: %s\n",
		o.node, ln.Addr(), demo, busDesc, identity, o.originsDesc())
	if o.onListen != nil {
		o.onListen(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()

	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	ready.Store(false)
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	log.Info("shutting down")
	// 1. stop accepting; 2. stop the tracker: pending changes go out, then
	// the stopping message (peers keep our presences for --shutdown-grace),
	// graceful_permdown with --permdown-on-shutdown (peers drop them at
	// once) or nothing with --shutdown-grace 0 (peers keep them for the down
	// period); 3. only then close the sockets with 1001, so that clients
	// reconnecting to other nodes arrive after our peers know we stop —
	// their untracks find the tracker stopped and change nothing; 4. the bus
	// (deferred).
	hsDone := make(chan struct{})
	go func() { hs.Shutdown(sctx); close(hsDone) }()
	err = p.Shutdown(sctx)
	srv.Shutdown(sctx)
	<-hsDone
	return err
}

// loopbackOrigins are the origins a dev-mode node on a loopback address
// accepts without --origins: a page on any local port (a Vite or webpack
// dev server, a page on localhost talking to 127.0.0.1) just works, while
// pages of other sites are still refused.
var loopbackOrigins = []string{"//localhost", "//127.0.0.1", "//[::1]"}

// allowedOrigins is --origins, or loopbackOrigins in dev mode on a
// loopback listener.
func (o *options) allowedOrigins() []string {
	if o.origins == "" && !o.tokenMode() && isLoopback(o.listen) {
		return loopbackOrigins
	}
	return splitList(o.origins)
}

// originsDesc says which pages may open sockets, for the startup line.
func (o *options) originsDesc() string {
	switch list := o.allowedOrigins(); {
	case len(list) == 0:
		return "same origin only (--origins to allow others)"
	case o.origins == "":
		return "pages on localhost, 127.0.0.1 and [::1], any port (dev mode; --origins to allow others)"
	default:
		return strings.Join(list, ", ")
	}
}

// originHint is what the log of a refused origin says to do.
const originHint = "list it in --origins (comma-separated; '*' allows every origin, null included)"

// redactURLs hides the passwords of a comma-separated list of URLs.
func redactURLs(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil {
			if _, hasPassword := u.User.Password(); u.User != nil && !hasPassword {
				u.User = url.User("xxxxx") // a NATS token in the user part
			}
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}

// phxConfig is the socket server's configuration, less what
// presencechannel.NewServer adds (the channel's routes and Connect, the
// logger).
func (o *options) phxConfig() phx.Config {
	return phx.Config{
		AllowedOrigins:      o.allowedOrigins(),
		OriginHint:          originHint,
		LongPoll:            o.longPoll,
		LongPollMaxBody:     o.longPollMaxBody,
		MaxQueueBytes:       o.maxQueueBytes,
		MaxConnsPerIP:       o.maxConnsPerIP,
		MaxConnsPerID:       o.maxConnsPerUser,
		MaxTopicLen:         o.maxTopicLen,
		TrustForwardedProto: o.trustForwardedProto,
	}
}

// natsOpenWarning starts the warning printed when the embedded NATS runs
// without a cluster secret.
const natsOpenWarning = "WARNING: the embedded NATS is unauthenticated (no --cluster-secret)"

// natsAuth are the nats.go options that send the cluster secret as the
// token. Credentials in the URL itself (nats://token@host,
// nats://user:password@host) take precedence with nats.go.
func natsAuth(secret string) []nats.Option {
	if secret == "" {
		return nil
	}
	return []nats.Option{nats.Token(secret)}
}

// routeTLS is the TLS configuration of the embedded NATS's routes: the
// same certificate serves both ends of a route, and peers must present one
// signed by the CA, so only nodes holding such a certificate can join.
func routeTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--nats-route-tls-cert/--nats-route-tls-key: %v", err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--nats-route-tls-ca: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--nats-route-tls-ca: no PEM certificate in %s", caFile)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}, nil
}

// channelConfig is the presence channel's configuration, less the
// presence set and the logger.
func (o *options) channelConfig() presencechannel.Config {
	auth := presencechannel.TokenAuth{Issuer: o.jwtIssuer, Audience: o.jwtAudience}
	if o.jwtKeyClaim != "sub" { // the default, left to presencechannel
		auth.KeyClaim = o.jwtKeyClaim
	}
	if o.publicKey != nil {
		auth.Keyfunc, auth.Algorithms = o.publicKey.Keyfunc, []string{o.publicKey.Algorithm}
	}
	return presencechannel.Config{
		Topics:            splitList(o.topics),
		Secret:            []byte(o.jwtSecret),
		TokenAuth:         auth,
		RequireExp:        o.jwtRequireExp,
		MaxKeyLen:         o.maxKeyLen,
		MaxMetaBytes:      o.maxMetaBytes,
		MaxMetasPerKey:    o.maxMetasPerKey,
		MaxBroadcastBytes: o.maxBroadcastBytes,
		BroadcastRate:     o.broadcastRate,
		BroadcastBurst:    o.broadcastBurst,
		UpdateRate:        o.updateRate,
		UpdateBurst:       o.updateBurst,
	}
}

// retryName joins the bus, waiting up to 10 s while our node name is still
// held by a live node: after a crash and a quick restart, the previous
// incarnation's subscription may take a moment to vanish. A name held for
// longer belongs to another live node: refuse to start, since two nodes
// with one name break replication for the whole cluster.
func retryName(ctx context.Context, log *slog.Logger, join func() (pubsub.Bus, error)) (pubsub.Bus, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := join()
		if err == nil || !(errors.Is(err, natsbus.ErrNameTaken) || errors.Is(err, redisbus.ErrNameTaken)) || time.Now().After(deadline) {
			return b, err
		}
		log.Warn("node name in use by a live node; waiting in case it is our previous incarnation", "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	var n int
	if _, err := fmt.Sscan(port, &n); err != nil {
		return "", 0, fmt.Errorf("bad port %q", port)
	}
	return host, n, nil
}
