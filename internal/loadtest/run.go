package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/gopresence/presence/internal/phxframe"
)

// Defaults of Options.
const (
	DefaultURL         = "ws://127.0.0.1:4000/socket/websocket"
	DefaultMaxPerProc  = 15000
	DefaultPerIP       = 10000
	DefaultSrcFirst    = 2
	DefaultConcurrency = 64
	DefaultTimeout     = 5 * time.Minute
	DefaultHeartbeat   = 30 * time.Second
)

// Options configures a Run. A zero field means its default.
type Options struct {
	// Mode is ModeIdle, ModeFanout, ModeJoins or ModeRoom.
	Mode string
	// URL of the WebSocket endpoint. Default DefaultURL.
	URL string
	// AllowRemote permits a non-loopback URL (default: refused).
	AllowRemote bool
	// Clients: idle clients, fanout subscribers, joins connections, or
	// room members.
	Clients int
	// Procs is the number of worker processes; default
	// ceil(Clients / MaxPerProc). One process holds at most ~19k sockets
	// here (20,000 open files).
	Procs      int
	MaxPerProc int
	// Clients bind to 127.0.0.SrcFirst, SrcFirst+1, …, PerIP clients each
	// (one source address reaches ~28k ports). SrcFirst < 0: no binding.
	SrcFirst int
	PerIP    int
	// Concurrency is the number of dials (and joins) in flight per worker.
	Concurrency int
	// ServerPID is the process to read RSS and CPU from (/proc); 0 finds
	// the process listening on the URL's port; < 0 reads none.
	ServerPID int
	// Timeout bounds the whole run; workers exit by themselves at the
	// deadline. Default 5 min.
	Timeout time.Duration
	// Heartbeat is the clients' heartbeat period. Default 30 s.
	Heartbeat time.Duration

	// Idle: clients join room:<i % Rooms> (default 100) with a meta padded
	// with MetaPad bytes (room: the same meta); once every client has joined, the server's RSS
	// is sampled every second for Settle (default 10 s), then the clients
	// stay for Hold.
	Rooms   int
	MetaPad int
	Settle  time.Duration
	Hold    time.Duration

	// Fanout: Clients watchers join Topic (default "room:fanout"; room:
	// "room:big"); one
	// changer (in this process) tracks itself there, then sends Changes
	// (default 50) presence:update every Interval (default 250 ms).
	Topic    string
	Changes  int
	Interval time.Duration
	// WorkerNice is the nice value of the worker processes (0–19); -1
	// (the flag's default) means 19 in fanout mode and 0 otherwise. In
	// fanout the workers only read: at nice 19 they take the CPU only
	// when the server leaves it, as clients on machines of their own
	// would. Not in joins mode, where the workers pace the joins (a
	// starved pacer would send late and hide the latency).
	WorkerNice int

	// Joins: Rate joins/s in total (default 20,000) for Run (default
	// 10 s) round robin over Clients connections, to Topics topics
	// (default 100,000); a connection leaves its oldest channel when it
	// has MaxChannels (default 100, the server's default limit). After
	// Run, up to Drain (default 10 s) for the last replies.
	Rate        float64
	Run         time.Duration
	Topics      int
	MaxChannels int
	Drain       time.Duration

	// Room: the Clients connect, then join Topic once each, with a meta,
	// at Rate joins/s in total (default 1,000); each keeps its own copy of
	// the topic's presences (PresenceMode "full", the default) or asks for
	// counts ("count": "presence": {"mode": "count"} in the join payload,
	// presence_count events expected). The run waits until every copy
	// holds the Clients keys, or until 3 s before Timeout.
	PresenceMode string

	// Deploy and heal (ClusterReport): the tool starts Nodes (default 3)
	// presenced processes of the binary Presenced with NodeFlags, and
	// holds every member in this process. Deploy: Clients members of
	// Topic (default room:deploy), joining at Rate per second (default
	// 1,000); the last node stops gracefully and its members reconnect
	// within MoveWithin (default 2 s). Heal: Clients sockets per node,
	// each tracked in HealTopics topics (default 10) in presence mode
	// none, Rate joins per second in all, and Watchers (default 5) views
	// per node and topic.
	Presenced  string
	Nodes      int
	NodeFlags  []string
	MoveWithin time.Duration
	HealTopics int
	Watchers   int

	// Spawn starts a worker; default ExecSpawner of this executable.
	Spawn Spawner
	// Log receives progress lines; nil discards.
	Log io.Writer
}

// WorkerHandle is a started worker: commands go to In, WorkerMsg lines
// come from Out, Wait waits for its end.
type WorkerHandle struct {
	In   io.WriteCloser
	Out  io.Reader
	Wait func() error
	// PID is the worker's process (0: this process), for CPU figures.
	PID int
}

// Spawner starts one worker for job.
type Spawner func(ctx context.Context, job Job) (*WorkerHandle, error)

// WorkerFlag is the flag by which ExecSpawner hands a Job (JSON) to the
// re-executed binary, which must then call RunWorker.
const WorkerFlag = "worker-job"

// ExecSpawner runs path (default: this executable) with -worker-job=<job>;
// the worker's stderr goes to this process's stderr.
func ExecSpawner(path string) Spawner {
	return func(ctx context.Context, job Job) (*WorkerHandle, error) {
		if path == "" {
			p, err := os.Executable()
			if err != nil {
				return nil, err
			}
			path = p
		}
		b, err := json.Marshal(job)
		if err != nil {
			return nil, err
		}
		cmd := exec.CommandContext(ctx, path, "-"+WorkerFlag+"="+string(b))
		cmd.Stderr = os.Stderr
		cmd.WaitDelay = 5 * time.Second
		in, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		return &WorkerHandle{In: in, Out: out, Wait: cmd.Wait, PID: cmd.Process.Pid}, nil
	}
}

// InProcessSpawner runs workers as goroutines of this process (tests,
// small runs).
func InProcessSpawner() Spawner {
	return func(ctx context.Context, job Job) (*WorkerHandle, error) {
		inR, inW := io.Pipe()
		outR, outW := io.Pipe()
		done := make(chan error, 1)
		go func() {
			err := RunWorker(ctx, job, inR, outW)
			outW.CloseWithError(io.EOF)
			inR.Close()
			done <- err
		}()
		return &WorkerHandle{In: inW, Out: outR, Wait: func() error { return <-done }}, nil
	}
}

// Report is the outcome of a Run.
type Report struct {
	Mode       string    `json:"mode"`
	URL        string    `json:"url"`
	Clients    int       `json:"clients"`
	Procs      int       `json:"procs"`
	Connected  int       `json:"connected"`
	Joined     int       `json:"joined"`
	Failed     int       `json:"failed"`
	FirstErr   string    `json:"first_err,omitempty"`
	Lost       int       `json:"lost"` // connections the server closed during the run
	LostReason string    `json:"lost_reason,omitempty"`
	Frames     int64     `json:"frames"`
	Bytes      int64     `json:"bytes"`
	ServerPID  int       `json:"server_pid,omitempty"`
	Setup      Duration  `json:"setup"` // time to connect (and join) every client
	Started    time.Time `json:"started"`

	Idle    *IdleReport    `json:"idle,omitempty"`
	Fanout  *FanoutReport  `json:"fanout,omitempty"`
	Joins   *JoinsReport   `json:"joins,omitempty"`
	Room    *RoomReport    `json:"room,omitempty"`
	Cluster *ClusterReport `json:"cluster,omitempty"`
}

// Duration marshals as a string such as "1.5s".
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// IdleReport is the memory measurement.
type IdleReport struct {
	RSSBefore int64   `json:"rss_before"`
	RSSAfter  int64   `json:"rss_after"` // last sample of the settle period
	RSSMin    int64   `json:"rss_min"`   // over the settle period
	RSSMax    int64   `json:"rss_max"`
	HWM       int64   `json:"rss_peak"` // VmHWM: peak RSS of the server
	PerClient float64 `json:"per_client_bytes"`
	// Tracked is the number of metas the server lists in the rooms
	// (GET /api/v1/topics/room:<i>), -1 if it could not be read.
	Tracked   int     `json:"tracked"`
	ServerFDs int     `json:"server_fds"`
	Threads   int     `json:"server_threads"`
	Series    []int64 `json:"rss_series"`
}

// FanoutReport is the presence_diff latency measurement.
type FanoutReport struct {
	Subscribers int `json:"subscribers"`
	Changes     int `json:"changes"`
	// Deliveries: every (subscriber, change) latency, from the changer's
	// send to the frame's arrival in the subscriber's socket (the
	// kernel's receive timestamp, SO_TIMESTAMPNS; the read time where
	// there is none).
	Deliveries Dist `json:"deliveries"`
	// Read: the same, to the subscriber's read of the frame (which adds
	// the load tool's own scheduling on the shared cores).
	Read Dist `json:"read"`
	// Complete: per change, the latency of its last subscriber.
	Complete Dist `json:"complete"`
	Missing  int  `json:"missing"` // deliveries that never came
	// Extra counts deliveries beyond one per subscriber and change.
	Extra int `json:"extra"`
	// PerChange lists, for each change, its deliveries and the latency of
	// its last one (ms).
	PerChange []ChangeStat `json:"per_change"`
	// CPU is the machine's CPU use during the changes.
	CPU CPUUse `json:"cpu"`
}

// ChangeStat is one fanout change.
type ChangeStat struct {
	Deliveries int     `json:"deliveries"`
	Last       float64 `json:"last_ms"`
}

// JoinsReport is the join throughput measurement.
type JoinsReport struct {
	Conns       int            `json:"conns"`
	Offered     float64        `json:"offered_per_s"`
	Run         Duration       `json:"run"`
	Topics      int            `json:"topics"`
	Sent        int            `json:"sent"`
	OK          int            `json:"ok"`
	Errors      int            `json:"errors"`
	ErrReasons  map[string]int `json:"err_reasons,omitempty"`
	Unanswered  int            `json:"unanswered"`
	Leaves      int            `json:"leaves"`
	Achieved    float64        `json:"joins_per_s"` // OK / (last reply − start)
	LastReplyAt Duration       `json:"last_reply_at"`
	Latency     Dist           `json:"latency"`
	Windows     []JoinWindow   `json:"windows"`
	CPU         CPUUse         `json:"cpu"` // over the run
	RSSStart    int64          `json:"rss_start"`
	RSSEnd      int64          `json:"rss_end"`
}

// JoinWindow is one second of a joins run.
type JoinWindow struct {
	Second  int     `json:"second"`
	Sent    int     `json:"ok_sent"` // ok joins sent in this second
	Replied int     `json:"replied"` // ok replies received in this second
	P50     float64 `json:"p50_ms"`  // of the joins sent in this second
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
	RSS     int64   `json:"server_rss,omitempty"`
	CPU     CPUUse  `json:"cpu"`
}

type workerState struct {
	h      *WorkerHandle
	job    Job
	msgs   chan WorkerMsg
	last   WorkerMsg
	ready  bool
	result *WorkerMsg
}

func (o *Options) defaults() error {
	if o.URL == "" {
		o.URL = DefaultURL
	}
	if o.MaxPerProc <= 0 {
		o.MaxPerProc = DefaultMaxPerProc
	}
	if o.PerIP <= 0 {
		o.PerIP = DefaultPerIP
	}
	if o.SrcFirst == 0 {
		o.SrcFirst = DefaultSrcFirst
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.Rooms <= 0 {
		o.Rooms = 100
	}
	if o.Settle <= 0 {
		o.Settle = 10 * time.Second
	}
	if o.WorkerNice < 0 || o.WorkerNice > 19 {
		o.WorkerNice = 0
		if o.Mode == ModeFanout {
			o.WorkerNice = 19
		}
	}
	if o.Topic == "" {
		o.Topic = "room:fanout"
		if o.Mode == ModeRoom {
			o.Topic = "room:big"
		}
	}
	if o.Changes <= 0 {
		o.Changes = 50
	}
	if o.Interval <= 0 {
		o.Interval = 250 * time.Millisecond
	}
	if o.Rate <= 0 {
		o.Rate = 20000
		if o.Mode == ModeRoom {
			o.Rate = 1000
		}
	}
	if o.Run <= 0 {
		o.Run = 10 * time.Second
	}
	if o.Topics <= 0 {
		o.Topics = 100000
	}
	if o.MaxChannels <= 0 {
		o.MaxChannels = 100
	}
	if o.Drain <= 0 {
		o.Drain = 10 * time.Second
	}
	if o.Spawn == nil {
		o.Spawn = ExecSpawner("")
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	switch o.Mode {
	case ModeIdle, ModeFanout, ModeJoins, ModeRoom:
	default:
		return fmt.Errorf("unknown mode %q (idle, fanout, joins, room, deploy, heal)", o.Mode)
	}
	switch o.PresenceMode {
	case "":
		o.PresenceMode = PresenceFull
	case PresenceFull, PresenceCount:
	default:
		return fmt.Errorf("unknown presence mode %q (full, count)", o.PresenceMode)
	}
	if o.Clients <= 0 {
		return errors.New("clients must be > 0")
	}
	if o.Mode == ModeJoins && o.Topics <= o.MaxChannels {
		return errors.New("topics must exceed max-channels (a connection never joins one topic twice)")
	}
	return nil
}

// Run performs one measurement and returns its report. It never runs
// longer than Options.Timeout (plus a few seconds to stop the workers).
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Mode == ModeDeploy || o.Mode == ModeHeal {
		return runCluster(ctx, o)
	}
	if err := o.defaults(); err != nil {
		return nil, err
	}
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "ws" {
		return nil, fmt.Errorf("url %q: only ws:// is supported", o.URL)
	}
	loop := IsLoopbackHost(u.Hostname())
	if !loop && !o.AllowRemote {
		return nil, fmt.Errorf("url %q is not a loopback address (pass -allow-remote to load another host)", o.URL)
	}
	if o.ServerPID == 0 {
		port, _ := strconv.Atoi(u.Port())
		if port == 0 {
			port = 80
		}
		if pid, err := FindListener(port); err == nil {
			o.ServerPID = pid
		} else {
			fmt.Fprintf(o.Log, "server process not found (%v): no RSS/CPU figures\n", err)
			o.ServerPID = -1
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()

	procs := o.Procs
	if procs <= 0 {
		procs = (o.Clients + o.MaxPerProc - 1) / o.MaxPerProc
	}
	procs = min(procs, o.Clients)
	var srcs []string
	if o.SrcFirst > 0 && loop {
		ips, err := SourceIPs(o.SrcFirst, (o.Clients+o.PerIP-1)/o.PerIP)
		if err != nil {
			return nil, err
		}
		for _, ip := range ips {
			srcs = append(srcs, ip.String())
		}
	}
	rep := &Report{Mode: o.Mode, URL: o.URL, Clients: o.Clients, Procs: procs, Started: time.Now()}
	if o.ServerPID > 0 {
		rep.ServerPID = o.ServerPID
	}
	netStart, netErr := ReadNetCounters()
	var before ProcStats
	if o.ServerPID > 0 {
		if before, err = ReadProc(o.ServerPID); err != nil {
			return nil, fmt.Errorf("server pid %d: %w", o.ServerPID, err)
		}
		fmt.Fprintf(o.Log, "server pid %d: RSS %s, %d fds, %d threads\n", o.ServerPID, MiB(before.RSS), before.FDs, before.Threads)
	}

	// Start the workers (they exit by themselves at the deadline, a few
	// seconds after ours so that we can still collect their results).
	workers := make([]*workerState, 0, procs)
	defer func() {
		for _, w := range workers {
			w.h.In.Close()
		}
		for _, w := range workers {
			w.h.Wait()
		}
	}()
	first := 0
	for p := range procs {
		n := o.Clients / procs
		if p < o.Clients%procs {
			n++
		}
		job := Job{Mode: o.Mode, URL: o.URL, First: first, Clients: n, SrcIPs: srcs, PerIP: o.PerIP,
			Concurrency: o.Concurrency, Rooms: o.Rooms, MetaPad: o.MetaPad, Topic: o.Topic,
			Total: o.Clients, PresenceMode: o.PresenceMode,
			Topics: o.Topics, MaxChannels: o.MaxChannels, Run: o.Run, Drain: o.Drain,
			Rate: o.Rate * float64(n) / float64(o.Clients), Heartbeat: o.Heartbeat,
			Nice: o.WorkerNice, Deadline: deadline.Add(3 * time.Second)}
		first += n
		h, err := o.Spawn(ctx, job)
		if err != nil {
			return nil, fmt.Errorf("worker %d: %w", p, err)
		}
		ws := &workerState{h: h, job: job, msgs: make(chan WorkerMsg, 16)}
		workers = append(workers, ws)
		go func() {
			defer close(ws.msgs)
			dec := json.NewDecoder(bufio.NewReaderSize(h.Out, 1<<20))
			for {
				var m WorkerMsg
				if err := dec.Decode(&m); err != nil {
					return
				}
				ws.msgs <- m
			}
		}()
	}
	fmt.Fprintf(o.Log, "%s: %d clients in %d worker(s), source addresses %v\n", o.Mode, o.Clients, procs, srcs)

	// Wait until every worker is ready.
	t0 := time.Now()
	if err := waitWorkers(ctx, workers, "ready", o.Log); err != nil {
		return nil, err
	}
	rep.Setup = Duration(time.Since(t0))
	for _, w := range workers {
		rep.Connected += w.last.Connected
		rep.Joined += w.last.Joined
		rep.Failed += w.last.Failed
		if rep.FirstErr == "" {
			rep.FirstErr = w.last.Err
		}
	}
	fmt.Fprintf(o.Log, "ready after %s: %d connected, %d joined, %d failed %s\n",
		time.Since(t0).Round(time.Millisecond), rep.Connected, rep.Joined, rep.Failed, rep.FirstErr)

	var merr error
	switch o.Mode {
	case ModeIdle:
		rep.Idle, merr = measureIdle(ctx, &o, u, before)
	case ModeFanout:
		rep.Fanout, merr = runChanger(ctx, &o, u, loadPIDs(workers))
	case ModeJoins:
		rep.Joins, merr = runJoins(ctx, &o, workers)
	case ModeRoom:
		rep.Room, merr = runRoom(ctx, &o, workers, netStart, netErr)
	}

	for _, w := range workers {
		io.WriteString(w.h.In, cmdStop+"\n")
	}
	if err := waitWorkers(ctx, workers, "result", o.Log); err != nil && merr == nil {
		merr = err
	}
	var results []*WorkerResult
	for _, w := range workers {
		if w.result == nil || w.result.Result == nil {
			continue
		}
		r := w.result.Result
		results = append(results, r)
		rep.Lost += r.Lost
		if rep.LostReason == "" {
			rep.LostReason = r.LostReason
		}
		rep.Frames += r.Frames
		rep.Bytes += r.Bytes
	}
	switch {
	case rep.Fanout != nil:
		summarizeFanout(rep.Fanout, results, o.Clients-rep.Failed)
	case rep.Joins != nil:
		summarizeJoins(rep.Joins, results, &o)
	case rep.Room != nil:
		summarizeRoom(rep.Room, results)
		rep.Joined = rep.Room.OK
	}
	return rep, merr
}

// loadPIDs are this process and the worker processes.
func loadPIDs(workers []*workerState) []int {
	pids := []int{os.Getpid()}
	for _, w := range workers {
		if w.h.PID > 0 {
			pids = append(pids, w.h.PID)
		}
	}
	return pids
}

// waitWorkers waits for a message of type typ from every worker, logging
// progress every second.
func waitWorkers(ctx context.Context, workers []*workerState, typ string, log io.Writer) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		pending := 0
		for _, w := range workers {
			for done := false; !done; {
				select {
				case m, ok := <-w.msgs:
					if !ok {
						if typ == "ready" && !w.ready || typ == "result" && w.result == nil {
							return fmt.Errorf("a worker ended before %q (see its stderr)", typ)
						}
						done = true
						continue
					}
					w.last = m
					switch m.Type {
					case "ready":
						w.ready = true
					case "result":
						w.result = &m
					}
				default:
					done = true
				}
			}
			if typ == "ready" && !w.ready || typ == "result" && w.result == nil {
				pending++
			}
		}
		if pending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d worker(s) to be %s: %w", pending, typ, ctx.Err())
		case <-tick.C:
			if typ == "ready" {
				c, j, f := 0, 0, 0
				for _, w := range workers {
					c, j, f = c+w.last.Connected, j+w.last.Joined, f+w.last.Failed
				}
				fmt.Fprintf(log, "  connected %d, joined %d, failed %d\n", c, j, f)
			}
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// measureIdle samples the server's RSS for the settle period.
func measureIdle(ctx context.Context, o *Options, u *url.URL, before ProcStats) (*IdleReport, error) {
	r := &IdleReport{RSSBefore: before.RSS, Tracked: -1}
	if n, err := countTracked(ctx, u, o.Rooms); err == nil {
		r.Tracked = n
	} else {
		fmt.Fprintf(o.Log, "cannot count tracked presences: %v\n", err)
	}
	if o.ServerPID <= 0 {
		return r, sleepCtx(ctx, o.Settle+o.Hold)
	}
	end := time.Now().Add(o.Settle)
	for {
		st, err := ReadProc(o.ServerPID)
		if err != nil {
			return r, err
		}
		r.Series = append(r.Series, st.RSS)
		r.RSSAfter, r.HWM, r.ServerFDs, r.Threads = st.RSS, st.HWM, st.FDs, st.Threads
		if r.RSSMin == 0 || st.RSS < r.RSSMin {
			r.RSSMin = st.RSS
		}
		r.RSSMax = max(r.RSSMax, st.RSS)
		fmt.Fprintf(o.Log, "  server RSS %s (%s per client)\n", MiB(st.RSS), KiB(float64(st.RSS-before.RSS)/float64(o.Clients)))
		if !time.Now().Before(end) {
			break
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return r, err
		}
	}
	r.PerClient = float64(r.RSSAfter-r.RSSBefore) / float64(o.Clients)
	return r, sleepCtx(ctx, o.Hold)
}

// countTracked sums the metas the server lists in room:0..rooms-1
// (presenced's GET /api/v1/topics/{topic}).
func countTracked(ctx context.Context, u *url.URL, rooms int) (int, error) {
	cl := &http.Client{Timeout: 10 * time.Second}
	total := 0
	for i := range rooms {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet,
			"http://"+u.Host+"/api/v1/topics/"+url.PathEscape("room:"+strconv.Itoa(i)), nil)
		resp, err := cl.Do(req)
		if err != nil {
			return 0, err
		}
		var st map[string]struct {
			Metas []json.RawMessage `json:"metas"`
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		if err != nil {
			return 0, err
		}
		for _, e := range st {
			total += len(e.Metas)
		}
	}
	return total, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runChanger is the fanout's changer: it joins the topic with a meta, then
// sends o.Changes presence:update, each meta carrying its number and send
// time ("lt": "<n>/<unix nanos>").
func runChanger(ctx context.Context, o *Options, u *url.URL, load []int) (*FanoutReport, error) {
	r := &FanoutReport{Subscribers: o.Clients, Changes: o.Changes}
	var ip net.IP
	if o.SrcFirst > 0 && IsLoopbackHost(u.Hostname()) {
		ip = net.IPv4(127, 0, 0, 1)
	}
	c, err := Dial(ctx, DialOptions{URL: u, LocalIP: ip, Params: url.Values{"user_id": {"changer"}}})
	if err != nil {
		return r, fmt.Errorf("changer: %w", err)
	}
	defer c.Close()
	replies := make(chan string, o.Changes+2)
	var rd sync.WaitGroup
	rd.Add(1)
	go func() {
		defer rd.Done()
		defer close(replies)
		for {
			_, data, err := c.ReadMessage()
			if err != nil {
				return
			}
			if f, err := ParseV2(data); err == nil && f.Event == "phx_reply" && f.Ref != "" && f.Ref[0] == 'c' {
				select {
				case replies <- ReplyStatus(f.Payload):
				default:
				}
			}
		}
	}()
	defer rd.Wait()
	defer c.Close()
	meta := func(n int) []byte {
		return fmt.Appendf(nil, `{"meta":{"status":"online","lt":"%d/%d"}}`, n, time.Now().UnixNano())
	}
	if err := c.WriteText(phxframe.Append(nil, "c0", "c0", o.Topic, "phx_join", meta(0))); err != nil {
		return r, err
	}
	if st := <-replies; st != "ok" {
		return r, fmt.Errorf("changer join: %q", st)
	}
	// Let the join's own diff reach everyone before timing.
	if err := sleepCtx(ctx, time.Second); err != nil {
		return r, err
	}
	meter := StartCPUMeter(o.ServerPID, load)
	for n := 1; n <= o.Changes; n++ {
		ref := "c" + strconv.Itoa(n)
		if err := c.WriteText(phxframe.Append(nil, "c0", ref, o.Topic, "presence:update", meta(n))); err != nil {
			return r, err
		}
		if err := sleepCtx(ctx, o.Interval); err != nil {
			return r, err
		}
	}
	r.CPU = meter.Stop()
	bad := 0
	for n := 1; n <= o.Changes; n++ {
		select {
		case st, ok := <-replies:
			if !ok {
				return r, errors.New("changer: connection lost")
			}
			if st != "ok" {
				bad++
			}
		case <-time.After(5 * time.Second):
			return r, errors.New("changer: update replies missing")
		}
	}
	if bad > 0 {
		return r, fmt.Errorf("changer: %d updates refused", bad)
	}
	// The last diffs may still be on their way.
	return r, sleepCtx(ctx, 2*time.Second)
}

func summarizeFanout(r *FanoutReport, results []*WorkerResult, subscribers int) {
	var all, read []int32
	last := make([]int32, r.Changes+1)
	count := make([]int, r.Changes+1)
	for _, w := range results {
		for i, s := range w.DiffSeq {
			if s < 1 || int(s) > r.Changes {
				continue
			}
			l := w.DiffLat[i]
			all = append(all, l)
			if i < len(w.DiffReadLat) {
				read = append(read, w.DiffReadLat[i])
			}
			count[s]++
			last[s] = max(last[s], l)
		}
	}
	r.Deliveries = Summarize(all)
	r.Read = Summarize(read)
	var comp []int32
	for n := 1; n <= r.Changes; n++ {
		r.Missing += max(0, subscribers-count[n])
		r.Extra += max(0, count[n]-subscribers)
		r.PerChange = append(r.PerChange, ChangeStat{Deliveries: count[n], Last: float64(last[n]) / 1e3})
		if count[n] > 0 {
			comp = append(comp, last[n])
		}
	}
	r.Complete = Summarize(comp)
}

// runJoins starts the workers' pacers together and samples the server
// every second until the run and the drain are over.
func runJoins(ctx context.Context, o *Options, workers []*workerState) (*JoinsReport, error) {
	r := &JoinsReport{Conns: o.Clients, Offered: o.Rate, Run: Duration(o.Run), Topics: o.Topics}
	if per := o.Rate / float64(o.Clients); per > 10 {
		fmt.Fprintf(o.Log, "warning: %.1f joins/s per connection exceeds the server's default JoinRate (10/s): expect \"too many joins\"\n", per)
	}
	start := time.Now().Add(500 * time.Millisecond)
	for _, w := range workers {
		fmt.Fprintf(w.h.In, "%s %d\n", cmdGo, start.UnixNano())
	}
	if o.ServerPID > 0 {
		if st, err := ReadProc(o.ServerPID); err == nil {
			r.RSSStart = st.RSS
		}
	}
	if err := sleepCtx(ctx, time.Until(start)); err != nil {
		return r, err
	}
	load := loadPIDs(workers)
	all := StartCPUMeter(o.ServerPID, load)
	for s := 0; s < int((o.Run+time.Second-1)/time.Second); s++ {
		m := StartCPUMeter(o.ServerPID, load)
		if err := sleepCtx(ctx, time.Until(start.Add(time.Duration(s+1)*time.Second))); err != nil {
			return r, err
		}
		w := JoinWindow{Second: s, CPU: m.Stop()}
		if o.ServerPID > 0 {
			if st, err := ReadProc(o.ServerPID); err == nil {
				w.RSS = st.RSS
			}
		}
		r.Windows = append(r.Windows, w)
		fmt.Fprintf(o.Log, "  t=%ds server RSS %s, %s\n", s+1, MiB(w.RSS), w.CPU)
	}
	r.CPU = all.Stop()
	if o.ServerPID > 0 {
		if st, err := ReadProc(o.ServerPID); err == nil {
			r.RSSEnd = st.RSS
		}
	}
	return r, nil
}

func summarizeJoins(r *JoinsReport, results []*WorkerResult, o *Options) {
	var lat []int32
	nw := len(r.Windows)
	wins := make([][]int32, nw)
	replied := make([]int, nw+int(o.Drain/time.Second)+2)
	var last int64
	for _, w := range results {
		r.Sent += w.JoinsSent
		r.OK += w.JoinsOK
		r.Errors += w.JoinsErr
		r.Unanswered += w.Unanswered
		r.Leaves += w.LeavesSent
		addCounts(&r.ErrReasons, w.ErrReasons)
		lat = append(lat, w.JoinLat...)
		for i, at := range w.JoinSentAt {
			l := w.JoinLat[i]
			if s := int(at / 1e6); s >= 0 && s < nw {
				wins[s] = append(wins[s], l)
			}
			done := int64(at) + int64(l)
			last = max(last, done)
			if s := int(done / 1e6); s >= 0 && s < len(replied) {
				replied[s]++
			}
		}
	}
	for s := range nw {
		d := Summarize(wins[s])
		r.Windows[s].Sent = d.N
		r.Windows[s].Replied = replied[s]
		r.Windows[s].P50 = float64(d.P50) / 1e6
		r.Windows[s].P99 = float64(d.P99) / 1e6
		r.Windows[s].Max = float64(d.Max) / 1e6
	}
	r.Latency = Summarize(lat)
	r.LastReplyAt = Duration(time.Duration(last) * time.Microsecond)
	if last > 0 {
		r.Achieved = float64(r.OK) / (float64(last) / 1e6)
	}
}

// Print writes a human-readable summary of rep.
func (rep *Report) Print(w io.Writer) {
	if rep.Cluster != nil {
		rep.Cluster.print(w)
		return
	}
	fmt.Fprintf(w, "mode %s, %s, %d clients in %d worker process(es)\n", rep.Mode, rep.URL, rep.Clients, rep.Procs)
	fmt.Fprintf(w, "connected %d, joined %d, failed %d; lost during the run %d %s\n",
		rep.Connected, rep.Joined, rep.Failed, rep.Lost, rep.LostReason)
	if rep.FirstErr != "" {
		fmt.Fprintf(w, "first error: %s\n", rep.FirstErr)
	}
	fmt.Fprintf(w, "setup %s; received %d frames, %s\n", time.Duration(rep.Setup).Round(time.Millisecond), rep.Frames, MiB(rep.Bytes))
	if r := rep.Idle; r != nil {
		fmt.Fprintf(w, "server pid %d: RSS before %s, after %s (min %s, max %s over the settle period; peak %s)\n",
			rep.ServerPID, MiB(r.RSSBefore), MiB(r.RSSAfter), MiB(r.RSSMin), MiB(r.RSSMax), MiB(r.HWM))
		fmt.Fprintf(w, "tracked presences listed: %d; server fds %d, threads %d\n", r.Tracked, r.ServerFDs, r.Threads)
		fmt.Fprintf(w, "RSS per client: %s (%.0f bytes)\n", KiB(r.PerClient), r.PerClient)
	}
	if r := rep.Fanout; r != nil {
		fmt.Fprintf(w, "presence_diff to %d subscribers, %d changes\n", r.Subscribers, r.Changes)
		fmt.Fprintf(w, "  during the changes: %s\n", r.CPU)
		fmt.Fprintf(w, "  every delivery, send → arrival in the subscriber's socket: %s\n", r.Deliveries)
		fmt.Fprintf(w, "  every delivery, send → read by the subscriber:            %s\n", r.Read)
		fmt.Fprintf(w, "  last subscriber, per change: %s\n", r.Complete)
		fmt.Fprintf(w, "  missing deliveries: %d, extra: %d\n", r.Missing, r.Extra)
		fmt.Fprintf(w, "  per change (deliveries/last ms):")
		for _, c := range r.PerChange {
			fmt.Fprintf(w, " %d/%.1f", c.Deliveries, c.Last)
		}
		fmt.Fprintln(w)
	}
	if r := rep.Joins; r != nil {
		fmt.Fprintf(w, "joins: offered %.0f/s over %d connections for %s, %d topics\n", r.Offered, r.Conns, time.Duration(r.Run), r.Topics)
		fmt.Fprintf(w, "  sent %d, ok %d, errors %d %v, unanswered %d, leaves %d\n", r.Sent, r.OK, r.Errors, r.ErrReasons, r.Unanswered, r.Leaves)
		fmt.Fprintf(w, "  achieved %.0f joins/s (last reply at %s); server RSS %s → %s\n",
			r.Achieved, time.Duration(r.LastReplyAt).Round(time.Millisecond), MiB(r.RSSStart), MiB(r.RSSEnd))
		fmt.Fprintf(w, "  during the run: %s\n", r.CPU)
		fmt.Fprintf(w, "  join reply latency: %s\n", r.Latency)
		fmt.Fprintf(w, "  %-4s %8s %8s %9s %9s %9s %7s %7s %7s\n", "sec", "sent", "replied", "p50 ms", "p99 ms", "max ms", "server", "load", "other")
		for _, x := range r.Windows {
			fmt.Fprintf(w, "  %-4d %8d %8d %9.2f %9.2f %9.2f %7.2f %7.2f %7.2f\n", x.Second, x.Sent, x.Replied, x.P50, x.P99, x.Max,
				x.CPU.Server, x.CPU.Load, x.CPU.Other)
		}
	}
	if r := rep.Room; r != nil {
		r.print(w, rep)
	}

}
