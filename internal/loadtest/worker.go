package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopresence/presence/internal/phxframe"
)

// Modes of a run.
const (
	ModeIdle   = "idle"   // connect, join+track, stay idle (memory per client)
	ModeFanout = "fanout" // watchers of one topic, timed presence_diffs
	ModeJoins  = "joins"  // paced joins+tracks over many connections
	ModeRoom   = "room"   // paced joins+tracks of one topic, a copy of its presences per client
	ModeDeploy = "deploy" // a cluster of its own; one node stops gracefully, its members move
	ModeHeal   = "heal"   // a cluster of its own; the bus is cut until every node is alone, then healed
)

// Job is one worker's share of a run; the coordinator hands it to the
// worker as JSON.
type Job struct {
	Mode    string `json:"mode"`
	URL     string `json:"url"`
	First   int    `json:"first"`   // global index of this worker's first client
	Clients int    `json:"clients"` // clients (connections) of this worker
	// Source addresses: client i binds to SrcIPs[(i / PerIP) % len(SrcIPs)].
	SrcIPs []string `json:"src_ips"`
	PerIP  int      `json:"per_ip"`
	// Dials and joins in flight at once.
	Concurrency int `json:"concurrency"`
	// Idle: client i joins room:<i % Rooms> with a meta.
	Rooms   int `json:"rooms,omitempty"`
	MetaPad int `json:"meta_pad,omitempty"`
	// Fanout: every client joins Topic without a meta (a watcher).
	// Room: every client joins Topic with a meta, paced at Rate joins/s
	// (one join per client), and keeps a copy of the topic's presences
	// (PresenceMode full) or its presence_count (count); Total is the
	// number of clients of the whole run (the keys u0 … u<Total-1>).
	Topic        string `json:"topic,omitempty"`
	Total        int    `json:"total,omitempty"`
	PresenceMode string `json:"presence_mode,omitempty"`
	// Joins: this worker sends Rate joins/s for Run, round robin over its
	// connections, each join to room:j<n> with n in [0, Topics); a
	// connection with MaxChannels channels leaves its oldest first.
	Rate        float64       `json:"rate,omitempty"`
	Run         time.Duration `json:"run,omitempty"`
	Topics      int           `json:"topics,omitempty"`
	MaxChannels int           `json:"max_channels,omitempty"`
	Drain       time.Duration `json:"drain,omitempty"`
	// Nice is the worker's nice value (see Options.WorkerNice).
	Nice int `json:"nice,omitempty"`
	// Heartbeat is the client heartbeat period (phoenix.js: 30 s).
	Heartbeat time.Duration `json:"heartbeat"`
	// Deadline: the worker closes everything and exits by then, whatever
	// happens.
	Deadline time.Time `json:"deadline"`
}

// WorkerMsg is one line a worker writes to its coordinator.
type WorkerMsg struct {
	Type      string        `json:"type"` // "progress", "ready", "result"
	Connected int           `json:"connected"`
	Joined    int           `json:"joined"`
	Failed    int           `json:"failed"`
	Err       string        `json:"err,omitempty"` // first error
	Room      *RoomProgress `json:"room,omitempty"`
	Result    *WorkerResult `json:"result,omitempty"`
}

// WorkerResult is what a worker measured.
type WorkerResult struct {
	// Connections the server closed (or that failed) during the run.
	Lost       int    `json:"lost"`
	LostReason string `json:"lost_reason,omitempty"`
	Frames     int64  `json:"frames"`
	Bytes      int64  `json:"bytes"`
	// Fanout: for each received presence_diff of the changer, its change
	// number and the latency in µs (send by the changer → read here).
	DiffSeq     []int32 `json:"diff_seq,omitempty"`
	DiffLat     []int32 `json:"diff_lat,omitempty"`      // to the arrival in the socket
	DiffReadLat []int32 `json:"diff_read_lat,omitempty"` // to the read
	// Joins.
	JoinsSent   int            `json:"joins_sent,omitempty"`
	JoinsOK     int            `json:"joins_ok,omitempty"`
	JoinsErr    int            `json:"joins_err,omitempty"`
	ErrReasons  map[string]int `json:"err_reasons,omitempty"`
	LeavesSent  int            `json:"leaves_sent,omitempty"`
	Unanswered  int            `json:"unanswered,omitempty"`
	JoinSentAt  []int32        `json:"join_sent_at,omitempty"` // µs after the start
	JoinLat     []int32        `json:"join_lat,omitempty"`     // µs, ok joins
	LastReplyAt int64          `json:"last_reply_at,omitempty"`
	Room        *RoomResult    `json:"room,omitempty"`
}

// Worker commands (lines on the worker's input).
const (
	cmdGo   = "go"   // "go <unix nanos>": the joins (joins, room) start then
	cmdStop = "stop" // finish, report, close, exit
)

// RunWorker runs one worker: it reads commands from in and writes
// WorkerMsg lines to out. It returns when stopped, when in ends, or at the
// job's deadline.
func RunWorker(ctx context.Context, job Job, in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithDeadline(ctx, job.Deadline)
	defer cancel()
	u, err := url.Parse(job.URL)
	if err != nil {
		return err
	}
	w := &worker{job: job, u: u, enc: json.NewEncoder(out)}
	for _, s := range job.SrcIPs {
		ip := net.ParseIP(s)
		if ip == nil {
			return fmt.Errorf("bad source address %q", s)
		}
		w.ips = append(w.ips, ip)
	}
	if w.job.PerIP <= 0 {
		w.job.PerIP = 10000
	}
	if w.job.Concurrency <= 0 {
		w.job.Concurrency = 64
	}
	cmds := make(chan string, 4)
	go func() {
		defer close(cmds)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			select {
			case cmds <- strings.TrimSpace(sc.Text()):
			case <-ctx.Done():
				return
			}
		}
	}()

	if job.Nice > 0 {
		if err := renice(job.Nice); err != nil {
			return fmt.Errorf("nice %d: %w", job.Nice, err)
		}
	}
	if err := w.startPollers(); err != nil {
		return err
	}
	w.setup(ctx)
	w.send(WorkerMsg{Type: "ready", Connected: int(w.connected.Load()), Joined: int(w.joined.Load()),
		Failed: int(w.failed.Load()), Err: w.firstErr()})

	hbStop := make(chan struct{})
	var hbDone sync.WaitGroup
	hbDone.Add(1)
	go func() { defer hbDone.Done(); w.heartbeats(hbStop) }()

	var pacer sync.WaitGroup
	stopPacing := make(chan struct{})
	var stopOnce sync.Once
	stopPacer := func() { stopOnce.Do(func() { close(stopPacing) }) }
	var progress <-chan time.Time
	if job.Mode == ModeRoom {
		for _, c := range w.clients {
			if c != nil {
				w.roomLive.Add(1)
			}
		}
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		progress = t.C
	}
	started := false
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-progress:
			w.send(WorkerMsg{Type: "progress", Connected: int(w.connected.Load()), Joined: int(w.joined.Load()),
				Failed: int(w.failed.Load()), Err: w.firstErr(), Room: w.roomProgress()})
		case c, ok := <-cmds:
			if !ok || c == cmdStop {
				break wait
			}
			rest, ok := strings.CutPrefix(c, cmdGo+" ")
			if !ok || started || job.Mode != ModeJoins && job.Mode != ModeRoom {
				continue
			}
			started = true
			ns, _ := strconv.ParseInt(rest, 10, 64)
			w.start.Store(ns)
			pacer.Add(1)
			go func() {
				defer pacer.Done()
				if job.Mode == ModeRoom {
					w.paceRoom(ctx, time.Unix(0, ns), stopPacing)
				} else {
					w.paceJoins(ctx, time.Unix(0, ns), stopPacing)
				}
			}()
		}
	}
	stopPacer()
	pacer.Wait()
	if job.Mode == ModeJoins {
		w.drain(ctx)
	}
	close(hbStop)
	hbDone.Wait()
	// Close, then wait for the readers: their per-client records are
	// only read after they are done.
	w.closing.Store(true)
	w.stopPollers()
	for _, c := range w.clients {
		if c != nil {
			c.conn.Close()
		}
	}
	w.readers.Wait()
	res := w.result()
	w.send(WorkerMsg{Type: "result", Connected: int(w.connected.Load()), Joined: int(w.joined.Load()),
		Failed: int(w.failed.Load()), Err: w.firstErr(), Result: res})
	return nil
}

type worker struct {
	job Job
	u   *url.URL
	ips []net.IP

	emu sync.Mutex
	enc *json.Encoder

	clients   []*client
	pollers   []*poller
	readers   sync.WaitGroup
	connected atomic.Int64
	joined    atomic.Int64
	failed    atomic.Int64
	closing   atomic.Bool
	start     atomic.Int64 // joins, room: unix nanos of the start

	// room
	roomLive, roomSent, roomSendErrs  atomic.Int64
	roomReplied, roomOK, roomComplete atomic.Int64

	errMu sync.Mutex
	err   string
	lost  atomic.Int64
	lostR atomic.Value // string
}

func (w *worker) send(m WorkerMsg) {
	w.emu.Lock()
	defer w.emu.Unlock()
	w.enc.Encode(m)
}

func (w *worker) noteErr(err error) {
	w.errMu.Lock()
	if w.err == "" {
		w.err = err.Error()
	}
	w.errMu.Unlock()
}

func (w *worker) firstErr() string {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

// client is one connection of the load.
type client struct {
	idx  int // global index
	conn *Conn

	frames, bytes int64 // reader only

	// fanout (reader only)
	diffSeq, diffLat, diffReadLat []int32

	room *roomClient // room mode

	// joins: mu guards the sending side and pending replies.
	mu      sync.Mutex
	k       int      // joins sent
	open    []opened // channels joined (oldest first)
	pending []pend   // join replies awaited, in order
	hb      int
	leaves  int
	// reader only
	ok, bad             int
	reasons             map[string]int
	joinSentAt, joinLat []int32
	lastReply           int64
}

type opened struct{ topic, joinRef string }

type pend struct {
	n    int
	sent int64 // unix nanos
}

// setup dials every client and, in the idle and fanout modes, joins it.
func (w *worker) setup(ctx context.Context) {
	w.clients = make([]*client, w.job.Clients)
	idx := make(chan int)
	var wg sync.WaitGroup
	for range min(w.job.Concurrency, w.job.Clients) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				if c, err := w.open(ctx, w.job.First+i); err != nil {
					w.failed.Add(1)
					w.noteErr(err)
				} else {
					w.clients[i] = c
				}
			}
		}()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
feed:
	for i := range w.job.Clients {
		for {
			select {
			case idx <- i:
				continue feed
			case <-tick.C:
				w.send(WorkerMsg{Type: "progress", Connected: int(w.connected.Load()),
					Joined: int(w.joined.Load()), Failed: int(w.failed.Load())})
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(idx)
	wg.Wait()
}

// open dials client i and joins it (idle, fanout), then starts its reader.
func (w *worker) open(ctx context.Context, i int) (*client, error) {
	var ip net.IP
	if len(w.ips) > 0 {
		ip = w.ips[(i/w.job.PerIP)%len(w.ips)]
	}
	conn, err := Dial(ctx, DialOptions{URL: w.u, LocalIP: ip,
		Params: url.Values{"user_id": {"u" + strconv.Itoa(i)}}})
	if err != nil {
		return nil, err
	}
	w.connected.Add(1)
	c := &client{idx: i, conn: conn}
	if w.job.Mode == ModeRoom {
		c.room = &roomClient{view: roomView{n: w.job.Total}}
	}
	var topic string
	var payload []byte
	switch w.job.Mode {
	case ModeIdle:
		topic = "room:" + strconv.Itoa(i%max(w.job.Rooms, 1))
		payload = fmt.Appendf(nil, `{"meta":{"status":"online","n":%d,"pad":%q}}`, i, strings.Repeat("x", w.job.MetaPad))
	case ModeFanout:
		topic = w.job.Topic
		payload = []byte(`{}`)
	}
	if topic != "" {
		if err := conn.WriteText(phxframe.Append(nil, "1", "1", topic, "phx_join", payload)); err != nil {
			conn.Close()
			return nil, err
		}
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				conn.Close()
				return nil, fmt.Errorf("join %s: %w", topic, err)
			}
			c.frames++
			c.bytes += int64(len(data))
			f, err := ParseV2(data)
			if err != nil {
				conn.Close()
				return nil, err
			}
			if f.Event == "phx_reply" && f.Ref == "1" {
				if st := ReplyStatus(f.Payload); st != "ok" {
					conn.Close()
					return nil, fmt.Errorf("join %s: %s %s", topic, st, f.Payload)
				}
				break
			}
		}
		conn.SetReadDeadline(time.Time{})
		w.joined.Add(1)
	}
	if err := w.startReading(c); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// read consumes everything the server sends to c until the connection
// ends (the reader used where there is no poller).
func (w *worker) read(c *client) {
	defer w.readers.Done()
	for {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			w.lose(err)
			return
		}
		now := time.Now().UnixNano()
		w.handle(c, data, now, now)
	}
}

// lose counts a connection lost during the run.
func (w *worker) lose(err error) {
	if !w.closing.Load() {
		w.lost.Add(1)
		w.lostR.CompareAndSwap(nil, err.Error())
	}
}

var (
	ltKey     = []byte(`"lt":"`)
	joinsKey  = []byte(`"joins":`)
	leavesKey = []byte(`"leaves":`)
)

// handle records one message from the server, which arrived in the socket
// at arrived and was read at now (unix nanos).
func (w *worker) handle(c *client, data []byte, arrived, now int64) {
	c.frames++
	c.bytes += int64(len(data))
	switch w.job.Mode {
	case ModeFanout:
		// [null,null,"topic","presence_diff",{"joins":{"k":{"metas":[{..."lt":"<seq>/<ns>"...}]}},...}]
		// Only the joins count (an update's leaves carry the previous
		// meta; the changer's final leave has joins {}).
		j := indexBytes(data, joinsKey)
		if j < 0 {
			return
		}
		in := data[j:]
		if l := indexBytes(in, leavesKey); l >= 0 {
			in = in[:l]
		}
		k := indexBytes(in, ltKey)
		if k < 0 {
			return
		}
		rest := in[k+len(ltKey):]
		seq, ns, ok := parseLT(rest)
		if !ok || seq == 0 {
			return
		}
		c.diffSeq = append(c.diffSeq, int32(seq))
		c.diffLat = append(c.diffLat, int32(min((arrived-ns)/1000, 1<<31-1)))
		c.diffReadLat = append(c.diffReadLat, int32(min((now-ns)/1000, 1<<31-1)))
	case ModeRoom:
		w.handleRoom(c, data, arrived, now)
	case ModeJoins:
		f, err := ParseV2(data)
		if err != nil || f.Event != "phx_reply" || !strings.HasPrefix(f.Ref, "j") {
			return
		}
		n, _ := strconv.Atoi(f.Ref[1:])
		c.mu.Lock()
		var p pend
		found := false
		for len(c.pending) > 0 {
			p = c.pending[0]
			c.pending = c.pending[1:]
			if p.n == n {
				found = true
				break
			}
		}
		c.mu.Unlock()
		if !found {
			return
		}
		c.lastReply = now
		if st := ReplyStatus(f.Payload); st == "ok" {
			c.ok++
			c.joinSentAt = append(c.joinSentAt, int32((p.sent-w.start.Load())/1000))
			c.joinLat = append(c.joinLat, int32(min((now-p.sent)/1000, 1<<31-1)))
		} else {
			c.bad++
			if c.reasons == nil {
				c.reasons = map[string]int{}
			}
			r := "?"
			if i := indexBytes(f.Payload, []byte(`"reason":"`)); i >= 0 {
				s := f.Payload[i+len(`"reason":"`):]
				if e := indexBytes(s, []byte(`"`)); e >= 0 {
					r = string(s[:e])
				}
			}
			c.reasons[r]++
		}
	}
}

func indexBytes(b, sub []byte) int { return bytes.Index(b, sub) }

// parseLT parses `<seq>/<unix nanos>"`.
func parseLT(b []byte) (seq int, ns int64, ok bool) {
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		seq = seq*10 + int(b[i]-'0')
		i++
	}
	if i == 0 || i >= len(b) || b[i] != '/' {
		return 0, 0, false
	}
	i++
	j := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		ns = ns*10 + int64(b[i]-'0')
		i++
	}
	return seq, ns, i > j
}

// heartbeats sends a phoenix heartbeat on every client each period, spread
// over the period.
func (w *worker) heartbeats(stop <-chan struct{}) {
	period := w.job.Heartbeat
	if period <= 0 {
		return
	}
	var live []*client
	for _, c := range w.clients {
		if c != nil {
			live = append(live, c)
		}
	}
	if len(live) == 0 {
		return
	}
	step := period / time.Duration(len(live))
	t := time.NewTimer(step)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		c := live[i%len(live)]
		c.mu.Lock()
		c.hb++
		ref := "h" + strconv.Itoa(c.hb)
		c.mu.Unlock()
		c.conn.WriteText(phxframe.Append(nil, "", ref, "phoenix", "heartbeat", []byte("{}")))
		t.Reset(step)
	}
}

// paceJoins sends the worker's joins from start for job.Run at job.Rate,
// round robin over the clients, until stop.
func (w *worker) paceJoins(ctx context.Context, start time.Time, stop <-chan struct{}) {
	live := w.live()
	if len(live) == 0 {
		return
	}
	var buf []byte
	pace(ctx, start, stop, w.job.Rate, -1, start.Add(w.job.Run), func(n int) {
		buf = w.sendJoin(live[n%len(live)], buf[:0])
	})
}

// paceRoom sends every client's join of the topic, once, from start at
// job.Rate, until stop.
func (w *worker) paceRoom(ctx context.Context, start time.Time, stop <-chan struct{}) {
	live := w.live()
	var buf []byte
	pace(ctx, start, stop, w.job.Rate, len(live), time.Time{}, func(n int) {
		buf = w.sendRoomJoin(live[n], buf[:0])
	})
}

// live lists the connected clients.
func (w *worker) live() []*client {
	var live []*client
	for _, c := range w.clients {
		if c != nil {
			live = append(live, c)
		}
	}
	return live
}

// pace calls send(n) for n = 0, 1, … at rate per second from start (the
// n-th at start + n/rate, open loop: a late pacer catches up at once),
// until count calls (count < 0: no bound), end (zero: none), stop or ctx.
func pace(ctx context.Context, start time.Time, stop <-chan struct{}, rate float64, count int, end time.Time, send func(n int)) {
	if rate <= 0 || count == 0 {
		return
	}
	interval := float64(time.Second) / rate
	t := time.NewTimer(time.Until(start))
	defer t.Stop()
	select {
	case <-t.C:
	case <-stop:
		return
	case <-ctx.Done():
		return
	}
	for n := 0; count < 0 || n < count; n++ {
		at := start.Add(time.Duration(float64(n) * interval))
		if !end.IsZero() && !at.Before(end) {
			return
		}
		if d := time.Until(at); d > time.Millisecond {
			// Sleep in ~1 ms steps at most; a late pacer catches up at once.
			t.Reset(d)
			select {
			case <-t.C:
			case <-stop:
				return
			case <-ctx.Done():
				return
			}
		} else {
			select {
			case <-stop:
				return
			default:
			}
		}
		send(n)
	}
}

// sendJoin sends the next join of c (leaving its oldest channel first if
// it has job.MaxChannels).
func (w *worker) sendJoin(c *client, buf []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.open) >= w.job.MaxChannels {
		o := c.open[0]
		c.open = c.open[1:]
		buf = phxframe.Append(buf, o.joinRef, "l"+o.joinRef[1:], o.topic, "phx_leave", []byte("{}"))
		if err := c.conn.WriteText(buf); err != nil {
			w.noteErr(err)
			return buf
		}
		c.leaves++
		buf = buf[:0]
	}
	c.k++
	n := c.k
	topic := "room:j" + strconv.Itoa((c.idx*7919+n)%w.job.Topics)
	ref := "j" + strconv.Itoa(n)
	buf = phxframe.Append(buf, ref, ref, topic, "phx_join",
		fmt.Appendf(nil, `{"meta":{"status":"online","c":%d,"n":%d}}`, c.idx, n))
	sent := time.Now().UnixNano()
	if err := c.conn.WriteText(buf); err != nil {
		w.noteErr(err)
		return buf
	}
	c.pending = append(c.pending, pend{n: n, sent: sent})
	c.open = append(c.open, opened{topic: topic, joinRef: ref})
	return buf
}

// drain waits until every join was answered, or job.Drain passed.
func (w *worker) drain(ctx context.Context) {
	end := time.Now().Add(w.job.Drain)
	for time.Now().Before(end) && ctx.Err() == nil {
		waiting := 0
		for _, c := range w.clients {
			if c == nil {
				continue
			}
			c.mu.Lock()
			waiting += len(c.pending)
			c.mu.Unlock()
		}
		if waiting == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (w *worker) result() *WorkerResult {
	r := &WorkerResult{Lost: int(w.lost.Load())}
	if s, ok := w.lostR.Load().(string); ok {
		r.LostReason = s
	}
	for _, c := range w.clients {
		if c == nil {
			continue
		}
		r.Frames += c.frames
		r.Bytes += c.bytes
		r.DiffSeq = append(r.DiffSeq, c.diffSeq...)
		r.DiffLat = append(r.DiffLat, c.diffLat...)
		r.DiffReadLat = append(r.DiffReadLat, c.diffReadLat...)
		r.JoinsSent += c.k
		r.JoinsOK += c.ok
		r.JoinsErr += c.bad
		r.Unanswered += len(c.pending)
		addCounts(&r.ErrReasons, c.reasons)
		r.JoinSentAt = append(r.JoinSentAt, c.joinSentAt...)
		r.JoinLat = append(r.JoinLat, c.joinLat...)
		r.LastReplyAt = max(r.LastReplyAt, c.lastReply)
		r.LeavesSent += c.leaves
	}
	if w.job.Mode == ModeRoom {
		r.Room = w.roomResult()
		// The room mode reports its join latencies there.
		r.JoinLat = nil
	}
	return r
}
