package rawshard

import (
	"time"

	"github.com/gopresence/presence/internal/crdt"
)

// Defaults of Config, Phoenix's own unless said otherwise.
const (
	DefaultBroadcastPeriod    = 1500 * time.Millisecond
	DefaultMaxSilentPeriods   = 10
	DefaultPermdownPeriod     = 20 * time.Minute
	DefaultClockSamplePeriods = 2
	// DefaultFlushInterval is not Phoenix's (which sends deltas only with
	// the heartbeat): it makes cross-node latency milliseconds.
	DefaultFlushInterval = 5 * time.Millisecond
)

// Config is what a Shard needs to know of time and memory. tracker.Config
// documents each field for users; the shard reads them as given (New
// applies no defaults), so a simulation sets exactly what it runs.
type Config struct {
	// BroadcastPeriod is the heartbeat tick (the shell calls Tick at it).
	BroadcastPeriod time.Duration
	// MaxSilentPeriods is the number of idle ticks before an empty
	// heartbeat is forced.
	MaxSilentPeriods int
	// DownPeriod and PermdownPeriod are the silences after which a peer is
	// held as down, then forgotten.
	DownPeriod, PermdownPeriod time.Duration
	// ClockSamplePeriods is the number of ticks between transfer samplings.
	ClockSamplePeriods int
	// MaxDeltaSizes are the caps of the delta generations, in order.
	MaxDeltaSizes []int
	// FlushInterval is how long a local change may wait before its delta
	// is sent (the flush deadline of NextDeadline); zero or negative: it
	// waits for the next heartbeat, as in Phoenix.
	FlushInterval time.Duration
}

// WithDefaults returns c with every zero field set to its default, and
// MaxSilentPeriods lowered when an idle shard would heartbeat less than
// twice per DownPeriod. A negative FlushInterval stays negative (no early
// flush).
func (c Config) WithDefaults() Config {
	if c.BroadcastPeriod <= 0 {
		c.BroadcastPeriod = DefaultBroadcastPeriod
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.MaxSilentPeriods <= 0 {
		c.MaxSilentPeriods = DefaultMaxSilentPeriods
	}
	if c.DownPeriod <= 0 {
		c.DownPeriod = c.BroadcastPeriod * time.Duration(c.MaxSilentPeriods) * 2
	}
	// An idle shard heartbeats every MaxSilentPeriods+1 ticks; if that is
	// not at most half the down period, idle peers are taken for down and
	// flap (one late heartbeat would do it). Lower it when needed.
	if limit := c.DownPeriod / 2; time.Duration(c.MaxSilentPeriods+1)*c.BroadcastPeriod > limit {
		c.MaxSilentPeriods = max(0, int(limit/c.BroadcastPeriod)-1)
	}
	if c.PermdownPeriod <= 0 {
		c.PermdownPeriod = DefaultPermdownPeriod
	}
	if c.ClockSamplePeriods <= 0 {
		c.ClockSamplePeriods = DefaultClockSamplePeriods
	}
	if c.MaxDeltaSizes == nil {
		c.MaxDeltaSizes = append([]int(nil), crdt.DefaultDeltaSizes...)
	}
	return c
}

// DefaultConfig is Config{}.WithDefaults(): Phoenix's defaults, with a
// 5 ms flush interval.
func DefaultConfig() Config { return Config{}.WithDefaults() }
