// Package sim is a deterministic simulator of a whole tracker cluster in
// one process: N raw shards (internal/rawshard) on virtual time, and a
// seeded network that drops, duplicates, delays, reorders and partitions
// messages, with node crashes, restarts (a restart is a new incarnation),
// graceful stops (the stopping message and its grace) and graceful
// permdowns. Messages cross the network encoded by internal/wire, as they
// do between real nodes. Each node is driven as the tracker's shard drives
// its raw shard: ticks every BroadcastPeriod, Advance at NextDeadline, so
// both read the flush and grace deadlines from the raw shard.
//
// Nothing here reads the wall clock or starts a goroutine: a run is a
// function of its script and seed, so a failing seed replays exactly.
package sim

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/gopresence/presence/internal/crdt"
	"github.com/gopresence/presence/internal/rawshard"
	"github.com/gopresence/presence/internal/wire"
)

// Config shapes the simulated cluster and its network.
type Config struct {
	Seed uint64
	// Shard configures every node's shard; its FlushInterval is how long
	// after a local change its delta is sent (0 = at the next tick only),
	// by the shard's own deadline, as in the tracker.
	Shard rawshard.Config
	// Latency bounds the delay of a message: uniform in [Min, Max].
	LatencyMin, LatencyMax time.Duration
	// DropRate and DupRate are the chances a message is lost or delivered
	// twice. Reordering comes from random latency.
	DropRate, DupRate float64
	// ShutdownGrace is the grace a node asks for when it stops (Stop).
	ShutdownGrace time.Duration
}

// DefaultConfig is a fast cluster: 100 ms heartbeats, 2.5 s down, 5 s
// permdown, 1 s shutdown grace, 10 ms flush, 1–5 ms latency, no loss.
func DefaultConfig(seed uint64) Config {
	sc := rawshard.DefaultConfig()
	sc.BroadcastPeriod = 100 * time.Millisecond
	sc.DownPeriod = 2500 * time.Millisecond
	sc.PermdownPeriod = 5 * time.Second
	sc.FlushInterval = 10 * time.Millisecond
	return Config{Seed: seed, Shard: sc,
		LatencyMin: time.Millisecond, LatencyMax: 5 * time.Millisecond, ShutdownGrace: time.Second}
}

// Node is one simulated node.
type Node struct {
	Name  string
	Vsn   int64
	Raw   *rawshard.Shard
	Alive bool

	nextTick  time.Duration
	diffs     []crdt.Diff
	ownerSeen map[string]bool
}

type packet struct {
	at       time.Duration
	seq      uint64
	from, to string
	data     []byte
}

// Sim is a simulated cluster.
type Sim struct {
	cfg     Config
	rng     *rand.Rand
	now     time.Duration
	nodes   map[string]*Node
	order   []string
	flight  []packet
	seq     uint64
	group   map[string]int    // partition groups; nil = healed
	dropNxt map[[2]string]int // scripted drops of the next messages on a link
	// Stats
	Sent, Dropped, Duplicated, Delivered int
	// Transfer acks delivered, by payload.
	AcksDelta, AcksFull int
}

// New returns an empty cluster.
func New(cfg Config) *Sim {
	return &Sim{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		nodes: map[string]*Node{}, dropNxt: map[[2]string]int{}}
}

// Now is the virtual time.
func (s *Sim) Now() time.Duration { return s.now }

// Node returns a node by name (nil if unknown).
func (s *Sim) Node(name string) *Node { return s.nodes[name] }

// Nodes lists node names in order of creation.
func (s *Sim) Nodes() []string { return slices.Clone(s.order) }

// AddNode starts a node (vsn 1).
func (s *Sim) AddNode(name string) *Node {
	n := &Node{Name: name, Vsn: 1, Alive: true}
	n.Raw = rawshard.New(crdt.Replica{Name: name, Vsn: 1}, s.cfg.Shard)
	n.nextTick = s.now + time.Duration(s.rng.Int64N(int64(s.cfg.Shard.BroadcastPeriod/4)+1))
	s.nodes[name] = n
	s.order = append(s.order, name)
	return n
}

// Crash stops a node without a word: its messages in flight are lost.
func (s *Sim) Crash(name string) {
	n := s.nodes[name]
	n.Alive = false
	s.flight = slices.DeleteFunc(s.flight, func(p packet) bool { return p.from == name || p.to == name })
}

// Restart brings a crashed (or running) node back as a new incarnation
// with an empty state; its owners died with it.
func (s *Sim) Restart(name string) {
	n := s.nodes[name]
	if n.Alive {
		s.Crash(name)
	}
	n.Vsn++
	n.Raw = rawshard.New(crdt.Replica{Name: name, Vsn: n.Vsn}, s.cfg.Shard)
	n.Alive = true
	n.nextTick = s.now
}

// Shutdown stops a node as Tracker.Shutdown does with PermdownOnShutdown:
// it flushes, broadcasts graceful_permdown, and stops.
func (s *Sim) Shutdown(name string) {
	n := s.nodes[name]
	n.Raw.Flush()
	n.Raw.GracefulPermdown()
	s.collect(n)
	n.Alive = false
}

// Stop stops a node as Tracker.Shutdown does by default: it flushes,
// broadcasts that it is stopping with a grace (Config.ShutdownGrace), and
// stops. Its messages in flight still arrive.
func (s *Sim) Stop(name string, grace time.Duration) {
	n := s.nodes[name]
	n.Raw.Flush()
	n.Raw.Stopping(grace)
	s.collect(n)
	n.Alive = false
}

// Partition splits the network into groups; nodes not named are alone.
func (s *Sim) Partition(groups ...[]string) {
	s.group = map[string]int{}
	for i, g := range groups {
		for _, n := range g {
			s.group[n] = i + 1
		}
	}
}

// Heal reconnects everyone.
func (s *Sim) Heal() { s.group = nil }

// DropNext loses the next k messages from one node to another.
func (s *Sim) DropNext(from, to string, k int) { s.dropNxt[[2]string{from, to}] += k }

func (s *Sim) reachable(a, b string) bool {
	if s.group == nil {
		return true
	}
	ga, gb := s.group[a], s.group[b]
	return ga != 0 && ga == gb
}

// Do runs commands on an alive node at the virtual time (Now), and
// collects their output.
func (s *Sim) Do(name string, f func(*rawshard.Shard) error) error {
	n := s.nodes[name]
	if n == nil || !n.Alive {
		return fmt.Errorf("node %s is not running", name)
	}
	err := f(n.Raw)
	s.collect(n)
	return err
}

func (s *Sim) collect(n *Node) {
	r := n.Raw.Ready()
	n.diffs = append(n.diffs, r.Diffs...)
	for _, o := range r.Outbound {
		b, err := wire.Encode(o.Msg)
		if err != nil {
			panic(err)
		}
		if o.To == "" {
			for _, to := range s.order {
				if to != n.Name {
					s.send(n.Name, to, b)
				}
			}
		} else if _, ok := s.nodes[o.To]; ok {
			s.send(n.Name, o.To, b)
		}
	}
}

func (s *Sim) send(from, to string, b []byte) {
	s.Sent++
	if k := s.dropNxt[[2]string{from, to}]; k > 0 {
		s.dropNxt[[2]string{from, to}] = k - 1
		s.Dropped++
		return
	}
	if !s.reachable(from, to) || (s.cfg.DropRate > 0 && s.rng.Float64() < s.cfg.DropRate) {
		s.Dropped++
		return
	}
	copies := 1
	if s.cfg.DupRate > 0 && s.rng.Float64() < s.cfg.DupRate {
		copies = 2
		s.Duplicated++
	}
	for range copies {
		lat := s.cfg.LatencyMin
		if d := s.cfg.LatencyMax - s.cfg.LatencyMin; d > 0 {
			lat += time.Duration(s.rng.Int64N(int64(d) + 1))
		}
		s.seq++
		s.flight = append(s.flight, packet{at: s.now + lat, seq: s.seq, from: from, to: to, data: b})
	}
}

// next returns the time of the next event.
func (s *Sim) next() (time.Duration, bool) {
	var t time.Duration
	found := false
	consider := func(x time.Duration) {
		if !found || x < t {
			t, found = x, true
		}
	}
	for _, p := range s.flight {
		consider(p.at)
	}
	for _, name := range s.order {
		n := s.nodes[name]
		if !n.Alive {
			continue
		}
		consider(n.nextTick)
		if at, ok := n.Raw.NextDeadline(); ok {
			consider(max(at, s.now))
		}
	}
	return t, found
}

// Run advances virtual time by d, processing every event on the way.
func (s *Sim) Run(d time.Duration) {
	end := s.now + d
	for {
		t, ok := s.next()
		if !ok || t > end {
			break
		}
		s.now = max(s.now, t)
		s.step()
	}
	s.now = end
}

func (s *Sim) step() {
	// deliver due packets in (time, seq) order
	slices.SortFunc(s.flight, func(a, b packet) int {
		if c := cmp.Compare(a.at, b.at); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	for len(s.flight) > 0 && s.flight[0].at <= s.now {
		p := s.flight[0]
		s.flight = s.flight[1:]
		n := s.nodes[p.to]
		if n == nil || !n.Alive {
			continue
		}
		m, err := wire.Decode(p.data)
		if err != nil {
			panic(err)
		}
		s.Delivered++
		if ack, ok := m.(*wire.TransferAck); ok {
			if ack.Delta != nil {
				s.AcksDelta++
			} else {
				s.AcksFull++
			}
		}
		n.Raw.Step(s.now, m)
		s.collect(n)
	}
	for _, name := range s.order {
		n := s.nodes[name]
		if !n.Alive {
			continue
		}
		// the shard's deadlines (a flush, the end of a stopping peer's
		// grace) come on time, as the shard's timer makes them in the
		// tracker
		if at, ok := n.Raw.NextDeadline(); ok && at <= s.now {
			n.Raw.Advance(s.now)
			s.collect(n)
		}
		if n.nextTick <= s.now {
			n.Raw.Tick(s.now)
			n.nextTick = s.now + s.cfg.Shard.BroadcastPeriod
			s.collect(n)
		}
	}
}

// TakeDiffs returns and clears the diffs a node reported.
func (s *Sim) TakeDiffs(name string) []crdt.Diff {
	n := s.nodes[name]
	d := n.diffs
	n.diffs = nil
	return d
}

// FormatElements prints elements one per line as "topic key owner meta @node".
func FormatElements(prefix string, es []*crdt.Element) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "%s%s %s %s %s @%s.%d\n", prefix, e.Topic, e.Key, e.Owner, e.Meta, e.Tag.Replica.Name, e.Tag.Replica.Vsn)
	}
	return b.String()
}
