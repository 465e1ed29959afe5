package loadtest

import (
	"context"
	"math/rand/v2"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/gopresence/presence/internal/phxframe"
)

// member is one client of a cluster scenario, in this process: a
// WebSocket to one node, a channel in each of its topics and, when it
// watches, its copy of its first topic's presences kept by phoenix.js's
// rules (roomView) with the key flaps phoenix.js would report. A member
// whose node stops may move: it reconnects to another node after a random
// delay and joins again.
type member struct {
	user   string // the socket's user_id (its key when it joins with a meta)
	topics []string
	join   []byte // the join payload
	watch  bool   // keep a view of topics[0]

	mu        sync.Mutex
	conn      *Conn
	node      int
	view      roomView
	want      int   // keys the view must hold to be exact
	exactAt   int64 // arrival of the frame that made the view exact; 0: not exact
	diffs     []int64
	states    int
	joined    int
	refused   map[string]int
	chanErrs  int
	parseErrs int
	lost      error // the read error that ended the member
	moves     int
	// moveTo, when set, is where the member reconnects when its
	// connection ends, after a delay drawn uniformly below moveWithin.
	moveTo     *Node
	moveNode   int
	moveWithin time.Duration
	movedAt    int64 // the moved member's join ok
}

// memberPayload is a join payload: a meta with the status (tracked: a
// watcher joins without one) and the presence mode ("" or full: none
// given).
func memberPayload(tracked bool, mode string) []byte {
	if !tracked {
		return []byte("{}")
	}
	b := []byte(`{"meta":{"status":"online","device":"load"}`)
	if mode != "" && mode != PresenceFull {
		b = append(b, `,"presence":{"mode":"`+mode+`"}`...)
	}
	return append(b, '}')
}

// dial connects the member to nd (without joining).
func (m *member) dial(ctx context.Context, nd *Node) (*Conn, error) {
	return Dial(ctx, DialOptions{URL: nd.WS, Params: url.Values{"user_id": {m.user}}, ReadBufferSize: 64 << 10})
}

// sendJoins joins every topic of the member.
func (m *member) sendJoins(c *Conn) error {
	var b []byte
	for i, t := range m.topics {
		r := strconv.Itoa(i + 1)
		b = phxframe.Append(b[:0], r, r, t, "phx_join", m.join)
		if err := c.WriteText(b); err != nil {
			return err
		}
	}
	return nil
}

// read handles the member's frames until its connection ends, then moves
// it if it was told to, or records the loss.
func (m *member) read(ctx context.Context, rng *rand.Rand) {
	for {
		m.mu.Lock()
		c := m.conn
		m.mu.Unlock()
		var err error
		for {
			var data []byte
			if _, data, err = c.ReadMessage(); err != nil {
				break
			}
			m.handle(data, time.Now().UnixNano())
		}
		c.Close()
		m.mu.Lock()
		to, within := m.moveTo, m.moveWithin
		m.moveTo = nil
		if to == nil || ctx.Err() != nil {
			m.lost = err
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()
		delay := time.Duration(rng.Int64N(int64(max(within, 1))))
		if sleepCtx(ctx, delay) != nil {
			return
		}
		nc, err := m.dial(ctx, to)
		if err == nil {
			err = m.sendJoins(nc)
		}
		if err != nil {
			m.mu.Lock()
			m.lost = err
			m.mu.Unlock()
			return
		}
		m.mu.Lock()
		m.conn, m.node, m.moves = nc, m.moveNode, m.moves+1
		m.view.reset()
		m.view.synced, m.view.pending = false, nil
		m.exactAt = 0
		m.mu.Unlock()
	}
}

// handle applies one frame.
func (m *member) handle(data []byte, arrived int64) {
	f, err := phxframe.Scan(data)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.parseErrs++
		return
	}
	ours := m.watch && len(m.topics) > 0 && string(phxframe.Content(f.Topic)) == m.topics[0]
	switch string(phxframe.Content(f.Event)) {
	case "phx_reply":
		if ref := phxframe.Content(f.Ref); len(ref) == 0 || ref[0] < '1' || ref[0] > '9' {
			return // a heartbeat's
		}
		if ReplyStatus(f.Payload) == "ok" {
			m.joined++
			if m.moves > 0 {
				m.movedAt = arrived
			}
			return
		}
		if m.refused == nil {
			m.refused = map[string]int{}
		}
		m.refused[refusalReason(f.Payload)]++
	case "presence_state":
		if ours {
			m.states++
			if m.view.state(f.Payload) != nil {
				m.parseErrs++
			}
			m.checkExact(arrived)
		}
	case "presence_diff":
		if ours {
			m.diffs = append(m.diffs, arrived)
			if m.view.diff(f.Payload) != nil {
				m.parseErrs++
			}
			m.checkExact(arrived)
		}
	case "phx_error", "phx_close":
		m.chanErrs++
	}
}

// checkExact records when the view became exact: every one of the want
// keys u0 … u<want-1> with one meta, and nothing else. Holds m.mu.
func (m *member) checkExact(now int64) {
	v := &m.view
	if v.synced && v.keys == m.want && len(v.more) == 0 && len(v.other) == 0 && v.staleN == 0 {
		if m.exactAt == 0 {
			m.exactAt = now
		}
	} else {
		m.exactAt = 0
	}
}

// heartbeats sends each member a heartbeat every period until ctx ends:
// every 100 ms, to the members whose slot of the period has come, so
// that a late tick (a busy machine) delays the heartbeats but never
// skips one.
func heartbeats(ctx context.Context, ms []*member, period time.Duration) {
	if len(ms) == 0 || period <= 0 {
		return
	}
	const tick = 100 * time.Millisecond
	slots := max(int(period/tick), 1)
	t := time.NewTicker(tick)
	defer t.Stop()
	hb := phxframe.Append(nil, "", "h", "phoenix", "heartbeat", []byte("{}"))
	start, done := time.Now(), 0 // slots sent
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for due := int(time.Since(start) / tick); done < due; done++ {
			for i := done % slots; i < len(ms); i += slots {
				m := ms[i]
				m.mu.Lock()
				c := m.conn
				m.mu.Unlock()
				if c != nil {
					c.WriteText(hb)
				}
			}
		}
	}
}

// connectAll dials and joins the members at rate members per second (in
// order, to node of each), at most 64 dials in flight; it returns the
// first error.
func connectAll(ctx context.Context, ms []*member, nodes []*Node, rate float64, rng func() *rand.Rand) error {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	var once sync.Once
	var first error
	pace(ctx, time.Now(), nil, rate, len(ms), time.Time{}, func(i int) {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			m := ms[i]
			c, err := m.dial(ctx, nodes[m.node])
			if err == nil {
				m.mu.Lock()
				m.conn = c
				m.mu.Unlock()
				if err = m.sendJoins(c); err == nil {
					go m.read(ctx, rng())
					return
				}
				c.Close()
			}
			once.Do(func() { first = err })
		}()
	})
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// waitAll waits until ok holds for every member (checked every 10 ms),
// or within passes; it returns whether it held and the members for which
// it did not at the end.
func waitAll(ctx context.Context, ms []*member, within time.Duration, ok func(m *member) bool) (bool, []*member) {
	deadline := time.Now().Add(within)
	for {
		var bad []*member
		for _, m := range ms {
			m.mu.Lock()
			if !ok(m) {
				bad = append(bad, m)
			}
			m.mu.Unlock()
		}
		if len(bad) == 0 {
			return true, nil
		}
		if time.Now().After(deadline) || sleepCtx(ctx, 10*time.Millisecond) != nil {
			return false, bad
		}
	}
}

// setWant sets the keys every watcher's view must hold to be exact.
func setWant(ms []*member, want int) {
	now := time.Now().UnixNano()
	for _, m := range ms {
		m.mu.Lock()
		m.want = want
		m.exactAt = 0
		m.checkExact(now)
		m.mu.Unlock()
	}
}

// closeAll closes every member's connection.
func closeAll(ms []*member) {
	for _, m := range ms {
		m.mu.Lock()
		m.moveTo = nil
		if m.conn != nil {
			m.conn.Close()
		}
		m.mu.Unlock()
	}
}
