package loadtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// A key whose every meta leaves a view is gone (phoenix.js's onLeave);
// one that comes back after that is a flap. A stale ref keeps the view
// from being exact until it leaves.
func TestViewFlapsAndStale(t *testing.T) {
	v := roomView{n: 3}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(v.state([]byte(`{"u0":{"metas":[{"phx_ref":"A"}]},"u1":{"metas":[{"phx_ref":"B"}]},"u2":{"metas":[{"phx_ref":"C"}]}}`)))
	v.markStale(map[uint32]bool{refHash([]byte("B")): true})
	if v.staleN != 1 {
		t.Fatalf("stale %d, want 1", v.staleN)
	}
	// a reconnect in one diff: the new ref joins, the old leaves; no flap
	must(v.diff([]byte(`{"joins":{"u1":{"metas":[{"phx_ref":"B2"}]}},"leaves":{"u1":{"metas":[{"phx_ref":"B"}]}}}`)))
	if v.lefts != 0 || v.flaps != 0 || v.staleN != 0 {
		t.Fatalf("reconnect in one diff: gone %d, flaps %d, stale %d; want 0, 0, 0", v.lefts, v.flaps, v.staleN)
	}
	// the leave first, the join in a later diff: a flap
	must(v.diff([]byte(`{"joins":{},"leaves":{"u2":{"metas":[{"phx_ref":"C"}]}}}`)))
	must(v.diff([]byte(`{"joins":{"u2":{"metas":[{"phx_ref":"C2"}]}},"leaves":{}}`)))
	// a key that leaves for good
	must(v.diff([]byte(`{"joins":{},"leaves":{"u0":{"metas":[{"phx_ref":"A"}]}}}`)))
	if v.lefts != 2 || v.flaps != 1 {
		t.Fatalf("gone %d, flaps %d; want 2, 1", v.lefts, v.flaps)
	}
	// a stale ref in a later state counts again
	must(v.state([]byte(`{"u1":{"metas":[{"phx_ref":"B"},{"phx_ref":"B2"}]}}`)))
	if v.staleN != 1 || v.lefts != 2 {
		t.Fatalf("after a state: stale %d, gone %d", v.staleN, v.lefts)
	}
	must(v.diff([]byte(`{"joins":{},"leaves":{"u1":{"metas":[{"phx_ref":"B"}]}}}`)))
	if v.staleN != 0 {
		t.Fatalf("stale %d after its leave", v.staleN)
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// presenced builds cmd/presenced once for the package's tests.
func presenced(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "loadtest-presenced")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "presenced")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/gopresence/presence/cmd/presenced").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// runScenario runs o, logs its report and fails the test on an error.
func runScenario(t *testing.T, o Options) *ClusterReport {
	t.Helper()
	rep, err := Run(context.Background(), o)
	if rep != nil {
		var b strings.Builder
		rep.Print(&b)
		t.Log(b.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	return rep.Cluster
}

func clusterOpts(t *testing.T, mode string, clients int, flags ...string) Options {
	return Options{Mode: mode, Presenced: presenced(t), Clients: clients, Rate: 2000, Timeout: 90 * time.Second,
		MoveWithin: 300 * time.Millisecond, NodeFlags: append([]string{"--broadcast-period", "200ms"}, flags...), Log: testLog{}}
}

// The deploy scenario: a graceful stop whose members come back within the
// grace shows no flap, and every view is exact once the grace ends; with
// --permdown-on-shutdown (the stopped node's presences leave at once)
// the other members see the moved keys leave and come back, and the tool
// reports it.
func TestDeploy(t *testing.T) {
	const n = 90
	for _, c := range []struct {
		name  string
		flags []string
		flaps bool
	}{
		{"grace", []string{"--shutdown-grace", "1500ms"}, false},
		{"permdown-on-shutdown", []string{"--permdown-on-shutdown"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := runScenario(t, clusterOpts(t, ModeDeploy, n, c.flags...))
			if r.Moved != n/3 || r.MovedOK != n/3 || r.Survivors != n-n/3 || r.StopErr != "" || r.Lost != 0 {
				t.Fatalf("moved %d, joined again %d, survivors %d, stop %q, lost %d", r.Moved, r.MovedOK, r.Survivors, r.StopErr, r.Lost)
			}
			if !r.Exact || r.ExactAfter == nil {
				t.Fatal("views not exact")
			}
			if c.flaps {
				// each survivor sees the moved keys leave, and come back
				// (but for those whose rejoin reached it first)
				if r.Flaps < r.Moved*r.Survivors/2 || r.Gone != r.Flaps {
					t.Fatalf("flaps %d, gone %d, want over %d, all back", r.Flaps, r.Gone, r.Moved*r.Survivors/2)
				}
				return
			}
			if r.Flaps != 0 || r.Gone != 0 {
				t.Fatalf("flaps %d, gone %d, want none", r.Flaps, r.Gone)
			}
			if d := time.Duration(*r.ExactAfter); d < 1500*time.Millisecond || d > 4*time.Second {
				t.Fatalf("exact %v after the stop, want after the 1.5 s grace, soon", d)
			}
		})
	}
}

// The heal scenario: the views hold their own node's keys during the
// split and every key again after the heal, in a few diffs.
func TestHeal(t *testing.T) {
	o := clusterOpts(t, ModeHeal, 40)
	o.HealTopics, o.Watchers = 2, 2
	r := runScenario(t, o)
	if r.Keys != 120 || r.Members != 240 || r.Watchers != 12 || !r.Exact || r.Lost != 0 || r.ParseErrs != 0 || r.ChanErrs != 0 {
		t.Fatalf("keys %d, presences %d, watchers %d, exact %v, lost %d, parse errors %d, channel errors %d",
			r.Keys, r.Members, r.Watchers, r.Exact, r.Lost, r.ParseErrs, r.ChanErrs)
	}
	if r.Frames.Max == 0 || r.MaxPerSecond > 20 {
		t.Fatalf("frames per view %s, most in one second %d", r.Frames, r.MaxPerSecond)
	}
}
