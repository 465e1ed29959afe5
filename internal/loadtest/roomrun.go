package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// RoomReport is the room measurement: N clients join one topic at a paced
// rate, each keeping its own copy of the topic's presences.
type RoomReport struct {
	Topic        string  `json:"topic"`
	PresenceMode string  `json:"presence_mode"`
	Clients      int     `json:"clients"`
	Live         int     `json:"live"` // connected when the joins started
	Offered      float64 `json:"offered_per_s"`

	Sent          int            `json:"joins_sent"`
	OK            int            `json:"joins_ok"`
	Refused       int            `json:"joins_refused"`
	RefuseReasons map[string]int `json:"refuse_reasons,omitempty"`
	Unanswered    int            `json:"joins_unanswered"`
	SendErrors    int            `json:"send_errors"`
	// SendRate: joins sent / (last send − start); Achieved: ok replies /
	// (last reply − start).
	SendRate    float64  `json:"sent_per_s"`
	Achieved    float64  `json:"joins_per_s"`
	LastSendAt  Duration `json:"last_send_at"`  // after the start
	LastReplyAt Duration `json:"last_reply_at"` // after the start (arrival)
	JoinLatency Dist     `json:"join_latency"`  // send → arrival of the ok reply

	// Complete: views complete at the end (full: holding all Clients
	// keys; count: the last presence_count is {keys: N, metas: N});
	// Incomplete: the other connected clients' views. TimedOut: the wait
	// ended at the deadline, not because every view was complete.
	Complete   int  `json:"complete"`
	Incomplete int  `json:"incomplete"`
	TimedOut   bool `json:"timed_out"`
	// Wave: from the start to the end of the wait.
	Wave Duration `json:"wave"`
	// Settle: from the last join reply (its arrival) to the arrival of
	// the frame that completed the last view; SettleRead: to that frame's
	// read. Only when every view completed.
	Settle     *Duration `json:"settle,omitempty"`
	SettleRead *Duration `json:"settle_read,omitempty"`
	// AllCompleteAt: the last view's completion, after the start.
	AllCompleteAt *Duration `json:"all_complete_at,omitempty"`
	// CompleteAfter: per complete view, its completion (arrival) after the
	// last join reply (negative: before it).
	CompleteAfter Dist `json:"complete_after_last_reply"`
	// IncompleteKeys: the keys the incomplete views held at the end.
	IncompleteKeys Counts `json:"incomplete_keys"`

	// Per client: frames and bytes (whole V2 messages) received.
	DiffFrames  Counts `json:"diff_frames"`
	DiffBytes   Counts `json:"diff_bytes"`
	StateFrames Counts `json:"state_frames"`
	StateBytes  Counts `json:"state_bytes"`
	CountFrames Counts `json:"count_frames"`
	CountBytes  Counts `json:"count_bytes"`
	// Updates: presence_diff and presence_count frames per client per
	// 1-s bucket of the wave (arrival time).
	Updates BucketSummary `json:"updates"`

	ParseErrors   int `json:"parse_errors"`
	ChannelErrors int `json:"channel_errors"` // phx_error, phx_close of the topic

	// The server over the wave.
	CPU       CPUUse  `json:"cpu"`
	ServerCPU float64 `json:"server_cpu_s"`
	RSSStart  int64   `json:"rss_start"`
	RSSEnd    int64   `json:"rss_end"`
	RSSMax    int64   `json:"rss_max"`  // sampled every second
	HWM       int64   `json:"rss_peak"` // VmHWM at the end: the process's peak RSS
	// The kernel's counters over the wave, and during the dials before it.
	Net      NetCounters `json:"net"`
	NetSetup NetCounters `json:"net_setup"`
	NetErr   string      `json:"net_err,omitempty"`

	start int64 // unix nanos
}

// Counts summarizes a per-client count.
type Counts struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean"`
	P50  int64   `json:"p50"`
	Max  int64   `json:"max"`
	Min  int64   `json:"min"`
}

// SummarizeCounts computes Counts of v (sorted in place).
func SummarizeCounts(v []int64) Counts {
	if len(v) == 0 {
		return Counts{}
	}
	slices.Sort(v)
	var sum float64
	for _, x := range v {
		sum += float64(x)
	}
	return Counts{N: len(v), Mean: sum / float64(len(v)), P50: v[(len(v)-1)/2], Max: v[len(v)-1], Min: v[0]}
}

func (c Counts) String() string {
	return fmt.Sprintf("mean %.1f, p50 %d, max %d", c.Mean, c.P50, c.Max)
}

// take records w's waiting messages without blocking; false if w's
// output ended.
func (w *workerState) take() bool {
	for {
		select {
		case m, ok := <-w.msgs:
			if !ok {
				return false
			}
			w.last = m
			switch m.Type {
			case "ready":
				w.ready = true
			case "result":
				w.result = &m
			}
		default:
			return true
		}
	}
}

// runRoom starts the workers' joins together and waits until every view
// is complete, or until 3 s before the run's deadline (which leaves the
// time to collect the results), sampling the server every second.
func runRoom(ctx context.Context, o *Options, workers []*workerState, netStart NetCounters, netErr error) (*RoomReport, error) {
	r := &RoomReport{Topic: o.Topic, PresenceMode: o.PresenceMode, Clients: o.Clients, Offered: o.Rate}
	net0, err := ReadNetCounters()
	if err == nil && netErr == nil {
		r.NetSetup = net0.Sub(netStart)
	}
	if err != nil {
		r.NetErr = err.Error()
	}
	start := time.Now().Add(500 * time.Millisecond)
	r.start = start.UnixNano()
	for _, w := range workers {
		fmt.Fprintf(w.h.In, "%s %d\n", cmdGo, start.UnixNano())
	}
	if err := sleepCtx(ctx, time.Until(start)); err != nil {
		return r, err
	}
	var ps0 ProcStats
	if o.ServerPID > 0 {
		if st, err := ReadProc(o.ServerPID); err == nil {
			ps0 = st
			r.RSSStart, r.RSSMax = st.RSS, st.RSS
		}
	}
	meter := StartCPUMeter(o.ServerPID, loadPIDs(workers))
	deadline, _ := ctx.Deadline()
	end := deadline.Add(-3 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	nextLog := start.Add(time.Second)
	for {
		var p RoomProgress
		done := true
		for _, w := range workers {
			if !w.take() {
				return r, errors.New("a worker ended during the joins (see its stderr)")
			}
			lp := w.last.Room
			if lp == nil {
				done = false
				continue
			}
			p.Live += lp.Live
			p.Sent += lp.Sent
			p.Replied += lp.Replied
			p.OK += lp.OK
			p.Complete += lp.Complete
			if lp.Complete < lp.Live {
				done = false
			}
		}
		now := time.Now()
		if done || !now.Before(nextLog) {
			var rss int64
			if o.ServerPID > 0 {
				if st, err := ReadProc(o.ServerPID); err == nil {
					rss = st.RSS
					r.RSSMax = max(r.RSSMax, rss)
				}
			}
			fmt.Fprintf(o.Log, "  t=%.1fs joins sent %d, replied %d (ok %d), views complete %d of %d; server RSS %s\n",
				now.Sub(start).Seconds(), p.Sent, p.Replied, p.OK, p.Complete, p.Live, MiB(rss))
			nextLog = nextLog.Add(time.Second)
		}
		if done {
			break
		}
		if !now.Before(end) {
			r.TimedOut = true
			fmt.Fprintf(o.Log, "  timeout: %d of %d views incomplete\n", p.Live-p.Complete, p.Live)
			break
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-tick.C:
		}
	}
	r.Wave = Duration(time.Since(start))
	r.CPU = meter.Stop()
	if o.ServerPID > 0 {
		if st, err := ReadProc(o.ServerPID); err == nil {
			r.RSSEnd, r.HWM = st.RSS, st.HWM
			r.RSSMax = max(r.RSSMax, st.RSS)
			r.ServerCPU = st.CPUTime - ps0.CPUTime
		}
	}
	if net1, err := ReadNetCounters(); err == nil && r.NetErr == "" {
		r.Net = net1.Sub(net0)
	} else if err != nil {
		r.NetErr = err.Error()
	}
	return r, nil
}

func summarizeRoom(r *RoomReport, results []*WorkerResult) {
	var lat []int32
	var compAt, compRead, incKeys []int64
	var diffF, diffB, stateF, stateB, countF, countB []int64
	var lastSend, lastReply int64
	for _, w := range results {
		x := w.Room
		if x == nil {
			continue
		}
		r.Sent += x.Sent
		r.OK += x.OK
		r.Refused += x.Refused
		r.Unanswered += x.Unanswered
		r.SendErrors += x.SendErrs
		addCounts(&r.RefuseReasons, x.Reasons)
		lastSend = max(lastSend, x.LastSend)
		lastReply = max(lastReply, x.LastReply)
		lat = append(lat, x.JoinLat...)
		for i, at := range x.CompleteAt {
			if at > 0 {
				compAt = append(compAt, at)
				compRead = append(compRead, x.CompleteReadAt[i])
			} else if i < len(x.Keys) {
				incKeys = append(incKeys, x.Keys[i])
			}
		}
		r.Live += len(x.CompleteAt)
		diffF = append(diffF, x.DiffFrames...)
		diffB = append(diffB, x.DiffBytes...)
		stateF = append(stateF, x.StateFrames...)
		stateB = append(stateB, x.StateBytes...)
		countF = append(countF, x.CountFrames...)
		countB = append(countB, x.CountBytes...)
		r.Updates.merge(x.Updates)
		r.ParseErrors += x.ParseErrs
		r.ChannelErrors += x.ChanErrs
	}
	if lastSend > r.start {
		r.LastSendAt = Duration(lastSend - r.start)
		r.SendRate = float64(r.Sent) / (float64(lastSend-r.start) / 1e9)
	}
	if lastReply > r.start {
		r.LastReplyAt = Duration(lastReply - r.start)
		r.Achieved = float64(r.OK) / (float64(lastReply-r.start) / 1e9)
	}
	r.JoinLatency = Summarize(lat)
	r.Complete = len(compAt)
	r.Incomplete = r.Live - r.Complete
	r.IncompleteKeys = SummarizeCounts(incKeys)
	if len(compAt) > 0 {
		after := make([]int32, len(compAt))
		for i, at := range compAt {
			after[i] = int32(max(-1<<31, min((at-lastReply)/1000, 1<<31-1)))
		}
		r.CompleteAfter = Summarize(after)
	}
	if r.Incomplete == 0 && r.Complete > 0 && lastReply > 0 {
		last, lastRead := slices.Max(compAt), slices.Max(compRead)
		s, sr, all := Duration(last-lastReply), Duration(lastRead-lastReply), Duration(last-r.start)
		r.Settle, r.SettleRead, r.AllCompleteAt = &s, &sr, &all
	}
	r.DiffFrames, r.DiffBytes = SummarizeCounts(diffF), SummarizeCounts(diffB)
	r.StateFrames, r.StateBytes = SummarizeCounts(stateF), SummarizeCounts(stateB)
	r.CountFrames, r.CountBytes = SummarizeCounts(countF), SummarizeCounts(countB)
}

func (r *RoomReport) print(w io.Writer, rep *Report) {
	d := func(x Duration) time.Duration { return time.Duration(x).Round(time.Millisecond) }
	fmt.Fprintf(w, "room %s (presence %s): %d clients, %d connected; joins offered %.0f/s\n",
		r.Topic, r.PresenceMode, r.Clients, r.Live, r.Offered)
	fmt.Fprintf(w, "  joins sent %d (%.0f/s, last at %s), ok %d (%.0f/s, last reply at %s), refused %d %v, unanswered %d, send errors %d\n",
		r.Sent, r.SendRate, d(r.LastSendAt), r.OK, r.Achieved, d(r.LastReplyAt), r.Refused, r.RefuseReasons, r.Unanswered, r.SendErrors)
	fmt.Fprintf(w, "  join reply latency: %s\n", r.JoinLatency)
	what := "all " + fmt.Sprint(r.Clients) + " keys"
	if r.PresenceMode == PresenceCount {
		what = fmt.Sprintf("presence_count {keys: %d, metas: %d}", r.Clients, r.Clients)
	}
	if r.Settle != nil {
		fmt.Fprintf(w, "  every view holds %s %s after the last join reply (read: %s; %s after the start)\n",
			what, d(*r.Settle), d(*r.SettleRead), d(*r.AllCompleteAt))
	} else {
		cause := "the wait ended"
		if r.TimedOut {
			cause = "TIMEOUT"
		}
		fmt.Fprintf(w, "  %s after %s: %d of %d views incomplete (not %s; keys they held: %s, min %d)\n",
			cause, d(r.Wave), r.Incomplete, r.Live, what, r.IncompleteKeys, r.IncompleteKeys.Min)
	}
	fmt.Fprintf(w, "  views complete %d; per view, completion after the last join reply: %s\n", r.Complete, r.CompleteAfter)
	fmt.Fprintf(w, "  per client: presence_diff %s frames, %s bytes; presence_state %s frames, %s bytes; presence_count %s frames, %s bytes\n",
		r.DiffFrames, r.DiffBytes, r.StateFrames, r.StateBytes, r.CountFrames, r.CountBytes)
	fmt.Fprintf(w, "  presence_diff + presence_count frames per client per second: max %d (second %d); all clients per second: %v\n",
		r.Updates.Max, r.Updates.MaxAt, r.Updates.PerSecond)
	fmt.Fprintf(w, "  errors: joins refused %d, connections closed %d %s, parse errors %d, channel errors %d\n",
		r.Refused, rep.Lost, rep.LostReason, r.ParseErrors, r.ChannelErrors)
	fmt.Fprintf(w, "  server over the wave (%s): CPU %.2f s; %s\n", d(r.Wave), r.ServerCPU, r.CPU)
	fmt.Fprintf(w, "  server RSS %s → %s (max sampled %s; peak VmHWM %s)\n", MiB(r.RSSStart), MiB(r.RSSEnd), MiB(r.RSSMax), MiB(r.HWM))
	fmt.Fprintf(w, "  kernel during the wave: %s\n", r.Net)
	fmt.Fprintf(w, "  kernel during the dials: %s\n", r.NetSetup)
	if r.NetErr != "" {
		fmt.Fprintf(w, "  kernel counters: %s\n", r.NetErr)
	}
}
