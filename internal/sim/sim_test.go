package sim

import (
	"cmp"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopresence/presence/internal/crdt"
	"github.com/gopresence/presence/internal/rawshard"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected outputs of testdata scenarios")

// TestScenarios runs every testdata/*.txt scenario: commands and their
// expected output (views and diffs).
func TestScenarios(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scenarios")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			cases, err := ParseScript(f)
			if err != nil {
				t.Fatal(err)
			}
			s := New(DefaultConfig(1))
			outs := make([]string, len(cases))
			for i, c := range cases {
				out, err := s.Script(c.Cmd, c.Args)
				if err != nil {
					out = "error: " + err.Error()
				}
				outs[i] = out
				if !*rewrite && out != c.Expected {
					t.Fatalf("%s:%d: %s %s\nexpected:\n%s\ngot:\n%s", f, c.Line, c.Cmd, strings.Join(c.Args, " "), c.Expected, out)
				}
			}
			if *rewrite {
				os.WriteFile(f, []byte(FormatScript(cases, outs)), 0o644)
			}
		})
	}
}

// live is the set every alive node must show after quiet: the presences
// tracked on alive nodes.
func live(s *Sim) []string {
	var out []string
	for _, name := range s.order {
		n := s.nodes[name]
		if !n.Alive {
			continue
		}
		for _, e := range n.Raw.State().Online() {
			if e.Tag.Replica == n.Raw.Self() {
				out = append(out, elemKey(e))
			}
		}
	}
	slices.Sort(out)
	return out
}

func elemKey(e *crdt.Element) string {
	return fmt.Sprintf("%s/%s/%s/%s@%s.%d:%d", e.Topic, e.Key, e.Owner, e.Meta, e.Tag.Replica.Name, e.Tag.Replica.Vsn, e.Tag.Clock)
}

func view(n *Node) []string {
	var out []string
	for _, e := range n.Raw.State().Online() {
		out = append(out, elemKey(e))
	}
	slices.Sort(out)
	return out
}

// randomRun drives a cluster through random operations on a lossy,
// duplicating, reordering network with partitions, crashes, restarts,
// graceful permdowns and graceful stops (with clients that reconnect
// elsewhere); then heals, lets it go quiet, and returns an error
// when some alive node does not show exactly the live presences.
func randomRun(seed uint64) error {
	cfg := DefaultConfig(seed)
	cfg.DropRate = 0.05
	cfg.DupRate = 0.05
	cfg.LatencyMax = 30 * time.Millisecond
	s := New(cfg)
	r := s.rng
	nn := 2 + r.IntN(3)
	for range nn {
		s.AddNode(fmt.Sprintf("n%d", len(s.order)+1))
	}
	topics := []string{"t1", "t2", "t3"}
	keys := []string{"u1", "u2", "u3", "u4"}
	owners := 0
	ops := 40 + r.IntN(80)
	for range ops {
		name := s.order[r.IntN(len(s.order))]
		n := s.nodes[name]
		switch x := r.IntN(100); {
		case !n.Alive:
			if x < 30 {
				s.Restart(name)
			}
		case x < 35:
			owners++
			owner := fmt.Sprintf("%s:p%d", name, owners)
			s.Do(name, func(rs *rawshard.Shard) error {
				_, err := rs.Track(s.Now(), owner, topics[r.IntN(3)], keys[r.IntN(4)], []byte(fmt.Sprintf(`{"n":%d}`, r.IntN(1000))))
				return err
			})
		case x < 50:
			if es := n.Raw.State().OwnerElementsAll(); len(es) > 0 {
				e := es[r.IntN(len(es))]
				s.Do(name, func(rs *rawshard.Shard) error {
					_, _, err := rs.Update(s.Now(), e.Owner, e.Topic, e.Key, []byte(fmt.Sprintf(`{"n":%d}`, r.IntN(1000))))
					return err
				})
			}
		case x < 62:
			if es := n.Raw.State().OwnerElementsAll(); len(es) > 0 {
				e := es[r.IntN(len(es))]
				if r.IntN(2) == 0 {
					s.Do(name, func(rs *rawshard.Shard) error { rs.Untrack(s.Now(), e.Owner, e.Topic, e.Key); return nil })
				} else {
					s.Do(name, func(rs *rawshard.Shard) error { rs.UntrackOwner(s.Now(), e.Owner); return nil })
				}
			}
		case x < 67:
			// partition into two random groups
			var a, b []string
			for _, m := range s.order {
				if r.IntN(2) == 0 {
					a = append(a, m)
				} else {
					b = append(b, m)
				}
			}
			s.Partition(a, b)
		case x < 74:
			s.Heal()
		case x < 77:
			s.Crash(name)
		case x < 79:
			s.Shutdown(name)
		case x < 81:
			s.Restart(name)
		case x < 84:
			// a graceful stop; some of its clients reconnect elsewhere
			var others []string
			for _, m := range s.order {
				if m != name && s.nodes[m].Alive {
					others = append(others, m)
				}
			}
			mine := n.Raw.State().OwnerElementsAll()
			s.Stop(name, time.Duration(r.IntN(2000))*time.Millisecond)
			for _, e := range mine {
				if len(others) == 0 || r.IntN(2) == 0 {
					continue
				}
				owners++
				to := others[r.IntN(len(others))]
				s.Do(to, func(rs *rawshard.Shard) error {
					_, err := rs.Track(s.Now(), fmt.Sprintf("%s:p%d", to, owners), e.Topic, e.Key, e.Meta)
					return err
				})
			}
		}
		s.Run(time.Duration(r.IntN(400)) * time.Millisecond)
	}
	// heal and go quiet: a clean network, long enough for down, permdown
	// and transfers to settle.
	s.Heal()
	s.cfg.DropRate, s.cfg.DupRate = 0, 0
	s.Run(cfg.Shard.PermdownPeriod + 3*time.Second)
	want := live(s)
	for _, name := range s.order {
		n := s.nodes[name]
		if !n.Alive {
			continue
		}
		if got := view(n); !slices.Equal(got, want) {
			return fmt.Errorf("seed %d: node %s shows\n  %v\nwant (live)\n  %v", seed, name, got, want)
		}
	}
	return nil
}

// TestRandomized: over many seeds, after heal and quiet, every node shows
// exactly the live presences: none lost, no ghosts.
func TestRandomized(t *testing.T) {
	seeds := 500
	if testing.Short() {
		seeds = 50
	}
	failed := 0
	for seed := range uint64(seeds) {
		if err := randomRun(seed); err != nil {
			failed++
			t.Errorf("%v", err)
			if failed > 5 {
				t.Fatal("too many failures")
			}
		}
	}
}

// rollingRun is a rolling deploy on a reordering, duplicating network
// without loss: every node in turn stops gracefully, most of its clients
// reconnect to other nodes at random within 70 % of the grace and the
// rest never come back, and the node restarts (a new incarnation) after
// its grace or, in some rounds, as soon as its clients have moved. It
// returns an error when, on a running node, the key of a client that is
// still connected somewhere ever leaves (a flap, read from the node's
// diffs in order); when a client that did not come back is not shown
// until the grace ends or is still shown after it; when a survivor
// reports the stopped node's presences leaving in more than one diff; or
// when, after quiet, a node does not show exactly the live presences.
func rollingRun(seed uint64) error {
	cfg := DefaultConfig(seed)
	cfg.DupRate = 0.05
	cfg.LatencyMax = 30 * time.Millisecond
	grace := cfg.ShutdownGrace
	s := New(cfg)
	r := s.rng
	for range 3 + r.IntN(3) {
		s.AddNode(fmt.Sprintf("n%d", len(s.order)+1))
	}
	type user struct {
		topic, key string
		gone       bool // did not come back after a stop
	}
	var users []*user
	owners := 0
	track := func(node string, u *user) {
		owners++
		owner := fmt.Sprintf("%s:c%d", node, owners)
		if err := s.Do(node, func(rs *rawshard.Shard) error {
			_, err := rs.Track(s.Now(), owner, u.topic, u.key, []byte(fmt.Sprintf(`{"c":%d}`, owners)))
			return err
		}); err != nil {
			panic(err)
		}
	}
	for i := range 10 + r.IntN(20) {
		u := &user{topic: fmt.Sprintf("t%d", r.IntN(3)), key: fmt.Sprintf("u%d", i)}
		users = append(users, u)
		track(s.order[r.IntN(len(s.order))], u)
	}
	s.Run(time.Second)

	// counts[node][topic/key] is the number of metas the node shows, from
	// its diffs; a key of a connected user that falls to 0 is a flap.
	counts := map[string]map[string]int{}
	connected := map[string]bool{}
	for _, u := range users {
		connected[u.topic+"/"+u.key] = true
	}
	var flap error
	// watch applies the diffs nodes reported and returns, per node, how
	// many of them had leaves of replica old.
	watch := func(old crdt.Replica) map[string]int {
		oldDiffs := map[string]int{}
		for _, name := range s.order {
			if !s.nodes[name].Alive {
				continue
			}
			c := counts[name]
			if c == nil {
				c = map[string]int{}
				counts[name] = c
			}
			for _, d := range s.TakeDiffs(name) {
				hasOld := false
				for _, e := range d.Joins {
					c[e.Topic+"/"+e.Key]++
				}
				for _, e := range d.Leaves {
					k := e.Topic + "/" + e.Key
					c[k]--
					if c[k] == 0 && connected[k] && flap == nil {
						flap = fmt.Errorf("seed %d: at %v %s's key %s left while its client is connected elsewhere", seed, s.now, name, k)
					}
					hasOld = hasOld || e.Tag.Replica == old
				}
				if hasOld {
					oldDiffs[name]++
				}
			}
		}
		return oldDiffs
	}
	shows := func(name string, u *user, on crdt.Replica) bool {
		for _, e := range s.nodes[name].Raw.State().Get(u.topic, u.key) {
			if e.Tag.Replica == on {
				return true
			}
		}
		return false
	}
	for _, x := range slices.Clone(s.order) {
		watch(crdt.Replica{})
		old := s.nodes[x].Raw.Self()
		var mine []*user
		for _, u := range users {
			if !u.gone && shows(x, u, old) {
				mine = append(mine, u)
			}
		}
		var others []string
		for _, m := range s.order {
			if m != x {
				others = append(others, m)
			}
		}
		stopAt := s.now
		s.Stop(x, grace)
		type move struct {
			at time.Duration
			u  *user
		}
		var moves []move
		for _, u := range mine {
			if r.IntN(4) == 0 {
				u.gone = true
				delete(connected, u.topic+"/"+u.key)
				continue
			}
			moves = append(moves, move{time.Duration(r.Int64N(int64(grace * 7 / 10))), u})
		}
		slices.SortFunc(moves, func(a, b move) int { return cmp.Compare(a.at, b.at) })
		oldDiffs := map[string]int{}
		add := func(m map[string]int) {
			for k, v := range m {
				oldDiffs[k] += v
			}
		}
		for _, m := range moves {
			s.Run(stopAt + m.at - s.now)
			track(others[r.IntN(len(others))], m.u)
			add(watch(old))
		}
		early := r.IntN(3) == 0
		if early {
			// back as soon as its clients moved (and their joins spread)
			s.Run(100 * time.Millisecond)
			add(watch(old))
			s.Restart(x)
			delete(counts, x)
		} else {
			s.Run(stopAt + grace - 100*time.Millisecond - s.now)
			add(watch(old))
			for _, u := range mine {
				for _, y := range others {
					if u.gone && !shows(y, u, old) {
						return fmt.Errorf("seed %d: %s stopped showing %s/%s of %s within its grace", seed, y, u.topic, u.key, x)
					}
				}
			}
		}
		s.Run(stopAt + grace + 100*time.Millisecond - s.now)
		add(watch(old))
		for _, u := range mine {
			for _, y := range s.order {
				if s.nodes[y].Alive && shows(y, u, old) {
					return fmt.Errorf("seed %d: %s still shows %s/%s of stopped %v after its grace", seed, y, u.topic, u.key, old)
				}
			}
		}
		for y, n := range oldDiffs {
			if n > 1 {
				return fmt.Errorf("seed %d: %s reported %v's presences leaving in %d diffs", seed, y, old, n)
			}
		}
		if !early {
			s.TakeDiffs(x)
			s.Restart(x)
			delete(counts, x)
		}
		s.Run(time.Second)
		add(watch(old))
		if flap != nil {
			return flap
		}
	}
	s.Run(cfg.Shard.PermdownPeriod + 3*time.Second)
	watch(crdt.Replica{})
	if flap != nil {
		return flap
	}
	want := live(s)
	for _, name := range s.order {
		if got := view(s.nodes[name]); !slices.Equal(got, want) {
			return fmt.Errorf("seed %d: after the deploy node %s shows\n  %v\nwant (live)\n  %v", seed, name, got, want)
		}
	}
	return nil
}

// TestRollingDeploy: over many seeds, a rolling deploy of graceful stops
// makes no key of a client that reconnects within the grace flap on any
// node, takes the others away when the grace ends, and converges.
func TestRollingDeploy(t *testing.T) {
	seeds := 200
	if testing.Short() {
		seeds = 30
	}
	failed := 0
	for seed := range uint64(seeds) {
		if err := rollingRun(seed); err != nil {
			failed++
			t.Errorf("%v", err)
			if failed > 5 {
				t.Fatal("too many failures")
			}
		}
	}
}
