package phx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
)

const (
	transportWebSocket = "websocket"
	transportLongPoll  = "longpoll"
)

// Server is a Phoenix channels server: an http.Handler serving
// Mount+"/websocket" and Mount+"/longpoll". Create it with New; it is safe
// for concurrent use.
type Server struct {
	cfg         Config
	log         *slog.Logger
	ownerPrefix string
	ownerSeq    atomic.Uint64
	ws          wsTransport
	lp          *lpTransport

	hub hub // topic → joined sockets (hub.go)

	// conns: every live connection, for Shutdown and Disconnect.
	cmu      sync.Mutex
	conns    map[*conn]struct{}
	perIP    map[string]int // live connections by peer IP (Config.MaxConnsPerIP)
	perID    map[string]int // live connections by Identity.ID (Config.MaxConnsPerID)
	stopping bool
	wg       sync.WaitGroup // one per live connection (and long-poll helper)
}

// New returns a Server for cfg (see Config for defaults).
func New(cfg Config) (*Server, error) {
	c := cfg.withDefaults()
	for _, r := range c.Channels {
		if r.Pattern == "" || r.Channel == nil {
			return nil, fmt.Errorf("phx: route %q: pattern and channel are required", r.Pattern)
		}
		if i := strings.IndexByte(r.Pattern, '*'); i >= 0 && i != len(r.Pattern)-1 {
			return nil, fmt.Errorf("phx: route %q: '*' may only end a pattern", r.Pattern)
		}
	}
	origins, err := parseOrigins(c.AllowedOrigins)
	if err != nil {
		return nil, err
	}
	var rb [6]byte
	if _, err := rand.Read(rb[:]); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:         c,
		log:         c.Logger,
		ownerPrefix: "phx:" + hex.EncodeToString(rb[:]) + ":",
		hub:         hub{topics: make(map[string]*topicSubs)},
		conns:       make(map[*conn]struct{}),
		perIP:       make(map[string]int),
		perID:       make(map[string]int),
	}
	s.ws.init(s)
	s.lp = newLPTransport(s)
	s.cfg.AllowedOrigins = nil
	s.ws.origins = origins
	s.lp.origins = origins
	return s, nil
}

// ServeHTTP serves Mount+"/websocket" and, when enabled, Mount+"/longpoll";
// anything else is 404.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, strings.TrimSuffix(s.cfg.Mount, "/"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch {
	case rest == "/websocket" && !s.cfg.DisableWebSocket:
		s.ws.serve(w, r)
	case rest == "/longpoll" && s.cfg.LongPoll:
		s.lp.serve(w, r)
	default:
		http.NotFound(w, r)
	}
}

// register adds a live connection; false if the server is stopping.
func (s *Server) register(c *conn) bool {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if s.stopping {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) unregister(c *conn) {
	s.cmu.Lock()
	_, ok := s.conns[c]
	delete(s.conns, c)
	if ok {
		s.releaseLocked(peerIP(c.peer), c.ident.ID)
	}
	s.cmu.Unlock()
	if ok {
		s.wg.Done()
	}
}

// Errors of reserve.
var (
	errTooManyPerIP = errors.New("phx: too many connections from this address (Config.MaxConnsPerIP)")
	errTooManyPerID = errors.New("phx: too many connections of this identity (Config.MaxConnsPerID)")
)

// reserve counts a connection being opened from peer (an address as in
// http.Request.RemoteAddr) with identity id against the per-IP and per-ID
// limits, and returns the IP it was counted under ("" for loopback peers,
// which are not counted: behind a reverse proxy on the same host every
// client has that address). The caller releases it with release(ip, id)
// once the connection is gone, or was never made.
func (s *Server) reserve(peer, id string) (string, error) {
	ip := peerIP(peer)
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if max := s.cfg.MaxConnsPerIP; ip != "" && max > 0 && s.perIP[ip] >= max {
		return "", errTooManyPerIP
	}
	if max := s.cfg.MaxConnsPerID; id != "" && max > 0 && s.perID[id] >= max {
		return "", errTooManyPerID
	}
	if ip != "" {
		s.perIP[ip]++
	}
	if id != "" {
		s.perID[id]++
	}
	return ip, nil
}

// release undoes a reserve.
func (s *Server) release(ip, id string) {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	s.releaseLocked(ip, id)
}

func (s *Server) releaseLocked(ip, id string) {
	if ip != "" {
		if s.perIP[ip]--; s.perIP[ip] <= 0 {
			delete(s.perIP, ip)
		}
	}
	if id != "" {
		if s.perID[id]--; s.perID[id] <= 0 {
			delete(s.perID, id)
		}
	}
}

// peerIP is the IP of a RemoteAddr, "" for a loopback or unparsable one.
func peerIP(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.IsLoopback() {
		return ""
	}
	return ip.Unmap().WithZone("").String()
}

// Disconnect closes every connection whose Identity.ID is id (WebSocket
// close 1001; long-poll sessions end), like Phoenix's "disconnect"
// broadcast on the socket id. It returns how many were closed.
func (s *Server) Disconnect(id string) int {
	if id == "" {
		return 0
	}
	s.cmu.Lock()
	var cs []*conn
	for c := range s.conns {
		if c.ident.ID == id {
			cs = append(cs, c)
		}
	}
	s.cmu.Unlock()
	for _, c := range cs {
		c.out.closeWith(CloseGoingAway, "disconnected")
	}
	return len(cs)
}

// Connections returns the number of live connections (WebSockets and
// long-poll sessions).
func (s *Server) Connections() int {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	return len(s.conns)
}

// Shutdown stops accepting connections (new WebSocket upgrades get HTTP 503,
// new long-poll sessions body status 403), closes every WebSocket
// with close code 1001 (GoingAway) and ends every long-poll session, which
// terminates all channels (so a presence channel untracks), and waits until
// every connection is gone or ctx is done; then it closes what is left at
// once (as Close) and returns ctx's error. Idempotent. It does not stop the
// http.Server: hijacked WebSocket connections are not seen by
// http.Server.Shutdown, so call this one too. Not from a Channel callback
// (it would wait for the connection running it; call it from a goroutine).
func (s *Server) Shutdown(ctx context.Context) error {
	s.cmu.Lock()
	s.stopping = true
	cs := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
	}
	s.cmu.Unlock()
	for _, c := range cs {
		c.out.closeWith(CloseGoingAway, "server shutting down")
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		s.lp.wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Close closes every connection at once (no close handshake), terminates
// all channels and waits for the connections' goroutines. Idempotent. Like
// Shutdown, it must not be called from a Channel callback: it would wait
// for the connection running that callback.
func (s *Server) Close() error {
	s.cmu.Lock()
	s.stopping = true
	cs := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
	}
	s.cmu.Unlock()
	for _, c := range cs {
		c.out.closeWith(CloseGoingAway, "server closed")
		c.out.sink.Abort()
	}
	s.wg.Wait()
	s.lp.wait()
	return nil
}

// isStopping reports whether Shutdown or Close was called.
func (s *Server) isStopping() bool {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	return s.stopping
}
