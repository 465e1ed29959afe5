package cluster

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopresence/presence/client"
	"github.com/gopresence/presence/internal/loadtest"
	"github.com/gorilla/websocket"
)

// -heal.diff-window runs TestHealStorm with this --diff-window on every
// node (0: one presence_diff per change) and only logs the frame rate,
// for the before/after figures; the views must still be exact.
var healDiffWindow = flag.String("heal.diff-window", "", "TestHealStorm: --diff-window of the nodes; when set, the frame rate is logged, not asserted")

const (
	healTopics  = 10
	healSockets = 500 // per node; each tracks one presence in every topic
	healReplace = 25  // sockets per node replaced during the split
	healWithin  = 10 * time.Second
	healMaxRate = 20 // presence_diff frames per watcher per second during the heal
)

// TestHealStorm: three nodes hold 5,000 presences each, 500 per topic in
// ten topics, and every node has one watcher per topic (a Go client
// joined without a meta, its view kept by phoenix.js's rules). The bus is
// cut until each node holds the other two as down (the watchers see the
// others' presences leave); during the split each node replaces 250 of
// its presences; then the bus heals and every watcher gets 1,000 joins
// per topic back at once, plus the other nodes' replacements. The test
// measures, per watcher, the presence_diff frames in each second after
// the heal, and the time until every watcher lists exactly what its node
// lists (keys and phx_refs) and every node lists all 15,000 live
// presences; it asserts at most 20 frames per watcher in any second and
// exact views within 10 s.
//
// The partition is n1 embedding the NATS server and n2, n3 reaching it
// through proxies (as TestNATSExternal): cutting both proxies leaves each
// node alone. Nodes embedding NATS servers routed to each other through
// per-route proxies cannot be cut apart this way: nats-server gossips
// each server's real route address, and the servers dial each other
// there directly, past the proxies (seen with ss: direct routes between
// the presenced processes).
func TestHealStorm(t *testing.T) {
	extra := []string{"--permdown-period", "60s"} // a heal, not a permdown: the split lasts a few seconds
	window := "100ms (default)"
	if *healDiffWindow != "" {
		extra = append(extra, "--diff-window", *healDiffWindow)
		window = *healDiffWindow
	}
	natsPort := freePort(t)
	n1 := startNode(t, "n1", append([]string{"--nats-embed", "--nats-listen", fmt.Sprintf("127.0.0.1:%d", natsPort)}, extra...)...)
	target := fmt.Sprintf("127.0.0.1:%d", natsPort)
	proxies := []*loadtest.Proxy{newProxy(t, target), newProxy(t, target)}
	n2 := startNode(t, "n2", append([]string{"--nats-url", "nats://" + proxies[0].Addr()}, extra...)...)
	n3 := startNode(t, "n3", append([]string{"--nats-url", "nats://" + proxies[1].Addr()}, extra...)...)
	nodes := []*node{n1, n2, n3}
	begin := time.Now()
	replicasAre(t, "cluster up", 15*time.Second, "up", nodes, begin)

	topics := make([]string, healTopics)
	for i := range topics {
		topics[i] = fmt.Sprintf("room:heal-%d", i)
	}
	var watchers []*watcher
	for i, n := range nodes {
		for _, topic := range topics {
			watchers = append(watchers, watch(t, n, i, topic))
		}
	}

	// live[i]: the keys node i's sockets hold (each in every topic)
	live := make([]map[string]bool, len(nodes))
	hs := make([]*holders, len(nodes))
	for i, n := range nodes {
		live[i] = map[string]bool{}
		hs[i] = newHolders(t, n, topics)
		var users []string
		for j := range healSockets {
			users = append(users, fmt.Sprintf("%s-u%d", n.name, j))
		}
		hs[i].open(users)
		for _, u := range users {
			live[i][u] = true
		}
	}
	all := func() []map[string]bool {
		u := map[string]bool{}
		for _, l := range live {
			for k := range l {
				u[k] = true
			}
		}
		return []map[string]bool{u, u, u}
	}
	d := viewsExact(t, "filled", 30*time.Second, nodes, topics, watchers, all(), true)
	t.Logf("filled: %d presences in %d topics, every view exact %v after the last join (setup %v)",
		len(nodes)*healSockets*healTopics, healTopics, d.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))

	// the split: every node alone
	cut := time.Now()
	for _, p := range proxies {
		p.Cut()
	}
	downs := replicasAre(t, "split", 10*time.Second, "down", nodes, cut)
	viewsExact(t, "split", 10*time.Second, nodes, topics, watchers, live, false)
	for i, n := range nodes { // changes during the split
		var gone, fresh []string
		for j := range healReplace {
			gone = append(gone, fmt.Sprintf("%s-u%d", n.name, j))
			fresh = append(fresh, fmt.Sprintf("%s-v%d", n.name, j))
		}
		hs[i].close(gone)
		hs[i].open(fresh)
		for _, u := range gone {
			delete(live[i], u)
		}
		for _, u := range fresh {
			live[i][u] = true
		}
	}
	viewsExact(t, "split, changed", 10*time.Second, nodes, topics, watchers, live, false)
	time.Sleep(300 * time.Millisecond) // the split's last diffs out of the way

	// the heal
	heal := time.Now()
	for _, p := range proxies {
		p.Heal()
	}
	upc := make(chan [2]string, 1)
	go func() { // when each node holds each other up again
		got, bad := replicaTimes(healWithin, "up", nodes, heal)
		upc <- [2]string{got, bad}
	}()
	toExact := viewsExact(t, "healed", healWithin, nodes, topics, watchers, all(), true)
	exactAt := heal.Add(toExact)
	time.Sleep(time.Second) // frames that would still come after the views are exact
	end := time.Now()
	ups := <-upc
	if ups[1] != "" {
		t.Fatalf("healed: not every replica up: %s", ups[1])
	}
	replicasAre(t, "healed, a second later", time.Second, "up", nodes, heal)
	viewsExact(t, "still exact a second later", time.Second, nodes, topics, watchers, all(), true)

	var splitFrames, healFrames, lateFrames, rates []int
	maxRate, maxAt, states := 0, "", 0
	var busiest *watcher
	var lastFrame time.Duration             // the last frame before exact: when the last view became exact
	ghosts, ghostFor := 0, time.Duration(0) // joins of presences that had left during the split
	liveNow := all()[0]
	for _, w := range watchers {
		g, gf := w.ghosts(heal, end, liveNow)
		ghosts, ghostFor = max(ghosts, g), max(ghostFor, gf)
		lastFrame = max(lastFrame, w.last(heal, exactAt).Sub(heal))
		n, _, _ := w.frames(cut, heal)
		splitFrames = append(splitFrames, n)
		n, r, sec := w.frames(heal, end)
		healFrames = append(healFrames, n)
		rates = append(rates, r)
		if busiest == nil || r > maxRate {
			busiest = w
			maxRate, maxAt = r, fmt.Sprintf("watcher %s/%s, second %d after the heal", nodes[w.node].name, w.topic, sec)
		}
		n, _, _ = w.frames(exactAt, end)
		lateFrames = append(lateFrames, n)
		if n > 0 {
			t.Logf("after exact, watcher %s/%s got %s; raw: %s", nodes[w.node].name, w.topic, w.describe(exactAt, end), w.raw(exactAt, end))
		}
		states = max(states, w.stateCount())
	}
	t.Logf("heal storm, --diff-window %s: %d presences (%d per node, %d topics, %d watchers): "+
		"views exact %v after Heal() (checked; the last frame before: %v); presence_diff frames per watcher during the heal: most in one second %d (median watcher %d), total median %d / max %d; "+
		"during the split (leaves and replacements) median %d / max %d; after exact: max %d; joins of presences gone during the split (shown until their leave): max %d per watcher, shown at most %v; presence_state per watcher: %d; test %v",
		window, len(nodes)*healSockets*healTopics, healSockets*healTopics, healTopics, len(watchers),
		toExact.Round(time.Millisecond), lastFrame.Round(time.Millisecond), maxRate, median(rates), median(healFrames), slices.Max(healFrames),
		median(splitFrames), slices.Max(splitFrames), slices.Max(lateFrames), ghosts, ghostFor.Round(time.Millisecond), states, time.Since(begin).Round(time.Second))
	t.Logf("held down after Cut(): %s; up after Heal(): %s", downs, ups[0])
	t.Logf("frames of the busiest watcher (%s/%s) from Heal() on, +joins/-leaves@ms: %s", nodes[busiest.node].name, busiest.topic, busiest.describe(heal, end))
	t.Logf("frames of the same watcher during the split, from Cut() on: %s", busiest.describe(cut, heal))
	if states != 1 {
		t.Errorf("a watcher got %d presence_state frames: it rejoined", states)
	}
	if *healDiffWindow == "" && maxRate > healMaxRate {
		t.Errorf("%d presence_diff frames in one second (%s), want at most %d", maxRate, maxAt, healMaxRate)
	}
}

func median(v []int) int {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// replicasAre waits until every node holds every other as status (up or
// down), and returns when each node first held each other so, after
// since: "n1→n2 830ms n1→n3 910ms …".
func replicasAre(t *testing.T, what string, within time.Duration, status string, nodes []*node, since time.Time) string {
	t.Helper()
	got, bad := replicaTimes(within, status, nodes, since)
	if bad != "" {
		t.Fatalf("%s: not every replica %s within %v: %s", what, status, within, bad)
	}
	return got
}

// replicaTimes is replicasAre without the test: on a timeout it returns
// what was wrong.
func replicaTimes(within time.Duration, status string, nodes []*node, since time.Time) (got, bad string) {
	deadline := time.Now().Add(within)
	first := map[string]time.Duration{}
	for {
		bad = ""
		for _, n := range nodes {
			rs := n.replicas()
			for _, o := range nodes {
				pair := n.name + "→" + o.name
				switch {
				case o == n:
				case strings.HasSuffix(rs[o.name], "/"+status):
					if _, seen := first[pair]; !seen {
						first[pair] = time.Since(since)
					}
				default:
					bad = fmt.Sprintf("%s holds %v", n.name, rs)
				}
			}
		}
		if bad == "" {
			var out []string
			for _, pair := range slices.Sorted(maps.Keys(first)) {
				out = append(out, fmt.Sprintf("%s %v", pair, first[pair].Round(time.Millisecond)))
			}
			return strings.Join(out, " "), ""
		}
		if time.Now().After(deadline) {
			return "", bad
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// viewsExact waits until, for every topic, every watcher on node i lists
// exactly the keys want[i], one meta each, and the same key/phx_ref pairs
// as node i (GET /api/v1/topics/{topic}); with same, the nodes' lists must
// also be equal. It returns how long that took: until the end of the
// first check that passed. The check itself takes ~0.2 s here (30 lists
// of 1,500; ~0.7 s under -race), hence the test also reports the arrival
// of the last frame before it.
func viewsExact(t *testing.T, what string, within time.Duration, nodes []*node, topics []string, ws []*watcher, want []map[string]bool, same bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		bad := ""
		for _, w := range ws {
			if !w.hasKeys(want[w.node]) {
				bad = fmt.Sprintf("watcher %s/%s lists %d keys, want %d", nodes[w.node].name, w.topic, len(w.view()), len(want[w.node]))
				break
			}
		}
	check:
		for _, topic := range topics {
			if bad != "" {
				break
			}
			var first []string
			for i, n := range nodes {
				got, err := nodeRefs(n, topic)
				if err != nil {
					bad = err.Error()
					break check
				}
				if !sameKeys(got, want[i]) {
					bad = fmt.Sprintf("%s lists %d metas in %s, want %d keys with one each", n.name, len(got), topic, len(want[i]))
					break check
				}
				for _, w := range ws {
					if w.node == i && w.topic == topic && !slices.Equal(w.view(), got) {
						bad = fmt.Sprintf("watcher %s/%s differs from its node's list", n.name, topic)
						break check
					}
				}
				if same && first != nil && !slices.Equal(got, first) {
					bad = fmt.Sprintf("%s and %s list %s differently", nodes[0].name, n.name, topic)
					break check
				}
				first = got
			}
		}
		if bad == "" {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: views not exact within %v: %s", what, within, bad)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sameKeys reports whether refs ("key phx_ref", sorted) holds exactly the
// keys of want, one meta each.
func sameKeys(refs []string, want map[string]bool) bool {
	if len(refs) != len(want) {
		return false
	}
	prev := ""
	for i, r := range refs {
		k, _, _ := strings.Cut(r, " ")
		if !want[k] || i > 0 && k == prev { // sorted: a key's metas are adjacent
			return false
		}
		prev = k
	}
	return true
}

// nodeRefs is a node's list of topic as sorted "key phx_ref" strings.
func nodeRefs(n *node, topic string) ([]string, error) {
	resp, err := http.Get("http://" + n.http + "/api/v1/topics/" + topic)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var st map[string]struct {
		Metas []struct {
			Ref string `json:"phx_ref"`
		} `json:"metas"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %v: %.200s", n.name, err, b)
	}
	out := []string{}
	for k, e := range st {
		for _, m := range e.Metas {
			out = append(out, k+" "+m.Ref)
		}
	}
	sort.Strings(out)
	return out, nil
}

// watcher is a Go client joined to one topic without a meta: it tracks no
// presence, keeps the topic's presences in a client.Presence (phoenix.js's
// rules) and records the arrival of every presence_diff frame.
type watcher struct {
	node  int
	topic string
	pres  *client.Presence

	mu      sync.Mutex
	diffs   []time.Time
	bodies  []json.RawMessage // of diffs
	states  int
	version int // bumped after every applied state or diff
	seen    int // version of cached
	cached  []string
}

func watch(t *testing.T, n *node, idx int, topic string) *watcher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sock, err := client.Dial(ctx, "ws://"+n.http+"/socket", &client.Options{
		Params: url.Values{"user_id": {"watch-" + n.name + "-" + strings.TrimPrefix(topic, "room:")}},
	})
	if err != nil {
		t.Fatalf("dial %s: %v", n.name, err)
	}
	t.Cleanup(func() { sock.Close() })
	w := &watcher{node: idx, topic: topic, seen: -1}
	ch := sock.Channel(topic, nil)
	// bound before the Presence's own handlers: the time is taken before
	// the frame is applied
	ch.On("presence_diff", func(p json.RawMessage) {
		now := time.Now()
		w.mu.Lock()
		w.diffs = append(w.diffs, now)
		w.bodies = append(w.bodies, slices.Clone(p))
		w.mu.Unlock()
	})
	ch.On("presence_state", func(json.RawMessage) {
		w.mu.Lock()
		w.states++
		w.mu.Unlock()
	})
	w.pres = client.NewPresence(ch, nil)
	w.pres.OnSync(func() {
		w.mu.Lock()
		w.version++
		w.mu.Unlock()
	})
	if _, err := ch.Join(ctx); err != nil {
		t.Fatalf("watch %s on %s: %v", topic, n.name, err)
	}
	return w
}

// view is the watcher's list as sorted "key phx_ref" strings.
func (w *watcher) view() []string {
	w.mu.Lock()
	v := w.version
	if v == w.seen {
		defer w.mu.Unlock()
		return w.cached
	}
	w.mu.Unlock()
	out := []string{}
	for k, e := range w.pres.State() {
		for _, m := range e.Metas {
			out = append(out, k+" "+m.Ref)
		}
	}
	sort.Strings(out)
	w.mu.Lock()
	w.seen, w.cached = v, out // v, not w.version: a newer state is listed again next time
	w.mu.Unlock()
	return out
}

func (w *watcher) hasKeys(want map[string]bool) bool { return sameKeys(w.view(), want) }

func (w *watcher) stateCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.states
}

// frames counts the presence_diff frames that arrived in [from, to): the
// total, the most in one second (1-s buckets from from) and that second.
func (w *watcher) frames(from, to time.Time) (total, most, sec int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	buckets := map[int]int{}
	for _, at := range w.diffs {
		if at.Before(from) || !at.Before(to) {
			continue
		}
		total++
		b := int(at.Sub(from) / time.Second)
		buckets[b]++
		if buckets[b] > most {
			most, sec = buckets[b], b
		}
	}
	return total, most, sec
}

// last is the arrival of the last presence_diff frame in [from, to), or
// from.
func (w *watcher) last(from, to time.Time) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := from
	for _, at := range w.diffs {
		if !at.Before(from) && at.Before(to) && at.After(l) {
			l = at
		}
	}
	return l
}

// ghosts counts the joins, in the presence_diff frames of [from, to), of
// keys not in live, and returns the longest any of them stayed (until the
// frame with its leave, or to).
func (w *watcher) ghosts(from, to time.Time, live map[string]bool) (n int, longest time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	joined := map[string]time.Time{}
	for i, at := range w.diffs {
		if at.Before(from) || !at.Before(to) {
			continue
		}
		var d struct {
			Joins, Leaves map[string]json.RawMessage
		}
		json.Unmarshal(w.bodies[i], &d)
		for k := range d.Joins {
			if !live[k] {
				n++
				joined[k] = at
			}
		}
		for k := range d.Leaves {
			if j, ok := joined[k]; ok {
				longest = max(longest, at.Sub(j))
				delete(joined, k)
			}
		}
	}
	for _, j := range joined {
		longest = max(longest, to.Sub(j))
	}
	return n, longest
}

// describe lists the presence_diff frames that arrived in [from, to)
// (at most 30), as "+joins/-leaves@ms after from".
func (w *watcher) describe(from, to time.Time) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for i, at := range w.diffs {
		if at.Before(from) || !at.Before(to) {
			continue
		}
		if len(out) == 30 {
			out = append(out, "…")
			break
		}
		var d struct {
			Joins, Leaves map[string]struct {
				Metas []json.RawMessage `json:"metas"`
			}
		}
		json.Unmarshal(w.bodies[i], &d)
		count := func(m map[string]struct {
			Metas []json.RawMessage `json:"metas"`
		}) (n int) {
			for _, e := range m {
				n += len(e.Metas)
			}
			return n
		}
		out = append(out, fmt.Sprintf("+%d/-%d@%d", count(d.Joins), count(d.Leaves), at.Sub(from).Milliseconds()))
	}
	return strings.Join(out, " ")
}

func (w *watcher) raw(from, to time.Time) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for i, at := range w.diffs {
		if !at.Before(from) && at.Before(to) {
			out = append(out, fmt.Sprintf("%.600s", w.bodies[i]))
		}
	}
	return strings.Join(out, " | ")
}

// holders are raw WebSocket connections to one node, each tracked in
// every topic under its own key (its user_id) with presence mode none: they
// hold presences and get no presence traffic, so thousands stay cheap.
type holders struct {
	t      *testing.T
	n      *node
	topics []string
	mu     sync.Mutex
	conns  map[string]*websocket.Conn
	wg     sync.WaitGroup
	stop   chan struct{}
}

func newHolders(t *testing.T, n *node, topics []string) *holders {
	h := &holders{t: t, n: n, topics: topics, conns: map[string]*websocket.Conn{}, stop: make(chan struct{})}
	go func() { // heartbeats, under the server's 60 s idle timeout
		tk := time.NewTicker(20 * time.Second)
		defer tk.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-tk.C:
				h.mu.Lock()
				for _, c := range h.conns {
					c.WriteMessage(websocket.TextMessage, []byte(`[null,"hb","phoenix","heartbeat",{}]`))
				}
				h.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		close(h.stop)
		h.mu.Lock()
		for _, c := range h.conns {
			c.Close()
		}
		h.mu.Unlock()
		h.wg.Wait()
	})
	return h
}

// open connects one socket per user, 8 at a time, and returns when every
// join is answered ok.
func (h *holders) open(users []string) {
	h.t.Helper()
	sem := make(chan struct{}, 8)
	errs := make(chan error, len(users))
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := h.open1(u); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		h.t.Fatal(err)
	}
}

func (h *holders) open1(user string) error {
	c, _, err := websocket.DefaultDialer.Dial(fmt.Sprintf("ws://%s/socket/websocket?vsn=2.0.0&user_id=%s", h.n.http, user), nil)
	if err != nil {
		return fmt.Errorf("dial %s: %v", h.n.name, err)
	}
	for i, topic := range h.topics {
		ref := strconv.Itoa(i + 1)
		frame, _ := json.Marshal([]any{ref, ref, topic, "phx_join", map[string]any{
			"meta": map[string]any{"device": user}, "presence": map[string]any{"mode": "none"}}})
		if err := c.WriteMessage(websocket.TextMessage, frame); err != nil {
			c.Close()
			return err
		}
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for ok := 0; ok < len(h.topics); {
		_, b, err := c.ReadMessage()
		if err != nil {
			c.Close()
			return fmt.Errorf("%s joining on %s: %v", user, h.n.name, err)
		}
		var f []json.RawMessage
		json.Unmarshal(b, &f)
		if len(f) == 5 && string(f[3]) == `"phx_reply"` {
			if !strings.Contains(string(f[4]), `"status":"ok"`) {
				c.Close()
				return fmt.Errorf("%s: join refused on %s: %s", user, h.n.name, b)
			}
			ok++
		}
	}
	c.SetReadDeadline(time.Time{})
	h.mu.Lock()
	h.conns[user] = c
	h.mu.Unlock()
	h.wg.Add(1)
	go func() { // heartbeat replies
		defer h.wg.Done()
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}()
	return nil
}

// close closes the users' sockets: their presences leave.
func (h *holders) close(users []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, u := range users {
		if c := h.conns[u]; c != nil {
			c.Close()
			delete(h.conns, u)
		}
	}
}
