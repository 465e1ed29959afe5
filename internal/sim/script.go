package sim

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gopresence/presence/internal/crdt"
	"github.com/gopresence/presence/internal/rawshard"
)

// Script runs one scenario command and returns its output. Commands:
//
//	add-nodes N                      start n1..nN
//	track NODE OWNER TOPIC KEY [META] local track (META defaults to {})
//	update NODE OWNER TOPIC KEY META
//	untrack NODE OWNER TOPIC KEY
//	close NODE OWNER                 the owner closed: untrack all its presences
//	run DURATION                     advance virtual time (e.g. 500ms, 3s)
//	partition A B | C                split the network; heal reconnects
//	drop-next FROM TO [K]            lose the next K messages on a link
//	crash NODE / restart NODE / shutdown NODE (graceful_permdown)
//	stop NODE [GRACE]                graceful stop: peers keep its presences
//	                                 for GRACE (default Config.ShutdownGrace)
//	list NODE TOPIC                  the node's visible presences of TOPIC
//	online NODE                      all its visible presences
//	diffs NODE                       the diffs it reported since last asked
//	clocks NODE                      its clocks (context without down replicas)
//	peers NODE                       its peer records
//	track-many NODE N TOPIC          track N presences (owners oI, keys uI)
//	track-batches NODE B N TOPIC     B separate deltas of N tracks each
//	count NODE TOPIC                 number of visible presences
//	transfers                        transfer acks delivered (delta / full) since last asked
func (s *Sim) Script(cmd string, args []string) (string, error) {
	need := func(n int) error {
		if len(args) < n {
			return fmt.Errorf("%s: want %d arguments, got %d", cmd, n, len(args))
		}
		return nil
	}
	switch cmd {
	case "add-nodes":
		if err := need(1); err != nil {
			return "", err
		}
		k, err := strconv.Atoi(args[0])
		if err != nil {
			return "", err
		}
		for i := range k {
			_ = i
			s.AddNode(fmt.Sprintf("n%d", len(s.order)+1))
		}
		return "ok", nil
	case "track", "update":
		if err := need(4); err != nil {
			return "", err
		}
		meta := "{}"
		if len(args) > 4 {
			meta = strings.Join(args[4:], " ")
		}
		err := s.Do(args[0], func(r *rawshard.Shard) error {
			if cmd == "track" {
				_, err := r.Track(s.Now(), args[1], args[2], args[3], []byte(meta))
				return err
			}
			_, _, err := r.Update(s.Now(), args[1], args[2], args[3], []byte(meta))
			return err
		})
		return okOr(err), nil
	case "track-many":
		if err := need(3); err != nil {
			return "", err
		}
		k, err := strconv.Atoi(args[1])
		if err != nil {
			return "", err
		}
		return okOr(s.Do(args[0], func(r *rawshard.Shard) error {
			for i := range k {
				if _, err := r.Track(s.Now(), fmt.Sprintf("o%d", i), args[2], fmt.Sprintf("u%d", i), []byte("{}")); err != nil {
					return err
				}
			}
			return nil
		})), nil
	case "track-batches":
		// track-batches NODE BATCHES SIZE TOPIC: BATCHES deltas of SIZE
		// tracks each, each one flushed on its own.
		if err := need(4); err != nil {
			return "", err
		}
		nb, err1 := strconv.Atoi(args[1])
		size, err2 := strconv.Atoi(args[2])
		if err1 != nil || err2 != nil {
			return "", fmt.Errorf("track-batches: bad numbers")
		}
		for b := range nb {
			err := s.Do(args[0], func(r *rawshard.Shard) error {
				for i := range size {
					k := fmt.Sprintf("b%d-%d", b, i)
					if _, err := r.Track(s.Now(), "o"+k, args[3], "u"+k, []byte("{}")); err != nil {
						return err
					}
				}
				r.Flush()
				return nil
			})
			if err != nil {
				return okOr(err), nil
			}
		}
		return "ok", nil
	case "count":
		if err := need(2); err != nil {
			return "", err
		}
		n := s.nodes[args[0]]
		if n == nil {
			return "", fmt.Errorf("unknown node %s", args[0])
		}
		return strconv.Itoa(n.Raw.State().Count(args[1])), nil
	case "transfers":
		out := fmt.Sprintf("delta=%d full=%d", s.AcksDelta, s.AcksFull)
		s.AcksDelta, s.AcksFull = 0, 0
		return out, nil
	case "untrack":
		if err := need(4); err != nil {
			return "", err
		}
		return okOr(s.Do(args[0], func(r *rawshard.Shard) error { r.Untrack(s.Now(), args[1], args[2], args[3]); return nil })), nil
	case "close":
		if err := need(2); err != nil {
			return "", err
		}
		return okOr(s.Do(args[0], func(r *rawshard.Shard) error { r.UntrackOwner(s.Now(), args[1]); return nil })), nil
	case "run":
		if err := need(1); err != nil {
			return "", err
		}
		d, err := time.ParseDuration(args[0])
		if err != nil {
			return "", err
		}
		s.Run(d)
		return "ok", nil
	case "partition":
		var groups [][]string
		cur := []string{}
		for _, a := range args {
			if a == "|" {
				groups = append(groups, cur)
				cur = []string{}
				continue
			}
			cur = append(cur, a)
		}
		s.Partition(append(groups, cur)...)
		return "ok", nil
	case "heal":
		s.Heal()
		return "ok", nil
	case "drop-next":
		if err := need(2); err != nil {
			return "", err
		}
		k := 1
		if len(args) > 2 {
			k, _ = strconv.Atoi(args[2])
		}
		s.DropNext(args[0], args[1], k)
		return "ok", nil
	case "stop":
		if err := need(1); err != nil {
			return "", err
		}
		if n := s.nodes[args[0]]; n == nil || !n.Alive {
			return "", fmt.Errorf("node %s is not running", args[0])
		}
		grace := s.cfg.ShutdownGrace
		if len(args) > 1 {
			d, err := time.ParseDuration(args[1])
			if err != nil {
				return "", err
			}
			grace = d
		}
		s.Stop(args[0], grace)
		return "ok", nil
	case "crash", "restart", "shutdown":
		if err := need(1); err != nil {
			return "", err
		}
		if s.nodes[args[0]] == nil {
			return "", fmt.Errorf("unknown node %s", args[0])
		}
		switch cmd {
		case "crash":
			s.Crash(args[0])
		case "restart":
			s.Restart(args[0])
		default:
			s.Shutdown(args[0])
		}
		return "ok", nil
	case "list", "online", "diffs", "clocks", "peers":
		if err := need(1); err != nil {
			return "", err
		}
		n := s.nodes[args[0]]
		if n == nil {
			return "", fmt.Errorf("unknown node %s", args[0])
		}
		var out string
		switch cmd {
		case "list":
			if err := need(2); err != nil {
				return "", err
			}
			es := n.Raw.State().List(args[1])
			crdt.SortElements(es)
			out = FormatElements("", es)
		case "online":
			out = FormatElements("", n.Raw.State().Online())
		case "diffs":
			var b strings.Builder
			for i, d := range s.TakeDiffs(args[0]) {
				fmt.Fprintf(&b, "diff %d\n", i+1)
				b.WriteString(FormatElements("  - ", d.Leaves))
				b.WriteString(FormatElements("  + ", d.Joins))
			}
			out = b.String()
		case "clocks":
			c := n.Raw.State().Clocks()
			var b strings.Builder
			for _, r := range c.Replicas() {
				fmt.Fprintf(&b, "%s.%d=%d\n", r.Name, r.Vsn, c[r])
			}
			out = b.String()
		case "peers":
			var b strings.Builder
			for _, p := range n.Raw.Peers() {
				st := "up"
				switch {
				case p.Stopping:
					st = fmt.Sprintf("stopping until %v", p.GraceEnd.Round(time.Millisecond))
				case p.Down:
					st = "down"
				}
				fmt.Fprintf(&b, "%s.%d %s\n", p.Replica.Name, p.Replica.Vsn, st)
			}
			out = b.String()
		}
		if out == "" {
			return "(none)", nil
		}
		return strings.TrimRight(out, "\n"), nil
	}
	return "", fmt.Errorf("unknown command %q", cmd)
}

func okOr(err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return "ok"
}

// Case is one command of a scenario file and its expected output.
type Case struct {
	Line     int
	Cmd      string
	Args     []string
	Expected string
	Comments []string // comment lines before the command
}

// ParseScript reads a scenario file: a command line, a "----" line, the
// expected output up to a blank line. Lines starting with # are comments.
func ParseScript(path string) ([]Case, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(b), "\n")
	var out []Case
	var comments []string
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if l == "" {
			continue
		}
		if strings.HasPrefix(l, "#") {
			comments = append(comments, l)
			continue
		}
		f := strings.Fields(l)
		c := Case{Line: i + 1, Cmd: f[0], Args: f[1:], Comments: comments}
		comments = nil
		if i+1 >= len(lines) || strings.TrimSpace(lines[i+1]) != "----" {
			return nil, fmt.Errorf("%s:%d: command without ----", path, i+1)
		}
		i += 2
		var exp []string
		for ; i < len(lines) && strings.TrimSpace(lines[i]) != ""; i++ {
			exp = append(exp, lines[i])
		}
		c.Expected = strings.Join(exp, "\n")
		out = append(out, c)
	}
	return out, nil
}

// FormatScript writes cases back with the given outputs (for -rewrite).
func FormatScript(cases []Case, outputs []string) string {
	var b strings.Builder
	for i, c := range cases {
		for _, l := range c.Comments {
			b.WriteString(l + "\n")
		}
		b.WriteString(strings.TrimSpace(c.Cmd + " " + strings.Join(c.Args, " ")))
		b.WriteString("\n----\n")
		b.WriteString(outputs[i])
		b.WriteString("\n\n")
	}
	return b.String()
}
