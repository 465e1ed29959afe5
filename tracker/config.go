package tracker

import (
	"errors"
	"log/slog"
	"time"

	"github.com/gopresence/presence/internal/rawshard"
	"github.com/gopresence/presence/pubsub"
)

// Config configures a Tracker. A zero field means the documented default,
// Phoenix's own unless said otherwise.
type Config struct {
	// Bus carries replication traffic; its NodeName is this node's replica
	// name. Required.
	Bus pubsub.Bus
	// Name of the tracker; shards replicate on "phx_presence:<Name>_shard<N>".
	// Default "presence".
	Name string
	// PoolSize is the number of shards per node; it must be equal on every
	// node. Default 1.
	PoolSize int
	// BroadcastPeriod is the heartbeat tick. Default 1.5 s.
	BroadcastPeriod time.Duration
	// FlushInterval bounds how long a local change waits before its delta
	// is sent: much shorter than BroadcastPeriod, so cross-node latency is
	// milliseconds. Heartbeats still run every BroadcastPeriod. Default 5 ms;
	// a negative value disables early flushes (Phoenix's behaviour).
	FlushInterval time.Duration
	// MaxSilentPeriods is the number of idle ticks before an empty
	// heartbeat is forced. Default 10 (Phoenix's). It is lowered when an
	// idle node would heartbeat less than twice per DownPeriod (with the
	// default down period that makes it 9: an idle heartbeat every 15 s
	// instead of 16.5 s, so one lost heartbeat no longer takes a peer down).
	MaxSilentPeriods int
	// DownPeriod is the silence after which a peer is held as down (its
	// presences hidden and reported as leaves). Default
	// BroadcastPeriod × MaxSilentPeriods × 2 (30 s). At least twice the
	// BroadcastPeriod.
	DownPeriod time.Duration
	// PermdownPeriod is the silence after which a peer's presences are
	// deleted. Default 20 min; must exceed DownPeriod.
	PermdownPeriod time.Duration
	// ClockSamplePeriods is the number of ticks between "am I behind?"
	// evaluations that send transfer requests. Default 2.
	ClockSamplePeriods int
	// MaxDeltaSizes are the caps of the delta generations, in order.
	// Default [100, 1000, 10000].
	MaxDeltaSizes []int
	// ShutdownGrace is how long peers keep this node's presences after
	// Shutdown: Shutdown tells them the node is stopping (they report it
	// as stopping), clients that reconnect to another node within the
	// grace track again there before their old entries leave, so their
	// keys never disappear for anyone; the rest leave when it ends. It
	// travels in the stopping message, so the stopping node's value
	// applies (capped by each peer's PermdownPeriod). Not Phoenix's
	// (which keeps them for the down period, 30 s, and then reports the
	// node's users as gone and back): default 5 s, ample for clients
	// that reconnect at once, as phoenix.js does. Negative: peers are not
	// told and keep the presences for the down period, as after a crash.
	// PermdownOnShutdown overrides it.
	ShutdownGrace time.Duration
	// PermdownOnShutdown makes Shutdown broadcast graceful_permdown so that
	// peers drop this node's presences at once, instead of the stopping
	// message and its grace: every user of the node leaves, and those who
	// reconnect elsewhere join again. Default false.
	PermdownOnShutdown bool
	// InboxSize bounds each shard's inbox of inbound bus messages; when full,
	// messages are dropped and counted (heartbeats and transfers repair the
	// gap). Default 4096.
	InboxSize int
	// MaxMessageSize is the largest bus message the tracker sends; bigger
	// ones (a full state of many presences) are sent in fragments and
	// reassembled by the receiver. NATS refuses payloads over its
	// max_payload (1 MiB by default). Default 512 KiB.
	MaxMessageSize int
	// NameCheck is how long Start listens, after announcing this node, for
	// a live node that already has its name (it answers at once); if one
	// does, Start fails with ErrNameTaken. Skipped when the Bus guarantees
	// unique names itself (pubsub.UniqueNames: membus, natsbus, redisbus).
	// Default 100 ms; negative skips the check.
	NameCheck time.Duration
	// Logger receives debug and error logs. Nil discards.
	Logger *slog.Logger
}

// DefaultShutdownGrace is Config.ShutdownGrace's default.
const DefaultShutdownGrace = 5 * time.Second

// Errors of configuration (the texts are Phoenix's).
var (
	ErrDownPeriod     = errors.New("down_period must be at least twice as large as the broadcast_period")
	ErrPermdownPeriod = errors.New("permdown_period must be at least larger than the down_period")
)

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = "presence"
	}
	if c.PoolSize <= 0 {
		c.PoolSize = 1
	}
	// The shard's own fields take the shard's defaults: one copy of them,
	// which the simulator reads too (rawshard.DefaultConfig).
	sc := c.shardConfig().WithDefaults()
	c.BroadcastPeriod, c.MaxSilentPeriods = sc.BroadcastPeriod, sc.MaxSilentPeriods
	c.DownPeriod, c.PermdownPeriod = sc.DownPeriod, sc.PermdownPeriod
	c.ClockSamplePeriods, c.MaxDeltaSizes = sc.ClockSamplePeriods, sc.MaxDeltaSizes
	c.FlushInterval = sc.FlushInterval
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	}
	if c.NameCheck == 0 {
		c.NameCheck = 100 * time.Millisecond
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = 512 << 10
	}
	if c.InboxSize <= 0 {
		c.InboxSize = 4096
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// shardConfig is the part of c a raw shard reads.
func (c Config) shardConfig() rawshard.Config {
	return rawshard.Config{BroadcastPeriod: c.BroadcastPeriod, MaxSilentPeriods: c.MaxSilentPeriods,
		DownPeriod: c.DownPeriod, PermdownPeriod: c.PermdownPeriod, ClockSamplePeriods: c.ClockSamplePeriods,
		MaxDeltaSizes: c.MaxDeltaSizes, FlushInterval: c.FlushInterval}
}

func (c Config) validate() error {
	if c.DownPeriod < 2*c.BroadcastPeriod {
		return ErrDownPeriod
	}
	if c.PermdownPeriod <= c.DownPeriod {
		return ErrPermdownPeriod
	}
	return nil
}
