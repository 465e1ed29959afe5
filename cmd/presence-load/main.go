// Command presence-load measures a presenced node with many WebSocket
// clients: memory per idle joined+tracked client (idle), presence_diff
// fan-out latency (fanout), sustained joins per second (joins), a wave
// of joins into one topic with every client keeping its copy of the
// presences (room), and, on a cluster of its own, a graceful stop of one
// node (deploy) and a healed partition (heal). See BENCHMARKS.md for the
// method and the figures.
//
//	go run ./cmd/presence-load -help
//
// Every run is bounded (-clients, -duration, -timeout) and, by default,
// only loads a loopback address.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gopresence/presence/internal/loadtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "presence-load:", err)
		}
		os.Exit(2)
	}
}

const usage = `Usage: presence-load -mode idle|fanout|joins|room|deploy|heal [flags]

Loads a presenced node (built-in presence channel on room:*, dev mode: the
socket param user_id is the key) with cheap V2 WebSocket clients spread over
worker processes (one process holds at most ~19k sockets here) bound to
rotating source addresses 127.0.0.2, 127.0.0.3, … (10,000 clients each).
The server's RSS and CPU come from /proc/<pid> of the process listening on
the URL's port (or -server-pid).

Modes:
  idle    -clients N clients each join room:<i % rooms> with a meta (tracked),
          answer heartbeats and stay idle; the server's RSS is sampled every
          second for -duration and (RSS_after − RSS_before)/N is reported.
          Start presenced fresh for this: RSS_before is read at our start.
  fanout  -clients N watchers join -topic (no meta); one changer tracks
          itself there and sends -changes presence:update, one per
          -interval; each watcher times the presence_diff (changer's send →
          watcher's read, wall clock of this machine).
  joins   -clients N connections; -rate joins/s (each a join with a meta, so
          a track) round robin over them for -duration, to room:j<n> over
          -topics topics; a connection holding -max-channels leaves its
          oldest first. Keep -rate/-clients under the server's per-connection
          JoinRate (10/s by default). Reports joins/s, reply latency per
          second and errors.
  room    -clients N connections, then each joins -topic (default room:big)
          once, with a meta (tracked), -rate joins/s in total (default
          1000/s). Every client keeps its own copy of the topic's presences
          as phoenix.js's Presence does (presence_state replaces it, diffs
          before the first state wait for it, joins add or replace metas by
          phx_ref, leaves remove them, a key without metas is gone), until
          every copy holds all N keys or -timeout (less 3 s) passes.
          -presence-mode count instead joins with "presence": {"mode":
          "count"} and waits for presence_count {"keys": N, "metas": N}.
          Reports the joins/s achieved, the time from the last join reply
          until every view was complete (or the views still incomplete),
          presence_diff / presence_state / presence_count frames and bytes
          per client (mean, p50, max), the most presence_diff frames one
          client got in one second, errors, the server's CPU seconds and
          RSS (peak: VmHWM), and the kernel's softnet drops and TCP
          retransmissions during the joins (a large loopback fan-out can
          overflow the input backlog). Client memory: 4 bytes per key per
          client (19k clients: ~1.4 GB in the workers).
  deploy  starts -nodes presenced processes of -presenced (n1 embeds NATS,
          the others reach it through proxies of this tool; -node-flags are
          added) and -clients members (default 6000) in this process, round
          robin over the nodes, join -topic (default room:deploy) at -rate
          per second, each keeping its view as phoenix.js's Presence does.
          Once every view is exact, the last node gets SIGTERM and its
          members reconnect to the others, each after a delay drawn below
          -move-within. Reports the key flaps the other members saw (a key
          whose every meta left, then came back: phoenix.js's onLeave and
          onJoin), the time from the stop until every view is exact (every
          key once, the stopped node's metas gone), presence_diff frames
          per view, errors and each node's CPU.
  heal    starts -nodes nodes as deploy (with --down-period 3s
          --permdown-period 5m unless -node-flags says otherwise);
          -clients sockets per node (default 2000) each track one presence
          in each of -heal-topics topics (presence mode none: no presence
          traffic to them), -rate joins/s in all; -watchers per node and
          topic keep views. The proxies are cut until every node holds the
          others as down, then healed. Reports presence_diff frames per
          view and the most in one second from the heal on, and the time
          until every view is exact again.

Examples:
  go build -o /tmp/presenced ./cmd/presenced && /tmp/presenced &
  go run ./cmd/presence-load -mode idle -clients 10000
  go run ./cmd/presence-load -mode fanout -clients 10000 -changes 50 -interval 500ms
  go run ./cmd/presence-load -mode joins -clients 5000 -rate 20000 -duration 10s
  go run ./cmd/presence-load -mode room -clients 2000 -rate 1000 -timeout 120s
  go run ./cmd/presence-load -mode room -clients 10000 -rate 5000 -presence-mode count
  go run ./cmd/presence-load -mode deploy -presenced /tmp/presenced -clients 6000
  go run ./cmd/presence-load -mode heal -presenced /tmp/presenced -clients 2000

Flags:
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o loadtest.Options
	var workerJob string
	var asJSON bool
	var duration time.Duration
	fs := flag.NewFlagSet("presence-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.Mode, "mode", "", "idle, fanout, joins or room (required)")
	fs.StringVar(&o.URL, "url", loadtest.DefaultURL, "the server's WebSocket endpoint")
	fs.BoolVar(&o.AllowRemote, "allow-remote", false, "allow a non-loopback -url")
	fs.IntVar(&o.Clients, "clients", 1000, "clients (idle), watchers (fanout), connections (joins) or members (room)")
	fs.IntVar(&o.Procs, "procs", 0, "worker processes (default: one per 15,000 clients)")
	fs.IntVar(&o.SrcFirst, "src-first", loadtest.DefaultSrcFirst, "first source address 127.0.0.<n>; -1 binds none")
	fs.IntVar(&o.PerIP, "per-ip", loadtest.DefaultPerIP, "clients per source address")
	fs.IntVar(&o.Concurrency, "concurrency", loadtest.DefaultConcurrency, "dials+joins in flight per worker during setup")
	fs.IntVar(&o.ServerPID, "server-pid", 0, "server process for RSS/CPU (0: the listener of -url's port; -1: none)")
	fs.DurationVar(&o.Timeout, "timeout", loadtest.DefaultTimeout, "hard bound on the whole run")
	fs.DurationVar(&duration, "duration", 10*time.Second, "idle: RSS sampling after setup; joins: how long joins are sent")
	fs.DurationVar(&o.Heartbeat, "heartbeat", loadtest.DefaultHeartbeat, "client heartbeat period (0: none)")
	fs.IntVar(&o.Rooms, "rooms", 100, "idle: rooms room:0..rooms-1")
	fs.IntVar(&o.MetaPad, "meta-pad", 0, "idle, room: extra bytes in each meta")
	fs.StringVar(&o.Topic, "topic", "", "fanout, room: the topic (default room:fanout; room: room:big)")
	fs.IntVar(&o.Changes, "changes", 50, "fanout: timed changes")
	fs.DurationVar(&o.Interval, "interval", 250*time.Millisecond, "fanout: time between changes")
	fs.IntVar(&o.WorkerNice, "worker-nice", -1, "nice value (0-19) of the worker processes; -1: 19 in fanout mode (readers only), else 0")
	fs.Float64Var(&o.Rate, "rate", 0, "joins, room, deploy, heal: joins/s offered in total (default 20000; room, deploy, heal: 1000)")
	fs.IntVar(&o.Topics, "topics", 100000, "joins: topics joined (room:j0..)")
	fs.IntVar(&o.MaxChannels, "max-channels", 100, "joins: channels per connection before it leaves its oldest")
	fs.DurationVar(&o.Drain, "drain", 10*time.Second, "joins: wait for the last replies after -duration")
	fs.StringVar(&o.PresenceMode, "presence-mode", loadtest.PresenceFull, "room: full (presence_state + presence_diff, a copy per client) or count (presence_count)")
	fs.StringVar(&o.Presenced, "presenced", "", "deploy, heal: the presenced binary to start the nodes from")
	fs.IntVar(&o.Nodes, "nodes", 3, "deploy, heal: nodes to start")
	nodeFlags := fs.String("node-flags", "", "deploy, heal: more flags for every node, space-separated (e.g. \"--shutdown-grace 3s\")")
	fs.DurationVar(&o.MoveWithin, "move-within", 2*time.Second, "deploy: the stopped node's members reconnect elsewhere within this")
	fs.IntVar(&o.HealTopics, "heal-topics", 10, "heal: topics each socket is tracked in")
	fs.IntVar(&o.Watchers, "watchers", 5, "heal: watchers (views) per node and topic")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fs.StringVar(&workerJob, loadtest.WorkerFlag, "", "internal: run as a worker of this job")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if workerJob != "" {
		var job loadtest.Job
		if err := json.Unmarshal([]byte(workerJob), &job); err != nil {
			return fmt.Errorf("worker job: %w", err)
		}
		return loadtest.RunWorker(ctx, job, os.Stdin, stdout)
	}
	if o.Mode == "" {
		fs.Usage()
		return errors.New("-mode is required")
	}
	o.Settle, o.Run = duration, duration
	o.NodeFlags = strings.Fields(*nodeFlags)
	if (o.Mode == loadtest.ModeDeploy || o.Mode == loadtest.ModeHeal) && !flagSet(fs, "clients") {
		o.Clients = 6000
		if o.Mode == loadtest.ModeHeal {
			o.Clients = 2000
		}
	}
	o.Log = stderr
	rep, err := loadtest.Run(ctx, o)
	if rep != nil {
		if asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			enc.Encode(rep)
		} else {
			rep.Print(stdout)
		}
	}
	return err
}

func flagSet(fs *flag.FlagSet, name string) (set bool) {
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
