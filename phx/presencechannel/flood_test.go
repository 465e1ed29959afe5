package presencechannel_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopresence/presence/phx/presencechannel"
)

// drain reads c's frames until it fails, counting them and the error
// replies whose reason is reason; it reports how the connection ended.
func drain(c *client, reason string, frames, refused *atomic.Int64) <-chan error {
	done := make(chan error, 1)
	go func() {
		for {
			c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, b, err := c.ws.ReadMessage()
			if err != nil {
				done <- err
				return
			}
			frames.Add(1)
			if refused != nil && strings.Contains(string(b), `"reason":"`+reason+`"`) {
				refused.Add(1)
			}
		}
	}()
	return done
}

// peakHeap samples the heap in use every 20 ms until stop is closed.
func peakHeap(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		var ms runtime.MemStats
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

func heapNow() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// One client floods a room of 20 members for 2 s with frame, as fast as
// it can write. The flooder is refused ("rate limited"), no member is
// disconnected, and the server's heap stays bounded (a generous 256 MiB
// over the start: unbounded, the repro reached 1.4 GiB). The limits are
// set low (2/s, bursts of 4): a limiter refuses only what comes faster
// than its rate, and a loaded machine may handle 60 KiB broadcasts to 20
// members more slowly than the default 20 a second.
func flood(t *testing.T, frame func(i int) string, tracked bool) {
	st := newStackCfg(t, presencechannel.Config{BroadcastRate: 2, BroadcastBurst: 4, UpdateRate: 2, UpdateBurst: 4})
	const topic = "room:flood"
	type member struct {
		c    *client
		done <-chan error
	}
	var frames atomic.Int64
	var members []member
	for i := range 20 {
		c := st.user(t, fmt.Sprintf("m%d", i))
		c.join("1", topic, `{"meta":{"n":1}}`)
		members = append(members, member{c, drain(c, "", &frames, nil)})
	}
	f := st.user(t, "flooder")
	payload := `{}`
	if tracked {
		payload = `{"meta":{"n":0}}`
	}
	f.join("1", topic, payload)
	var refused, own atomic.Int64
	fdone := drain(f, "rate limited", &own, &refused)

	h0 := heapNow()
	stop := make(chan struct{})
	peak := peakHeap(stop)
	deadline := time.Now().Add(2 * time.Second)
	sent := 0
	for time.Now().Before(deadline) {
		if err := f.ws.WriteMessage(1, []byte(frame(sent))); err != nil {
			break // closed for flooding: allowed
		}
		sent++
	}
	// The refusals come back behind what the server still has to read
	// and write: wait for the first one (bounded), as a loaded machine
	// may take more than a moment.
	time.Sleep(200 * time.Millisecond)
	for wait := time.Now().Add(5 * time.Second); refused.Load() == 0 && time.Now().Before(wait); {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	p := <-peak
	for i, m := range members {
		select {
		case err := <-m.done:
			t.Fatalf("member %d disconnected by the flood: %v", i, err)
		default:
		}
	}
	select {
	case err := <-fdone:
		t.Logf("flooder closed: %v", err)
	default:
	}
	if refused.Load() == 0 {
		t.Fatalf("%d flood frames, none refused", sent)
	}
	grown := int64(p) - int64(h0)
	t.Logf("%d frames sent, %d refused, members got %d frames, heap peak +%d MiB", sent, refused.Load(), frames.Load(), grown>>20)
	if grown > 256<<20 {
		t.Fatalf("heap grew by %d MiB under the flood", grown>>20)
	}
}

func TestBroadcastFloodHurtsNoOne(t *testing.T) {
	big := strings.Repeat("x", 60<<10)
	flood(t, func(i int) string {
		return fmt.Sprintf(`["1","%d","room:flood","broadcast",{"x":"%s"}]`, i, big)
	}, false)
}

func TestUpdateFloodHurtsNoOne(t *testing.T) {
	flood(t, func(i int) string {
		return fmt.Sprintf(`["1","%d","room:flood","presence:update",{"meta":{"n":%d,"pad":"%s"}}]`, i, i, strings.Repeat("p", 3000))
	}, true)
}
