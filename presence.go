package presence

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/gopresence/presence/internal/jsonstr"
	"github.com/gopresence/presence/pubsub"
	"github.com/gopresence/presence/pubsub/membus"
	"github.com/gopresence/presence/tracker"
)

// Errors callers branch on.
var (
	// ErrAlreadyTracked: the (owner, topic, key) is tracked already.
	ErrAlreadyTracked = tracker.ErrAlreadyTracked
	// ErrNotTracked: Update of an (owner, topic, key) not tracked.
	ErrNotTracked = tracker.ErrNotTracked
	// ErrInvalidMeta: the meta is not a JSON object.
	ErrInvalidMeta = tracker.ErrInvalidMeta
	// ErrClosed: the Presence was shut down.
	ErrClosed = tracker.ErrClosed
)

// Entry is one key's presences: one meta per tracked connection.
type Entry struct {
	// Metas in (owner, key) order; each a JSON object with "phx_ref".
	Metas []json.RawMessage `json:"metas"`
	// Extra fields a Fetch hook adds next to "metas" (e.g. "user").
	Extra map[string]json.RawMessage `json:"-"`
}

// MarshalJSON writes {"metas": [...], ...Extra}.
func (e *Entry) MarshalJSON() ([]byte, error) { return e.AppendJSON(nil), nil }

// AppendJSON appends {"metas": [...], ...Extra} to b, Extra's keys sorted.
func (e *Entry) AppendJSON(b []byte) []byte {
	b = append(b, `{"metas":[`...)
	for i, m := range e.Metas {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m...)
	}
	b = append(b, ']')
	if len(e.Extra) > 0 {
		keys := make([]string, 0, len(e.Extra))
		for k := range e.Extra {
			if k != "metas" {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			b = append(b, ',')
			b = jsonstr.Append(b, k)
			b = append(b, ':')
			b = append(b, e.Extra[k]...)
		}
	}
	return append(b, '}')
}

// size estimates the length of s's JSON (exact without escapes or Extra).
func (s State) size() int {
	n := 0
	for k, e := range s {
		n += len(k) + len(`"":{"metas":[]},`)
		for _, m := range e.Metas {
			n += len(m) + 1
		}
	}
	return n
}

// State maps each key of a topic to its entry; json.Marshal gives the
// payload of Phoenix's presence_state.
type State map[string]*Entry

// Diff is one change of a topic; json.Marshal gives the payload of
// Phoenix's presence_diff: {"joins": {...}, "leaves": {...}}. An update
// shows the key in both, the new meta (with phx_ref_prev) in joins and the
// old one in leaves.
type Diff struct {
	Topic string
	// Joins and Leaves are nil when empty.
	Joins  State
	Leaves State
	// Online lists, sorted, the keys that had no meta before this diff and
	// have one after (the user came online).
	Online []string
	// Offline lists, sorted, the keys that had metas before and none after
	// (the user went offline).
	Offline []string
	// Keys and Metas count the topic's keys and metas after the diff, as
	// the subscribers see the topic (zero in the diffs HandleMetas gets).
	Keys, Metas int
}

// MarshalJSON writes the presence_diff payload.
func (d Diff) MarshalJSON() ([]byte, error) { return d.AppendJSON(nil), nil }

// AppendJSON appends the presence_diff payload to b: {"joins": {...},
// "leaves": {...}}, keys sorted. phx encodes a Diff with it (a
// phx.JSONAppender), without encoding/json.
func (d Diff) AppendJSON(b []byte) []byte {
	if b == nil {
		b = make([]byte, 0, 32+d.Joins.size()+d.Leaves.size())
	}
	b = append(b, `{"joins":`...)
	b = d.Joins.AppendJSON(b)
	b = append(b, `,"leaves":`...)
	b = d.Leaves.AppendJSON(b)
	return append(b, '}')
}

// MarshalJSON writes s as a JSON object ({} when s is nil).
func (s State) MarshalJSON() ([]byte, error) { return s.AppendJSON(nil), nil }

// AppendJSON appends s to b as a JSON object, keys sorted ({} when s is
// nil): the presence_state payload. phx encodes a State with it (a
// phx.JSONAppender), without encoding/json.
func (s State) AppendJSON(b []byte) []byte {
	if b == nil {
		b = make([]byte, 0, 2+s.size())
	}
	b = append(b, '{')
	switch len(s) {
	case 0:
	case 1:
		for k, e := range s {
			b = jsonstr.Append(b, k)
			b = append(b, ':')
			b = e.AppendJSON(b)
		}
	default:
		keys := make([]string, 0, len(s))
		for k := range s {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonstr.Append(b, k)
			b = append(b, ':')
			b = s[k].AppendJSON(b)
		}
	}
	return append(b, '}')
}

// FetchFunc enriches listed presences (Phoenix's fetch/2): it receives a
// topic's grouped presences and returns them, typically with Extra fields
// filled in from one batched lookup. It must keep Metas. It is called by
// List and Get, and for the joins and the leaves of every diff (from the
// diff goroutine: keep it fast).
type FetchFunc func(topic string, s State) State

// Config configures a Presence. A zero field means its default.
type Config struct {
	// Tracker configures replication. A nil Tracker.Bus means a private
	// in-process bus: one node, nothing replicated.
	Tracker tracker.Config
	// Fetch enriches listed presences; nil keeps them as they are.
	Fetch FetchFunc
	// HandleMetas, when set, is Phoenix's handle_metas/4 (the "Elixir
	// presence client"): after each diff of a topic has reached the
	// subscribers, it is called with the diff and the topic's presences
	// after it, as key → metas in join order (empty when the topic emptied).
	// The map is the callback's to keep. Called from the diff goroutine, in
	// order, never concurrently; only diffs seen since Start are reflected.
	HandleMetas func(topic string, d Diff, presences map[string][]json.RawMessage)
	// DiffWindow bounds how long a busy topic's changes are held so that
	// they go to the subscribers as one diff, net of what cancelled out (a
	// meta that joined and left inside the window is never sent; a
	// reconnect, the old meta leaving and a new one joining, is one diff).
	// A change that follows the topic's last diff by more than the window
	// goes at once; the window grows with the topic, 1 ms per key, up to
	// DiffWindow (DefaultDiffWindow, 100 ms, gives a topic of 100 keys or
	// more at most 10 diffs a second). Zero sends every change alone, as
	// Phoenix does.
	DiffWindow time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Presence is the Presence API of one node.
type Presence struct {
	cfg     Config
	tr      *tracker.Tracker
	ownBus  pubsub.Bus
	mu      sync.RWMutex
	hubs    map[string]*topicHub // the topics with subscribers
	countMu sync.Mutex
	counts  map[topicKey]int   // (topic, key) → visible metas, while > 0
	totals  map[string]*[2]int // topic → keys, metas (see Counts)

	metasMu sync.Mutex
	metas   map[string]map[string][]json.RawMessage // for HandleMetas: topic → key → metas
}

type subscription struct {
	fn func(Diff)
}

// New builds a Presence; Start runs it.
func New(cfg Config) (*Presence, error) {
	p := &Presence{cfg: cfg, hubs: map[string]*topicHub{}, counts: map[topicKey]int{}, totals: map[string]*[2]int{}}
	if cfg.Logger == nil {
		p.cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tc := cfg.Tracker
	if tc.Bus == nil {
		name, _ := os.Hostname()
		if name == "" {
			name = "presence"
		}
		p.ownBus = membus.New(name)
		tc.Bus = p.ownBus
	}
	if tc.Logger == nil {
		tc.Logger = p.cfg.Logger
	}
	tr, err := tracker.New(tc, p.handleDiff)
	if err != nil {
		if p.ownBus != nil {
			p.ownBus.Close()
		}
		return nil, err
	}
	p.tr = tr
	return p, nil
}

// Tracker is the replication engine underneath (for cluster status).
func (p *Presence) Tracker() *tracker.Tracker { return p.tr }

// Start starts replication; it returns once the node is announced.
func (p *Presence) Start(ctx context.Context) error { return p.tr.Start(ctx) }

// Shutdown stops gracefully (see tracker.Tracker.Shutdown) and closes a
// private bus.
func (p *Presence) Shutdown(ctx context.Context) error {
	err := p.tr.Shutdown(ctx)
	if p.ownBus != nil {
		p.ownBus.Close()
	}
	return err
}

// Close stops at once.
func (p *Presence) Close() error {
	err := p.tr.Close()
	if p.ownBus != nil {
		p.ownBus.Close()
	}
	return err
}

// Track adds a presence: owner (one connection, one channel) under key in
// topic, with meta (a JSON object). It returns the phx_ref.
func (p *Presence) Track(ctx context.Context, owner, topic, key string, meta json.RawMessage) (string, error) {
	return p.tr.Track(ctx, owner, topic, key, meta)
}

// Update replaces the meta of a presence (no merge with the previous one)
// and returns the new phx_ref.
func (p *Presence) Update(ctx context.Context, owner, topic, key string, meta json.RawMessage) (string, error) {
	return p.tr.Update(ctx, owner, topic, key, meta)
}

// UpdateFunc is Update with a function of the previous meta.
func (p *Presence) UpdateFunc(ctx context.Context, owner, topic, key string, fn func(prev json.RawMessage) (json.RawMessage, error)) (string, error) {
	return p.tr.UpdateFunc(ctx, owner, topic, key, fn)
}

// Untrack removes a presence; a no-op when it is not tracked.
func (p *Presence) Untrack(ctx context.Context, owner, topic, key string) error {
	return p.tr.Untrack(ctx, owner, topic, key)
}

// UntrackOwner removes every presence of owner, in every topic (the
// connection closed).
func (p *Presence) UntrackOwner(ctx context.Context, owner string) error {
	return p.tr.UntrackOwner(ctx, owner)
}

// Flush waits until every change of topic made before the call has been
// handed to the topic's subscribers (Subscribe) as a Diff, or ctx is done.
// Changes reach subscribers asynchronously; a caller that must know its
// leave was announced before it goes on flushes.
// A window holding them is sent at once.
func (p *Presence) Flush(ctx context.Context, topic string) error {
	if err := p.tr.Flush(ctx, topic); err != nil {
		return err
	}
	p.mu.RLock()
	h := p.hubs[topic]
	p.mu.RUnlock()
	if h != nil {
		p.send(h)
	}
	return nil
}

// Settle waits until every change of topic made before the call has
// reached the topic's window, or ctx is done: a quiet topic's are then
// handed to the subscribers, a busy topic's go with its window. A channel
// settles its own join before taking the Snapshot a new member gets, so
// that in a quiet topic the member finds itself in it, as in Phoenix.
func (p *Presence) Settle(ctx context.Context, topic string) error {
	return p.tr.Flush(ctx, topic)
}

func group(ps []tracker.Presence) State {
	if len(ps) == 0 {
		return nil
	}
	s := make(State, min(len(ps), 8))
	for _, x := range ps {
		e := s[x.Key]
		if e == nil {
			e = &Entry{}
			s[x.Key] = e
		}
		e.Metas = append(e.Metas, x.Meta)
	}
	return s
}

func (p *Presence) fetch(topic string, s State) State {
	if p.cfg.Fetch == nil || len(s) == 0 {
		return s
	}
	return p.checkFetched(topic, p.cfg.Fetch(topic, s))
}

// checkFetched keeps what a Fetch hook returned from breaking the frames
// (they are written without re-encoding, see AppendJSON): a nil entry is
// dropped, an Extra value that is not valid JSON is dropped, each logged.
func (p *Presence) checkFetched(topic string, s State) State {
	for k, e := range s {
		if e == nil {
			p.cfg.Logger.Error("presence: Fetch returned a nil entry; dropped", "topic", topic, "key", k)
			delete(s, k)
			continue
		}
		for x, v := range e.Extra {
			if !json.Valid(v) {
				p.cfg.Logger.Error("presence: Fetch returned an Extra field that is not JSON; dropped", "topic", topic, "key", k, "field", x)
				delete(e.Extra, x)
			}
		}
	}
	return s
}

// List returns the presences of topic grouped by key (the presence_state
// payload). It never waits behind replication.
func (p *Presence) List(topic string) State {
	s := p.fetch(topic, group(p.tr.List(topic)))
	if s == nil {
		s = State{}
	}
	return s
}

// Get returns one key's entry in topic, or nil.
func (p *Presence) Get(topic, key string) *Entry {
	ps := p.tr.Get(topic, key)
	if len(ps) == 0 {
		return nil
	}
	return p.fetch(topic, group(ps))[key]
}

// Count returns the number of metas in topic.
func (p *Presence) Count(topic string) int { return p.tr.Count(topic) }

// Subscribe calls fn with the diffs of topic, in order, never two at once:
// each one the net change since the previous (see Config.DiffWindow), with
// Online and Offline relative to it too. fn is called from the tracker's
// diff goroutine or a window's timer and must not block; the Diff is
// shared with the other subscribers and must not be modified. fn may
// call cancel. The returned cancel is idempotent; after it returns fn is
// not called again… except for a call already under way.
func (p *Presence) Subscribe(topic string, fn func(Diff)) (cancel func()) {
	s := &subscription{fn: fn}
	for {
		p.mu.Lock()
		h := p.hubs[topic]
		if h == nil {
			// Installed locked, and filled after p.mu is released: the
			// listing takes the shard's lock, which must not hold up every
			// topic's diffs. A diff of the topic meanwhile waits for h.mu
			// and is skipped if the listing holds it.
			h = newHub(topic)
			h.mu.Lock()
			p.hubs[topic] = h
			p.mu.Unlock()
			h.fill(p.tr.ListAt(topic))
		} else {
			p.mu.Unlock()
			h.mu.Lock()
			if h.dead { // its last subscriber just left: make a new one
				h.mu.Unlock()
				continue
			}
		}
		h.subs = append(h.subs, s)
		h.mu.Unlock()
		var once sync.Once
		return func() { once.Do(func() { p.unsubscribe(h, s) }) }
	}
}

func (p *Presence) unsubscribe(h *topicHub, s *subscription) {
	h.mu.Lock()
	if i := slices.Index(h.subs, s); i >= 0 {
		h.subs = slices.Delete(slices.Clone(h.subs), i, i+1)
	}
	last := len(h.subs) == 0 && !h.dead
	if last {
		h.dead = true
		if h.timer != nil {
			h.timer.Stop()
		}
	}
	h.mu.Unlock()
	if last {
		p.mu.Lock()
		if p.hubs[h.topic] == h {
			delete(p.hubs, h.topic)
		}
		p.mu.Unlock()
	}
}

// handleDiff runs on a shard's diff goroutine.
func (p *Presence) handleDiff(ds []tracker.Diff) {
	for _, d := range ds {
		online, offline := p.count(d)
		p.mu.RLock()
		h := p.hubs[d.Topic]
		p.mu.RUnlock()
		if h != nil {
			p.merge(h, d)
		}
		if p.cfg.HandleMetas != nil {
			p.handleMetas(d, Diff{Topic: d.Topic, Joins: p.fetch(d.Topic, group(d.Joins)),
				Leaves: p.fetch(d.Topic, group(d.Leaves)), Online: online, Offline: offline})
		}
	}
}

// merge adds d to h's window, and sends the window at once if the topic's
// last diff is older than the window, else when it is.
func (p *Presence) merge(h *topicHub, d tracker.Diff) {
	h.deliver.Lock()
	defer h.deliver.Unlock()
	h.mu.Lock()
	if h.dead {
		h.mu.Unlock()
		return
	}
	h.add(d)
	if h.timer != nil { // a send is due already
		h.mu.Unlock()
		return
	}
	now := time.Now()
	wait := time.Duration(0)
	if p.cfg.DiffWindow > 0 {
		wait = h.last.Add(h.window(p.cfg.DiffWindow)).Sub(now)
	}
	if wait > 0 {
		h.timerGen++
		gen := h.timerGen
		h.timer = time.AfterFunc(wait, func() { p.sendTimer(h, gen) })
		h.mu.Unlock()
		return
	}
	p.sendLocked(h, now)
}

// send hands h's window to its subscribers now.
func (p *Presence) send(h *topicHub) {
	h.deliver.Lock()
	defer h.deliver.Unlock()
	h.mu.Lock()
	if h.timer != nil {
		h.timer.Stop()
		h.timer = nil
	}
	if h.dead {
		h.mu.Unlock()
		return
	}
	p.sendLocked(h, time.Now())
}

// sendTimer is send at the end of the window of timer number gen, unless
// a send came first (then h has no timer, or a later one, and the window is
// not over).
func (p *Presence) sendTimer(h *topicHub, gen uint64) {
	h.deliver.Lock()
	defer h.deliver.Unlock()
	h.mu.Lock()
	if h.timer == nil || h.timerGen != gen || h.dead {
		h.mu.Unlock()
		return
	}
	h.timer = nil
	p.sendLocked(h, time.Now())
}

// sendLocked takes h's window into the view and calls the subscribers
// with it; h.deliver and h.mu are held, and h.mu is released.
func (p *Presence) sendLocked(h *topicHub, now time.Time) {
	out, ok := h.take()
	subs := h.subs
	if ok {
		h.last = now
	}
	h.mu.Unlock()
	if !ok {
		return
	}
	// A panic in a hook or a subscriber is logged and survived, as the
	// tracker does on its own goroutine: on a window's timer it would end
	// the process.
	defer func() {
		if r := recover(); r != nil {
			p.cfg.Logger.Error("presence: a subscriber or the Fetch hook panicked", "topic", h.topic, "panic", r)
		}
	}()
	out.Joins = p.fetch(h.topic, out.Joins)
	out.Leaves = p.fetch(h.topic, out.Leaves)
	for _, s := range subs {
		s.fn(out)
	}
}

// Snapshot returns topic's presence_state as its subscribers' diffs left
// it: what a new member of the topic must get, subscribed beforehand, so
// that the diffs after it neither miss nor repeat a change (List runs
// ahead of the diffs, see topicHub). It is encoded once per version of the
// topic and shared: every member that joins while it is current gets the
// same bytes. Without subscribers it is List, encoded.
func (p *Presence) Snapshot(topic string) EncodedState {
	p.mu.RLock()
	h := p.hubs[topic]
	p.mu.RUnlock()
	if h != nil {
		h.mu.Lock()
		if !h.dead {
			if h.state == nil {
				h.state = p.fetch(topic, h.stateOf()).AppendJSON(nil)
			}
			b := h.state
			h.mu.Unlock()
			return EncodedState(b[:len(b):len(b)])
		}
		h.mu.Unlock()
	}
	return EncodedState(p.List(topic).AppendJSON(nil))
}

// ViewCounts returns the keys and metas of topic in its Snapshot (Counts
// when it has no subscribers).
func (p *Presence) ViewCounts(topic string) (keys, metas int) {
	p.mu.RLock()
	h := p.hubs[topic]
	p.mu.RUnlock()
	if h != nil {
		h.mu.Lock()
		dead := h.dead
		keys, metas = len(h.view), h.metas
		h.mu.Unlock()
		if !dead {
			return keys, metas
		}
	}
	return p.Counts(topic)
}

// EncodedState is a presence_state payload, encoded (a phx.JSONAppender).
// Read-only: it may be shared.
type EncodedState []byte

// AppendJSON appends the payload to b.
func (s EncodedState) AppendJSON(b []byte) []byte {
	if b == nil {
		return s // phx copies it into the frame
	}
	return append(b, s...)
}

// MarshalJSON returns the payload.
func (s EncodedState) MarshalJSON() ([]byte, error) { return s, nil }

// handleMetas keeps the per-topic metas of Phoenix's presence client:
// joined metas are appended (unless already there), left ones removed,
// empty keys and topics dropped.
func (p *Presence) handleMetas(d tracker.Diff, out Diff) {
	p.metasMu.Lock() // shards deliver from their own goroutines
	defer p.metasMu.Unlock()
	if p.metas == nil {
		p.metas = map[string]map[string][]json.RawMessage{}
	}
	keys := p.metas[d.Topic]
	if keys == nil {
		keys = map[string][]json.RawMessage{}
	}
	for _, x := range d.Joins {
		if !slices.ContainsFunc(keys[x.Key], func(m json.RawMessage) bool { return bytes.Equal(m, x.Meta) }) {
			keys[x.Key] = append(keys[x.Key], x.Meta)
		}
	}
	for _, x := range d.Leaves {
		list := slices.DeleteFunc(keys[x.Key], func(m json.RawMessage) bool { return bytes.Equal(m, x.Meta) })
		if len(list) == 0 {
			delete(keys, x.Key)
		} else {
			keys[x.Key] = list
		}
	}
	if len(keys) == 0 {
		delete(p.metas, d.Topic)
	} else {
		p.metas[d.Topic] = keys
	}
	cp := make(map[string][]json.RawMessage, len(keys))
	for k, v := range keys {
		cp[k] = slices.Clone(v)
	}
	p.cfg.HandleMetas(d.Topic, out, cp)
}

// count keeps the number of visible metas per key and says which keys
// came online or went offline.
func (p *Presence) count(d tracker.Diff) (online, offline []string) {
	p.countMu.Lock()
	defer p.countMu.Unlock()
	keys := p.counts
	// before holds each touched key's count before the diff. A diff
	// touches one key or a few, so a slice does; past a few (a peer down
	// may leave thousands) a map finds them.
	var small [4]keyCount
	before := small[:0]
	var seen map[string]bool
	for i, n := 0, len(d.Joins)+len(d.Leaves); i < n; i++ {
		k, delta := "", 1
		if i < len(d.Joins) {
			k = d.Joins[i].Key
		} else {
			k, delta = d.Leaves[i-len(d.Joins)].Key, -1
		}
		switch {
		case seen != nil:
			if !seen[k] {
				seen[k] = true
				before = append(before, keyCount{k, keys[topicKey{d.Topic, k}]})
			}
		case !slices.ContainsFunc(before, func(x keyCount) bool { return x.k == k }):
			before = append(before, keyCount{k, keys[topicKey{d.Topic, k}]})
			if len(before) > 8 {
				seen = make(map[string]bool, 16)
				for _, x := range before {
					seen[x.k] = true
				}
			}
		}
		keys[topicKey{d.Topic, k}] += delta
	}
	for _, x := range before {
		k, b := x.k, x.n
		a := keys[topicKey{d.Topic, k}]
		switch {
		case b == 0 && a > 0:
			online = append(online, k)
		case b > 0 && a <= 0:
			offline = append(offline, k)
		}
		if a <= 0 {
			delete(keys, topicKey{d.Topic, k})
		}
	}
	if dk, dm := len(online)-len(offline), len(d.Joins)-len(d.Leaves); dk != 0 || dm != 0 {
		t := p.totals[d.Topic]
		if t == nil {
			t = &[2]int{}
			p.totals[d.Topic] = t
		}
		t[0] += dk
		t[1] += dm
		if t[1] <= 0 {
			delete(p.totals, d.Topic)
		}
	}
	slices.Sort(online)
	slices.Sort(offline)
	return online, offline
}

// topicKey is a key in a topic. One map of them costs ~50 bytes a key;
// a map of keys per topic cost 250 bytes or more a topic.
type topicKey struct{ topic, key string }

type keyCount struct {
	k string
	n int
}

// Sync waits until every diff produced so far reached the subscribers,
// sending the windows that hold some at once.
func (p *Presence) Sync() {
	p.tr.Sync()
	p.mu.RLock()
	hubs := make([]*topicHub, 0, len(p.hubs))
	for _, h := range p.hubs {
		hubs = append(hubs, h)
	}
	p.mu.RUnlock()
	for _, h := range hubs {
		p.send(h)
	}
}

// Counts returns the keys and the metas of topic as the diffs so far left
// them, kept up to date with every diff on every node (never a scan).
func (p *Presence) Counts(topic string) (keys, metas int) {
	p.countMu.Lock()
	defer p.countMu.Unlock()
	if t := p.totals[topic]; t != nil {
		return t[0], t[1]
	}
	return 0, 0
}

// Replicas lists the peer replicas this node knows.
func (p *Presence) Replicas() []tracker.ReplicaStatus { return p.tr.Replicas() }
