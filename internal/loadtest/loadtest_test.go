package loadtest

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopresence/presence"
	"github.com/gopresence/presence/internal/phxframe"
	"github.com/gopresence/presence/phx"
	"github.com/gopresence/presence/phx/presencechannel"
)

// server starts presence + the presence channel + phx behind a loopback
// httptest server, with presenced's GET /api/v1/topics/{topic}.
func server(t *testing.T) (wsURL string) {
	t.Helper()
	ctx := context.Background()
	p, err := presence.New(presence.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv, _, err := presencechannel.NewServer(presencechannel.Config{Presence: p}, phx.Config{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/socket/", srv)
	mux.HandleFunc("GET /api/v1/topics/{topic}", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(p.List(r.PathValue("topic")))
	})
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		hs.Close()
		p.Shutdown(sctx)
	})
	return "ws" + strings.TrimPrefix(hs.URL, "http") + "/socket/websocket"
}

func opts(url, mode string, clients int) Options {
	return Options{Mode: mode, URL: url, Clients: clients, Procs: 2, ServerPID: os.Getpid(),
		Timeout: time.Minute, Spawn: InProcessSpawner(), Log: testLog{}}
}

type testLog struct{}

func (testLog) Write(b []byte) (int, error) { return len(b), nil }

func TestIdle(t *testing.T) {
	o := opts(server(t), ModeIdle, 60)
	o.Rooms, o.Settle, o.MetaPad = 7, time.Second, 10
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Connected != 60 || rep.Joined != 60 || rep.Failed != 0 || rep.Lost != 0 {
		t.Fatalf("report %+v", rep)
	}
	if rep.Idle.Tracked != 60 {
		t.Fatalf("tracked %d, want 60", rep.Idle.Tracked)
	}
	if rep.Idle.RSSAfter <= 0 || len(rep.Idle.Series) < 1 {
		t.Fatalf("no RSS: %+v", rep.Idle)
	}
	var sb strings.Builder
	rep.Print(&sb)
	if !strings.Contains(sb.String(), "RSS per client") {
		t.Fatalf("print:\n%s", sb.String())
	}
}

func TestFanout(t *testing.T) {
	o := opts(server(t), ModeFanout, 30)
	o.Changes, o.Interval = 5, 20*time.Millisecond
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	f := rep.Fanout
	if f.Deliveries.N != 150 || f.Missing != 0 || f.Extra != 0 || f.Complete.N != 5 || rep.Lost != 0 {
		t.Fatalf("fanout %+v", f)
	}
	if f.Deliveries.Max <= 0 || f.Deliveries.Max > 10*time.Second {
		t.Fatalf("latencies %v", f.Deliveries)
	}
}

func TestJoins(t *testing.T) {
	o := opts(server(t), ModeJoins, 20)
	// 15 joins per connection: with MaxChannels 10, each leaves 5.
	o.Rate, o.Run, o.Topics, o.MaxChannels = 300, time.Second, 50, 10
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	j := rep.Joins
	if j.Sent != 300 || j.OK != 300 || j.Errors != 0 || j.Unanswered != 0 || rep.Lost != 0 {
		t.Fatalf("joins %+v", j)
	}
	if j.Leaves != 100 {
		t.Fatalf("leaves %d, want 100", j.Leaves)
	}
	if j.Latency.N != 300 || len(j.Windows) != 1 || j.Windows[0].Sent != 300 {
		t.Fatalf("latency %v, windows %+v", j.Latency, j.Windows)
	}
}

func TestJoinRateLimitReported(t *testing.T) {
	// Over the server's per-connection JoinRate: refusals are counted.
	o := opts(server(t), ModeJoins, 1)
	o.Rate, o.Run, o.Topics, o.MaxChannels, o.Procs = 400, 500*time.Millisecond, 1000, 50, 1
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if j := rep.Joins; j.Errors == 0 || j.ErrReasons["too many joins"] != j.Errors || j.OK+j.Errors != j.Sent {
		t.Fatalf("joins %+v", j)
	}
}

func TestRefusesRemote(t *testing.T) {
	_, err := Run(context.Background(), Options{Mode: ModeIdle, URL: "ws://192.0.2.1:4000/socket/websocket", Clients: 1})
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseV2(t *testing.T) {
	f, err := ParseV2([]byte(` ["1", null, "room:a\"b", "phx_reply", {"status":"ok","response":{}}] `))
	if err != nil {
		t.Fatal(err)
	}
	if f.JoinRef != "1" || f.Ref != "" || f.Topic != `room:a\"b` || f.Event != "phx_reply" || string(f.Payload) != ` {"status":"ok","response":{}}` {
		t.Fatalf("%+v", f)
	}
	if ReplyStatus(f.Payload) != "ok" {
		t.Fatal("status")
	}
	for _, bad := range []string{``, `{}`, `[1,2,3,4,5]`, `["1","1","t","e",{}`, `["1","1","t"]`} {
		if _, err := ParseV2([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	b := phxframe.Append(nil, "", "r", "room:x", "ev", []byte(`{"a":1}`))
	if string(b) != `[null,"r","room:x","ev",{"a":1}]` {
		t.Fatalf("phxframe.Append: %s", b)
	}
}

func TestParseLT(t *testing.T) {
	seq, ns, ok := parseLT([]byte(`12/1700000000123456789"}`))
	if !ok || seq != 12 || ns != 1700000000123456789 {
		t.Fatal(seq, ns, ok)
	}
	if _, _, ok := parseLT([]byte(`x/1"`)); ok {
		t.Fatal("accepted x")
	}
}

func TestProc(t *testing.T) {
	st, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.RSS <= 0 || st.Threads <= 0 || st.FDs <= 0 {
		t.Fatalf("%+v", st)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port, _ := strconv.Atoi(strings.TrimPrefix(ln.Addr().String(), "127.0.0.1:"))
	pid, err := FindListener(port)
	if err != nil || pid != os.Getpid() {
		t.Fatalf("FindListener = %d, %v; want %d", pid, err, os.Getpid())
	}
	ips, err := SourceIPs(254, 3)
	if err != nil || ips[0].String() != "127.0.0.254" || ips[2].String() != "127.0.1.0" {
		t.Fatalf("SourceIPs = %v, %v", ips, err)
	}
	if busy, total, err := MachineCPU(); err != nil || busy <= 0 || total < busy {
		t.Fatalf("MachineCPU = %v %v %v", busy, total, err)
	}
}

func TestSummarize(t *testing.T) {
	d := Summarize([]int32{5000, 1000, 3000, 2000, 4000})
	if d.N != 5 || d.Min != time.Millisecond || d.Max != 5*time.Millisecond || d.P50 != 3*time.Millisecond || d.Avg != 3*time.Millisecond {
		t.Fatalf("%+v", d)
	}
	if (Summarize(nil) != Dist{}) {
		t.Fatal("empty")
	}
}
