// Package web is presenced's demo page: hand-written HTML and JavaScript,
// embedded in the binary, no build step. The page speaks the Phoenix
// channels protocol (V2 JSON) to /socket/websocket itself.
package web

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// ContentSecurityPolicy is sent with every file of the page. The page shows
// names and metas other users chose; it only ever puts them in the DOM as
// text, and the policy is the second line: no inline or foreign script or
// style, sockets to this server only, no framing (clickjacking), no <base>.
const ContentSecurityPolicy = "default-src 'self'; connect-src 'self' ws: wss:; script-src 'self'; " +
	"style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"

// Config is what the page needs to know about the server.
type Config struct {
	// TokenMode is true when sockets must carry a JWT (param token): the
	// page then asks for a token, and says how to mint one, instead of a
	// name it cannot use.
	TokenMode bool
}

// Handler serves the demo page at / and its assets, with a
// Content-Security-Policy, no MIME sniffing (a file is only what its
// Content-Type says) and no Referer sent from the page. config.json tells
// the page cfg.
func Handler(cfg Config) http.Handler {
	sub, _ := fs.Sub(static, "static")
	files := http.FileServerFS(sub)
	identity := "dev"
	if cfg.TokenMode {
		identity = "token"
	}
	config, _ := json.Marshal(map[string]string{"identity": identity})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if r.URL.Path == "/config.json" {
			h.Set("Content-Type", "application/json")
			h.Set("Cache-Control", "no-store")
			w.Write(config)
			return
		}
		files.ServeHTTP(w, r)
	})
}
