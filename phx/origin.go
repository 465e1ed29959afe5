package phx

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// originRule is one parsed AllowedOrigins entry; the parts an entry leaves
// out (no scheme, no port) are wildcards, as in Phoenix's check_origin.
type originRule struct {
	scheme, host, port string
	subdomains         bool // "*.host"
}

// originPolicy is the parsed check_origin setting.
type originPolicy struct {
	any   bool         // "*"
	rules []originRule // nil and !any: same origin as the request
}

func defaultPort(scheme string) string {
	switch scheme {
	case "http", "ws":
		return "80"
	case "https", "wss":
		return "443"
	}
	return ""
}

func parseOrigins(list []string) (originPolicy, error) {
	var p originPolicy
	for _, e := range list {
		if e == "*" {
			p.any = true
			continue
		}
		u, err := url.Parse(e)
		if err != nil || u.Host == "" {
			return originPolicy{}, fmt.Errorf("phx: invalid AllowedOrigins entry %q: want \"scheme://host[:port]\" or \"//host[:port]\"", e)
		}
		r := originRule{scheme: strings.ToLower(u.Scheme), host: strings.ToLower(u.Hostname()), port: u.Port()}
		if r.port == "" {
			r.port = defaultPort(r.scheme) // "" when there is no scheme: any port
		}
		if h, ok := strings.CutPrefix(r.host, "*."); ok {
			r.host, r.subdomains = h, true
		}
		p.rules = append(p.rules, r)
	}
	return p, nil
}

// parseOrigin parses an Origin header value into scheme, host, port (the
// scheme's default port if none). ok is false for an origin without a host
// (e.g. "null").
func parseOrigin(origin string) (u *url.URL, scheme, host, port string, ok bool) {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return nil, "", "", "", false
	}
	scheme = strings.ToLower(u.Scheme)
	host = strings.ToLower(u.Hostname())
	port = u.Port()
	if port == "" {
		port = defaultPort(scheme)
	}
	return u, scheme, host, port, true
}

// forwardedProto is the scheme a reverse proxy says the client used: the
// first X-Forwarded-Proto value, else the proto of the first Forwarded
// element; "" when neither says http or https.
func forwardedProto(h http.Header) string {
	p := h.Get("X-Forwarded-Proto")
	if p == "" {
		if f := h.Get("Forwarded"); f != "" {
			first, _, _ := strings.Cut(f, ",")
			for _, pair := range strings.Split(first, ";") {
				k, v, _ := strings.Cut(strings.TrimSpace(pair), "=")
				if strings.EqualFold(k, "proto") {
					p = strings.Trim(v, `"`)
				}
			}
		}
	}
	p, _, _ = strings.Cut(p, ",")
	switch p = strings.ToLower(strings.TrimSpace(p)); p {
	case "http", "https":
		return p
	}
	return ""
}

// allowOrigin applies the origin check to r: requests without an Origin
// header pass.
func (s *Server) allowOrigin(r *http.Request, p originPolicy) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, scheme, host, port, ok := parseOrigin(origin)
	if s.cfg.CheckOrigin != nil {
		if u == nil {
			u = &url.URL{Opaque: origin}
		}
		return s.cfg.CheckOrigin(r, u)
	}
	if p.any {
		return true // "*" is every origin, "null" (file:// pages, sandboxes) included
	}
	if !ok {
		return false
	}
	if p.rules == nil {
		// Same origin as the request (check_origin: :conn).
		rs := "http"
		if r.TLS != nil {
			rs = "https"
		}
		if s.cfg.TrustForwardedProto {
			if p := forwardedProto(r.Header); p != "" {
				rs = p
			}
		}
		rh, rp, err := net.SplitHostPort(r.Host)
		if err != nil {
			rh, rp = r.Host, defaultPort(rs)
		}
		return scheme == rs && host == strings.ToLower(strings.Trim(rh, "[]")) && port == rp
	}
	for _, rule := range p.rules {
		if rule.scheme != "" && rule.scheme != scheme {
			continue
		}
		if rule.port != "" && rule.port != port {
			continue
		}
		if rule.host == host || (rule.subdomains && strings.HasSuffix(host, "."+rule.host)) {
			return true
		}
	}
	return false
}
