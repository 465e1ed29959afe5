package sim

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopresence/presence/internal/crdt"
	"github.com/gopresence/presence/tracker"
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
// duplicating, reordering network with partitions, crashes, restarts and
// graceful shutdowns; then heals, lets it go quiet, and returns an error
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
			s.Do(name, func(rs *tracker.RawShard) error {
				_, err := rs.Track(owner, topics[r.IntN(3)], keys[r.IntN(4)], []byte(fmt.Sprintf(`{"n":%d}`, r.IntN(1000))))
				return err
			})
		case x < 50:
			if es := n.Raw.State().OwnerElementsAll(); len(es) > 0 {
				e := es[r.IntN(len(es))]
				s.Do(name, func(rs *tracker.RawShard) error {
					_, _, err := rs.Update(e.Owner, e.Topic, e.Key, []byte(fmt.Sprintf(`{"n":%d}`, r.IntN(1000))))
					return err
				})
			}
		case x < 62:
			if es := n.Raw.State().OwnerElementsAll(); len(es) > 0 {
				e := es[r.IntN(len(es))]
				if r.IntN(2) == 0 {
					s.Do(name, func(rs *tracker.RawShard) error { rs.Untrack(e.Owner, e.Topic, e.Key); return nil })
				} else {
					s.Do(name, func(rs *tracker.RawShard) error { rs.UntrackOwner(e.Owner); return nil })
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
