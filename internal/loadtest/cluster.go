package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// The cluster scenarios: the tool starts Options.Nodes presenced nodes of
// its own (StartCluster) and runs its members in this process.
//
// deploy: Clients members join one topic, spread round robin over the
// nodes, each keeping its view; the last node stops gracefully (SIGTERM)
// and its members reconnect to the others, each after a delay drawn
// below MoveWithin; measured: key flaps the other members' views show
// (phoenix.js's onLeave of a key, then its onJoin), presence_diff frames
// per member, and the time from the stop until every view is exact.
//
// heal: each node holds Clients sockets that join every one of
// HealTopics topics with a meta in presence mode none (tracked, no
// presence traffic: the fill is not O(N²)), and Watchers watchers per
// node and topic keep views; the nodes' bus links are cut until each holds
// the others as down, then healed; measured: presence_diff frames per
// watcher and second from the heal on, and the time until every view is
// exact.

// ClusterReport is a deploy or heal measurement.
type ClusterReport struct {
	Scenario  string   `json:"scenario"`
	Nodes     int      `json:"nodes"`
	NodeFlags []string `json:"node_flags"`
	Topics    []string `json:"topics"`
	// Members: deploy: members of the topic; heal: tracked presences in
	// all (sockets × topics) and watchers.
	Members  int `json:"members"`
	Watchers int `json:"watchers"`
	Keys     int `json:"keys"` // keys every view holds when exact

	Fill      Duration `json:"fill"` // connect + join until every view is exact
	FillRate  float64  `json:"fill_joins_per_s"`
	FillExact bool     `json:"fill_exact"`

	// Deploy.
	Stopped    string   `json:"stopped,omitempty"` // the node stopped with SIGTERM
	StopErr    string   `json:"stop_error,omitempty"`
	Moved      int      `json:"moved,omitempty"`    // its members
	MovedOK    int      `json:"moved_ok,omitempty"` // joined again elsewhere
	MoveWithin Duration `json:"move_within,omitempty"`
	// MovedAfter: per moved member, its rejoin's ok after the stop.
	MovedAfter Dist `json:"moved_after"`
	Survivors  int  `json:"survivors,omitempty"`
	// Flaps: keys that left a survivor's view and came back (summed over
	// survivors); Gone: keys that left one (every meta gone), whether or
	// not they came back; FlapViews: survivors that saw a flap.
	Flaps     int `json:"flaps"`
	Gone      int `json:"gone"`
	FlapViews int `json:"flap_views"`

	// Heal.
	SplitAfter Duration `json:"split_after,omitempty"` // cut → every node holds the others down
	SplitViews Duration `json:"split_views,omitempty"` // cut → every view holds only its node's keys

	// From the event (the stop, the heal) on.
	Exact       bool      `json:"exact"` // every view exact by the end of the wait
	ExactAfter  *Duration `json:"exact_after,omitempty"`
	Inexact     int       `json:"inexact"`
	InexactKeys Counts    `json:"inexact_keys"`
	// Frames: presence_diff frames per view from the event to one second
	// after every view was exact (or the end of the wait); MaxPerSecond:
	// the most one view got in one second of that.
	Frames       Counts `json:"frames"`
	MaxPerSecond int    `json:"max_per_view_per_s"`
	// Busiest: that view's frames, as milliseconds after the event.
	Busiest []int64 `json:"busiest_view_frames_ms"`
	States  int     `json:"presence_state_max"` // per view, over the run (a rejoin gets one more)

	Refused   map[string]int     `json:"refused,omitempty"`
	ChanErrs  int                `json:"channel_errors"`
	ParseErrs int                `json:"parse_errors"`
	Lost      int                `json:"lost"` // connections that ended and did not move
	LostErr   string             `json:"lost_error,omitempty"`
	ServerCPU map[string]float64 `json:"server_cpu_s"` // per node, from the event to the end
}

func (o *Options) clusterDefaults() error {
	if o.Presenced == "" {
		return errNoBinary
	}
	bin, err := exec.LookPath(o.Presenced)
	if err != nil {
		return fmt.Errorf("-presenced %q: %w", o.Presenced, err)
	}
	o.Presenced = bin
	if o.Nodes <= 0 {
		o.Nodes = 3
	}
	if o.Nodes < 2 {
		return errors.New("the cluster scenarios need at least 2 nodes")
	}
	if o.MoveWithin <= 0 {
		o.MoveWithin = 2 * time.Second
	}
	if o.HealTopics <= 0 {
		o.HealTopics = 10
	}
	if o.Watchers <= 0 {
		o.Watchers = 5
	}
	if o.Clients <= 0 {
		return errors.New("clients must be > 0")
	}
	if o.Mode == ModeDeploy && o.Clients > 19000 || o.Mode == ModeHeal && o.Clients*o.Nodes > 19000 {
		return errors.New("the cluster scenarios hold every socket in this process: at most 19,000")
	}
	if o.Rate <= 0 {
		o.Rate = 1000
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return nil
}

// runCluster runs the deploy or heal scenario.
func runCluster(ctx context.Context, o Options) (*Report, error) {
	if err := o.clusterDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	flags := append([]string{"--log-level", "warn"}, o.NodeFlags...)
	if o.Mode == ModeHeal {
		// a split of seconds, not a permdown (unless the caller says so)
		flags = append([]string{"--down-period", "3s", "--permdown-period", "5m"}, flags...)
	}
	start := time.Now()
	fmt.Fprintf(o.Log, "starting %d nodes: %s %s\n", o.Nodes, o.Presenced, strings.Join(flags, " "))
	nodes, err := StartCluster(ctx, o.Presenced, o.Nodes, flags)
	if err != nil {
		return nil, err
	}
	defer StopCluster(nodes)
	rep := &Report{Mode: o.Mode, URL: nodes[0].WS.String(), Clients: o.Clients, Procs: 1, Started: start}
	r := &ClusterReport{Scenario: o.Mode, Nodes: o.Nodes, NodeFlags: flags}
	rep.Cluster = r
	var seed atomic.Uint64
	rngs := func() *rand.Rand { return rand.New(rand.NewPCG(seed.Add(1), 7)) }
	if o.Mode == ModeDeploy {
		err = runDeploy(ctx, &o, nodes, r, rngs)
	} else {
		err = runHeal(ctx, &o, nodes, r, rngs)
	}
	rep.Setup = r.Fill
	return rep, err
}

// fill connects and joins the members and waits until every watcher's
// view holds want keys.
func fill(ctx context.Context, o *Options, nodes []*Node, all, watchers []*member, joins int, want int, r *ClusterReport, rngs func() *rand.Rand) error {
	setWant(watchers, want)
	t0 := time.Now()
	go heartbeats(ctx, all, o.Heartbeat)
	if err := connectAll(ctx, all, nodes, o.Rate, rngs); err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	ok, bad := waitAll(ctx, watchers, time.Until(deadlineOf(ctx, 30*time.Second)), func(m *member) bool { return m.exactAt != 0 })
	r.Fill, r.FillExact = Duration(time.Since(t0)), ok
	r.FillRate = float64(joins) / time.Since(t0).Seconds()
	fmt.Fprintf(o.Log, "filled: %d joins, %d views exact: %v in %v\n", joins, len(watchers), ok, time.Duration(r.Fill).Round(time.Millisecond))
	if !ok {
		return fmt.Errorf("fill: %d of %d views not exact (%s)", len(bad), len(watchers), describe(bad))
	}
	return nil
}

// deadlineOf is ctx's deadline less reserve (the report still has to be
// written), or now + 10 min.
func deadlineOf(ctx context.Context, reserve time.Duration) time.Time {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Now().Add(10 * time.Minute)
	}
	return d.Add(-reserve)
}

func describe(ms []*member) string {
	var parts []string
	for i, m := range ms {
		if i == 3 {
			parts = append(parts, "…")
			break
		}
		m.mu.Lock()
		parts = append(parts, fmt.Sprintf("%s of %s on n%d: %d keys, %d extra metas, synced %v, lost %v", m.user, m.topics[0], m.node+1, m.view.keys, len(m.view.more)+len(m.view.other), m.view.synced, m.lost))
		m.mu.Unlock()
	}
	return strings.Join(parts, "; ")
}

// cpu reads every node's CPU seconds (a stopped node's last figure stays).
func cpu(nodes []*Node, into map[string]float64) {
	for _, nd := range nodes {
		if st, err := ReadProc(nd.PID()); err == nil {
			into[nd.Name] = st.CPUTime
		}
	}
}

// cpuSince is each node's CPU seconds since before (a reading of cpu).
func cpuSince(nodes []*Node, before map[string]float64) map[string]float64 {
	now := map[string]float64{}
	cpu(nodes, now)
	for k := range now {
		now[k] -= before[k]
	}
	return now
}

// settle waits until every view is exact, then one second more, and
// records the views' frames from t0 on.
func settle(ctx context.Context, o *Options, watchers []*member, t0 time.Time, within time.Duration, r *ClusterReport) {
	ok, bad := waitAll(ctx, watchers, within, func(m *member) bool { return m.exactAt != 0 })
	end := time.Now()
	r.Exact, r.Inexact = ok, len(bad)
	if ok {
		var last int64
		for _, m := range watchers {
			m.mu.Lock()
			last = max(last, m.exactAt)
			m.mu.Unlock()
		}
		d := Duration(time.Duration(last - t0.UnixNano()))
		r.ExactAfter = &d
		end = time.Unix(0, last).Add(time.Second)
		sleepCtx(ctx, time.Until(end))
	} else {
		var keys []int64
		for _, m := range bad {
			m.mu.Lock()
			keys = append(keys, int64(m.view.keys))
			m.mu.Unlock()
		}
		r.InexactKeys = SummarizeCounts(keys)
		fmt.Fprintf(o.Log, "not exact: %s\n", describe(bad))
	}
	var frames []int64
	for _, m := range watchers {
		m.mu.Lock()
		n, most := windowFrames(m.diffs, t0.UnixNano(), end.UnixNano())
		r.States = max(r.States, m.states)
		if most > r.MaxPerSecond || r.Busiest == nil {
			r.MaxPerSecond, r.Busiest = most, nil
			for _, at := range m.diffs {
				if at >= t0.UnixNano() && at < end.UnixNano() {
					r.Busiest = append(r.Busiest, (at-t0.UnixNano())/1e6)
				}
			}
		}
		m.mu.Unlock()
		frames = append(frames, int64(n))
	}
	r.Frames = SummarizeCounts(frames)
}

// windowFrames counts the arrivals in [from, to), and the most in one
// second (seconds counted from from).
func windowFrames(at []int64, from, to int64) (n, most int) {
	per := map[int64]int{}
	for _, t := range at {
		if t >= from && t < to {
			n++
			s := (t - from) / int64(time.Second)
			per[s]++
			most = max(most, per[s])
		}
	}
	return n, most
}

// errorsOf sums the members' errors into r.
func errorsOf(ms []*member, r *ClusterReport) {
	for _, m := range ms {
		m.mu.Lock()
		addCounts(&r.Refused, m.refused)
		r.ChanErrs += m.chanErrs
		r.ParseErrs += m.parseErrs
		if m.lost != nil && !errors.Is(m.lost, context.Canceled) {
			r.Lost++
			if r.LostErr == "" {
				r.LostErr = m.lost.Error()
			}
		}
		m.mu.Unlock()
	}
}

func runDeploy(ctx context.Context, o *Options, nodes []*Node, r *ClusterReport, rngs func() *rand.Rand) error {
	topic := o.Topic
	if topic == "" {
		topic = "room:deploy"
	}
	n := o.Clients
	r.Topics, r.Members, r.Watchers, r.Keys = []string{topic}, n, n, n
	r.MoveWithin = Duration(o.MoveWithin)
	ms := make([]*member, n)
	for i := range ms {
		key := "u" + strconv.Itoa(i)
		ms[i] = &member{user: key, topics: []string{topic}, join: memberPayload(true, PresenceFull), watch: true, node: i % len(nodes)}
		ms[i].view.n = n
	}
	defer closeAll(ms)
	if err := fill(ctx, o, nodes, ms, ms, n, n, r, rngs); err != nil {
		errorsOf(ms, r)
		return err
	}
	stop := nodes[len(nodes)-1]
	rest := nodes[:len(nodes)-1]
	var moved, survivors []*member
	for i, m := range ms {
		m.mu.Lock()
		m.view.lefts, m.view.flaps = 0, 0
		clear(m.view.gone)
		if m.node == len(nodes)-1 {
			m.moveTo, m.moveNode, m.moveWithin = rest[i%len(rest)], i%len(rest), o.MoveWithin
			moved = append(moved, m)
		} else {
			survivors = append(survivors, m)
		}
		m.mu.Unlock()
	}
	r.Stopped, r.Moved, r.Survivors = stop.Name, len(moved), len(survivors)
	// The moved members' metas of now must leave every view for it to be
	// exact again: their refs, from the first node's list.
	st, err := nodes[0].State(topic)
	if err != nil {
		return err
	}
	var list roomView
	list.n = n
	if err := list.apply(st, true); err != nil {
		return fmt.Errorf("%s's list of %s: %w", nodes[0].Name, topic, err)
	}
	stale := map[uint32]bool{}
	for i := len(nodes) - 1; i < n; i += len(nodes) {
		for _, r := range list.metas("u" + strconv.Itoa(i)) {
			stale[r] = true
		}
	}
	if len(stale) != len(moved) {
		return fmt.Errorf("%s lists %d metas of the %d members on %s", nodes[0].Name, len(stale), len(moved), stop.Name)
	}
	for _, m := range ms {
		m.mu.Lock()
		m.view.markStale(stale)
		m.exactAt = 0
		m.mu.Unlock()
	}
	before := map[string]float64{}
	cpu(nodes, before)
	t0 := time.Now()
	fmt.Fprintf(o.Log, "SIGTERM to %s (pid %d); %d members move within %v\n", stop.Name, stop.PID(), len(moved), o.MoveWithin)
	stopped := make(chan error, 1)
	go func() { stopped <- stop.Term(30 * time.Second) }()
	settle(ctx, o, ms, t0, time.Until(deadlineOf(ctx, 5*time.Second)), r)
	r.ServerCPU = cpuSince(nodes, before)
	if err := <-stopped; err != nil {
		r.StopErr = err.Error()
	}
	var movedAfter []int32
	for _, m := range moved {
		m.mu.Lock()
		if m.movedAt != 0 {
			r.MovedOK++
			movedAfter = append(movedAfter, int32((m.movedAt-t0.UnixNano())/1000))
		}
		m.mu.Unlock()
	}
	r.MovedAfter = Summarize(movedAfter)
	for _, m := range survivors {
		m.mu.Lock()
		r.Flaps += m.view.flaps
		r.Gone += m.view.lefts
		if m.view.flaps > 0 {
			r.FlapViews++
		}
		m.mu.Unlock()
	}
	errorsOf(ms, r)
	if !r.Exact {
		return fmt.Errorf("deploy: %d views not exact", r.Inexact)
	}
	return nil
}

func runHeal(ctx context.Context, o *Options, nodes []*Node, r *ClusterReport, rngs func() *rand.Rand) error {
	s := o.Clients // sockets per node
	for i := range o.HealTopics {
		r.Topics = append(r.Topics, fmt.Sprintf("room:heal-%d", i))
	}
	keys := s * len(nodes)
	r.Members, r.Keys = keys*o.HealTopics, keys
	var all, watchers []*member
	for nd := range nodes {
		for i := range s {
			key := "u" + strconv.Itoa(nd*s+i)
			all = append(all, &member{user: key, topics: r.Topics, join: memberPayload(true, "none"), node: nd})
		}
		for _, t := range r.Topics {
			for j := range o.Watchers {
				w := &member{user: fmt.Sprintf("watch-%s-n%d-%d", t, nd+1, j), topics: []string{t}, join: memberPayload(false, ""), watch: true, node: nd}
				w.view.n = keys
				watchers = append(watchers, w)
			}
		}
	}
	r.Watchers = len(watchers)
	all = append(watchers, all...)
	defer closeAll(all)
	// o.Rate is joins per second: a socket sends one per topic
	sockets := *o
	sockets.Rate = o.Rate / float64(o.HealTopics)
	if err := fill(ctx, &sockets, nodes, all, watchers, r.Members, keys, r, rngs); err != nil {
		errorsOf(all, r)
		return err
	}
	r.FillRate = float64(r.Members) / time.Duration(r.Fill).Seconds()

	cut := time.Now()
	fmt.Fprintf(o.Log, "cutting the bus links\n")
	for _, nd := range nodes {
		if nd.Proxy != nil {
			nd.Proxy.Cut()
		}
	}
	for _, nd := range nodes {
		if err := WaitReplicas(ctx, []*Node{nd}, nodes, "down", time.Until(deadlineOf(ctx, 20*time.Second))); err != nil {
			errorsOf(all, r)
			return fmt.Errorf("split: %w", err)
		}
	}
	r.SplitAfter = Duration(time.Since(cut))
	setWant(watchers, s)
	if ok, bad := waitAll(ctx, watchers, 10*time.Second, func(m *member) bool {
		return m.view.keys == s && len(m.view.more) == 0 && len(m.view.other) == 0
	}); !ok {
		errorsOf(all, r)
		return fmt.Errorf("split: %d views do not hold their node's %d keys only (%s)", len(bad), s, describe(bad))
	}
	r.SplitViews = Duration(time.Since(cut))
	fmt.Fprintf(o.Log, "split: every node alone after %v, views of their own node after %v\n",
		time.Duration(r.SplitAfter).Round(time.Millisecond), time.Duration(r.SplitViews).Round(time.Millisecond))
	sleepCtx(ctx, 500*time.Millisecond) // the split's last diffs out of the way

	setWant(watchers, keys)
	before := map[string]float64{}
	cpu(nodes, before)
	t0 := time.Now()
	for _, nd := range nodes {
		if nd.Proxy != nil {
			nd.Proxy.Heal()
		}
	}
	settle(ctx, o, watchers, t0, time.Until(deadlineOf(ctx, 5*time.Second)), r)
	r.ServerCPU = cpuSince(nodes, before)
	errorsOf(all, r)
	if !r.Exact {
		return fmt.Errorf("heal: %d views not exact", r.Inexact)
	}
	return nil
}

func (r *ClusterReport) print(w io.Writer) {
	d := func(x Duration) time.Duration { return time.Duration(x).Round(time.Millisecond) }
	fmt.Fprintf(w, "%s: %d nodes (%s), topics %s; %d presences, %d views of %d keys each\n",
		r.Scenario, r.Nodes, strings.Join(r.NodeFlags, " "), strings.Join(r.Topics, ","), r.Members, r.Watchers, r.Keys)
	fmt.Fprintf(w, "  fill: every view exact %v after %s (%.0f joins/s)\n", r.FillExact, d(r.Fill), r.FillRate)
	event := "the heal"
	if r.Scenario == ModeDeploy {
		event = "the stop"
		fmt.Fprintf(w, "  SIGTERM to %s: %d members moved to the others within %s, %d joined again (after the stop: %s)\n",
			r.Stopped, r.Moved, d(r.MoveWithin), r.MovedOK, r.MovedAfter)
		if r.StopErr != "" {
			fmt.Fprintf(w, "  stop: %s\n", r.StopErr)
		}
		fmt.Fprintf(w, "  key flaps seen by the %d other members: %d (in %d views); keys gone from a view: %d\n",
			r.Survivors, r.Flaps, r.FlapViews, r.Gone)
	} else {
		fmt.Fprintf(w, "  split: every node held the others down %s after the cut; views held their node's keys only after %s\n",
			d(r.SplitAfter), d(r.SplitViews))
	}
	if r.ExactAfter != nil {
		fmt.Fprintf(w, "  every view exact %s after %s\n", d(*r.ExactAfter), event)
	} else {
		fmt.Fprintf(w, "  NOT EXACT: %d views (keys held: %s, min %d)\n", r.Inexact, r.InexactKeys, r.InexactKeys.Min)
	}
	fmt.Fprintf(w, "  presence_diff per view from %s until a second after exact: %s; most in one second %d; presence_state per view at most %d\n",
		event, r.Frames, r.MaxPerSecond, r.States)
	fmt.Fprintf(w, "  the busiest view's presence_diff frames, ms after %s: %v\n", event, r.Busiest)
	names := make([]string, 0, len(r.ServerCPU))
	for k := range r.ServerCPU {
		names = append(names, k)
	}
	sort.Strings(names)
	var cpus []string
	for _, k := range names {
		cpus = append(cpus, fmt.Sprintf("%s %.2f s", k, r.ServerCPU[k]))
	}
	fmt.Fprintf(w, "  server CPU from %s on: %s\n", event, strings.Join(cpus, ", "))
	fmt.Fprintf(w, "  errors: refused %v, channel errors %d, parse errors %d, lost %d %s\n",
		r.Refused, r.ChanErrs, r.ParseErrs, r.Lost, r.LostErr)
}
