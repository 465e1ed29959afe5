//go:build linux

package loadtest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A poller reads the server's frames for many connections with epoll, one
// goroutine per core, instead of one goroutine per connection.
//
// The load shares the machine with the server it measures; a goroutine per
// connection costs a wake-up and a scheduling round per frame received
// (≈ 9 µs of CPU per delivery in the fan-out runs), CPU the server then
// lacks. A poller takes every ready connection of one epoll_wait in turn,
// with one read(2) each.
type poller struct {
	w    *worker
	ep   int
	mu   sync.Mutex
	subs map[int32]*pollee // fd → connection
	stop atomic.Bool
	done chan struct{}
}

// pollIdle is how long a poller sleeps when no connection is readable.
const pollIdle = 500 * time.Microsecond

// pollee is one connection's reading state.
type pollee struct {
	c    *client
	fd   int
	pend []byte // bytes of an incomplete frame
	dead bool
}

// startPollers starts one poller per core.
func (w *worker) startPollers() error {
	for range runtime.GOMAXPROCS(0) {
		ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			w.stopPollers()
			return err
		}
		p := &poller{w: w, ep: ep, subs: map[int32]*pollee{}, done: make(chan struct{})}
		w.pollers = append(w.pollers, p)
		go p.run()
	}
	return nil
}

// stopPollers ends the pollers (before the connections are closed: a
// poller must not read a descriptor number that was closed and reused).
func (w *worker) stopPollers() {
	for _, p := range w.pollers {
		p.stop.Store(true)
	}
	for _, p := range w.pollers {
		<-p.done
		syscall.Close(p.ep)
	}
	w.pollers = nil
}

// startReading hands c to a poller (the one with the fewest connections
// by index), or to a goroutine of its own without pollers.
func (w *worker) startReading(c *client) error {
	if len(w.pollers) == 0 {
		w.readers.Add(1)
		go w.read(c)
		return nil
	}
	pe := &pollee{c: c}
	// Bytes already buffered by the handshake or the join are handled
	// first.
	if n := c.conn.br.Buffered(); n > 0 {
		b, _ := c.conn.br.Peek(n)
		pe.pend = append([]byte(nil), b...)
	}
	fd, err := c.conn.detach()
	if err != nil {
		return err
	}
	pe.fd = fd
	// The kernel stamps each segment with its arrival: the latency then
	// ends when the frame reached the subscriber, not when this process
	// got the CPU to read it.
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1); err != nil {
		return err
	}
	p := w.pollers[c.idx%len(w.pollers)]
	pending := len(pe.pend) > 0 // read before the poller may touch pe
	p.mu.Lock()
	p.subs[int32(fd)] = pe
	p.mu.Unlock()
	if pending {
		// Parsed by the poller on its next event; frames complete in pend
		// would otherwise wait for more input, so parse them now, under
		// the poller's lock (the poller has not seen this fd yet).
		now := time.Now().UnixNano()
		p.mu.Lock()
		p.parse(pe, nil, now, now)
		p.mu.Unlock()
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
	return syscall.EpollCtl(p.ep, syscall.EPOLL_CTL_ADD, fd, &ev)
}

func (p *poller) run() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 256)
	buf := make([]byte, 256<<10)
	oob := make([]byte, 128)
	for !p.stop.Load() {
		// Never block in epoll_wait: a poller that sleeps there is woken
		// (a thread wake-up, and the runtime hands its P over) for nearly
		// every frame while the server writes a burst. It looks without
		// waiting and, finding nothing, sleeps pollIdle; frames that came
		// meanwhile are taken together. A frame's latency is timed after
		// its read, so the sleep counts against the server, never for it.
		n, err := syscall.EpollWait(p.ep, events, 0)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			p.w.noteErr(fmt.Errorf("epoll_wait: %w", err))
			return
		}
		if n == 0 {
			time.Sleep(pollIdle)
			continue
		}
		for _, ev := range events[:n] {
			p.mu.Lock()
			pe := p.subs[ev.Fd]
			if pe == nil || pe.dead {
				p.mu.Unlock()
				continue
			}
			m, oobn, _, _, rerr := syscall.Recvmsg(pe.fd, buf, oob, 0)
			now := time.Now().UnixNano()
			arrived := now
			if ts, ok := rxTimestamp(oob[:max(oobn, 0)]); ok {
				arrived = ts
			}
			switch {
			case rerr == syscall.EAGAIN || rerr == syscall.EINTR:
			case rerr != nil:
				p.drop(pe, rerr)
			case m == 0:
				p.drop(pe, errors.New("EOF"))
			default:
				p.parse(pe, buf[:m], arrived, now)
			}
			p.mu.Unlock()
		}
	}
}

// drop stops reading pe (its connection ended).
func (p *poller) drop(pe *pollee, err error) {
	pe.dead = true
	syscall.EpollCtl(p.ep, syscall.EPOLL_CTL_DEL, pe.fd, nil)
	p.w.lose(err)
}

// parse handles the complete frames of pe.pend followed by in, keeping an
// incomplete tail in pe.pend.
func (p *poller) parse(pe *pollee, in []byte, arrived, now int64) {
	b := in
	if len(pe.pend) > 0 {
		pe.pend = append(pe.pend, in...)
		b = pe.pend
	}
	for len(b) >= 2 {
		fin, op := b[0]&0x80 != 0, b[0]&0x0f
		if b[1]&0x80 != 0 {
			p.drop(pe, errors.New("loadtest: masked server frame"))
			return
		}
		n, h := uint64(b[1]&0x7f), 2
		switch n {
		case 126:
			if len(b) < 4 {
				goto keep
			}
			n, h = uint64(binary.BigEndian.Uint16(b[2:4])), 4
		case 127:
			if len(b) < 10 {
				goto keep
			}
			n, h = binary.BigEndian.Uint64(b[2:10]), 10
		}
		if n > maxMessage {
			p.drop(pe, fmt.Errorf("loadtest: message over %d bytes", maxMessage))
			return
		}
		if uint64(len(b)-h) < n {
			goto keep
		}
		payload := b[h : h+int(n)]
		b = b[h+int(n):]
		switch {
		case op == opClose:
			ce := &CloseError{Code: 1005}
			if len(payload) >= 2 {
				ce.Code = int(binary.BigEndian.Uint16(payload[:2]))
				ce.Reason = string(payload[2:])
			}
			p.drop(pe, ce)
			return
		case op == opPing:
			pe.c.conn.write(opPong, payload, time.Second)
		case op >= opClose:
		case !fin || op == opContinuation:
			// The server never fragments its messages.
			p.drop(pe, errors.New("loadtest: fragmented server message"))
			return
		default:
			p.w.handle(pe.c, payload, arrived, now)
		}
	}
keep:
	if len(b) == 0 {
		// A large frame (a presence_state of thousands of metas) grew
		// pend: do not keep that much per connection.
		if cap(pe.pend) > 64<<10 {
			pe.pend = nil
		} else {
			pe.pend = pe.pend[:0]
		}
		return
	}
	if len(pe.pend) > 0 {
		// b is a tail of pend: move it to the front.
		pe.pend = pe.pend[:copy(pe.pend, b)]
	} else {
		pe.pend = append(pe.pend[:0], b...)
	}
}

// rxTimestamp returns the SO_TIMESTAMPNS receive time of a recvmsg's
// control messages (unix nanos).
func rxTimestamp(oob []byte) (int64, bool) {
	if len(oob) == 0 {
		return 0, false
	}
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, false
	}
	for _, m := range msgs {
		if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == syscall.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(m.Data[0:8]))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:16]))
			return sec*1e9 + nsec, true
		}
	}
	return 0, false
}

// renice sets the nice value of every thread of this process (Linux
// applies it per thread; threads started later inherit it).
func renice(n int) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, n); err != nil {
			return err
		}
	}
	return nil
}

// detach takes the socket out of Go's network poller and returns its
// descriptor, for a poller that reads it with read(2); writes then go
// straight to the descriptor too. The descriptor is duplicated and the
// net.Conn closed (which removes it from the runtime's epoll set): data
// arriving on a socket still registered there would wake the runtime's
// netpoll thread for every frame, work done in the sender's write(2),
// which is the server being measured.
func (c *Conn) detach() (int, error) {
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return 0, errors.New("loadtest: connection has no descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(f uintptr) { fd, derr = syscall.Dup(int(f)) }); err != nil {
		return 0, err
	}
	if derr != nil {
		return 0, derr
	}
	syscall.CloseOnExec(fd)
	c.wmu.Lock()
	c.raw = fd
	c.nc.Close()
	c.wmu.Unlock()
	return fd, nil
}

// rawWrite writes b to the detached descriptor (non-blocking: it retries
// a full send buffer for up to timeout).
func (c *Conn) rawWrite(b []byte, timeout time.Duration) error {
	end := time.Now().Add(timeout)
	for len(b) > 0 {
		n, err := syscall.Write(c.raw, b)
		if n > 0 {
			b = b[n:]
		}
		switch {
		case err == nil || err == syscall.EINTR:
		case err == syscall.EAGAIN:
			if time.Now().After(end) {
				return errors.New("loadtest: write timeout")
			}
			time.Sleep(time.Millisecond)
		default:
			return err
		}
	}
	return nil
}

func rawClose(fd int) error { return syscall.Close(fd) }
