package phx

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// The handshake both transports share: the serializer from vsn, the
// server's state, Config.Connect, and the per-IP and per-ID limits. Each
// transport answers a refusal its own way (WebSocket: an HTTP status;
// long-poll: a status in the body, as Phoenix), and checks the origin
// before (long-poll: before its method dispatch, as Phoenix).

// refusal is why the handshake refused a connection.
type refusal int

const (
	admitted      refusal = iota
	refusedVsn            // an unsupported vsn
	refusedStop           // the server is stopping
	refusedAuth           // Config.Connect failed
	refusedLimits         // MaxConnsPerIP or MaxConnsPerID
)

// admission is what an accepted handshake gives the new connection.
type admission struct {
	ser   serializer
	ident Identity
	ip    string // counted under, for release (see reserve)
}

// handshake decides whether the request r may open a connection over
// transport, with the client's auth token. When it is refused it returns
// why, and for refusedAuth the HTTP status a ConnectError asked for (0:
// none); the refusal is logged. When admitted, the connection is counted
// against the limits: release(a.ip, a.ident.ID) undoes it if the
// connection is not made, unregister once it is gone.
func (s *Server) handshake(r *http.Request, transport, token string) (a admission, why refusal, status int) {
	params := r.URL.Query()
	ser, ok := negotiate(params)
	if !ok {
		s.log.Warn("phx: unsupported vsn, connection refused", "peer", r.RemoteAddr, "vsn", params.Get("vsn"))
		return a, refusedVsn, 0
	}
	if s.isStopping() {
		return a, refusedStop, 0
	}
	ident, err := s.connect(r, params, transport, ser, token)
	if err != nil {
		var ce *ConnectError
		if errors.As(err, &ce) {
			status = ce.Status
		}
		s.log.Info("phx: connection refused", "peer", r.RemoteAddr, "transport", transport, "err", err)
		return a, refusedAuth, status
	}
	ip, err := s.reserve(r.RemoteAddr, ident.ID)
	if err != nil {
		s.log.Warn("phx: connection refused", "peer", r.RemoteAddr, "id", ident.ID, "transport", transport, "err", err)
		return a, refusedLimits, 0
	}
	return admission{ser: ser, ident: ident, ip: ip}, admitted, 0
}

// negotiate picks the serializer from the vsn parameter, as Phoenix: none
// means 1.0.0; 1.0.x → V1; 2.0.x → V2; anything else is refused.
func negotiate(params url.Values) (serializer, bool) {
	vsn := "1.0.0"
	if vs, ok := params["vsn"]; ok && len(vs) > 0 {
		vsn = vs[len(vs)-1]
	}
	core, pre, _ := strings.Cut(vsn, "-")
	if i := strings.IndexByte(core, '+'); i >= 0 {
		core = core[:i]
	}
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return 0, false
	}
	var n [3]uint64
	for i, p := range parts {
		if p == "" || (len(p) > 1 && p[0] == '0') {
			return 0, false
		}
		v, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return 0, false
		}
		n[i] = v
	}
	// "~> 1.0.0" / "~> 2.0.0": >= x.0.0 and < x.1.0; a pre-release of
	// x.0.0 sorts below x.0.0.
	if n[1] != 0 || (n[2] == 0 && strings.Contains(vsn, "-") && pre != "") {
		return 0, false
	}
	switch n[0] {
	case 1:
		return serV1, true
	case 2:
		return serV2, true
	}
	return 0, false
}

// connect runs Config.Connect.
func (s *Server) connect(r *http.Request, params url.Values, transport string, ser serializer, token string) (Identity, error) {
	if s.cfg.Connect == nil {
		return Identity{}, nil
	}
	return s.cfg.Connect(r.Context(), &ConnectInfo{
		Request: r, Params: params, Transport: transport, Vsn: ser.String(), AuthToken: token,
	})
}
