// Package web is presenced's demo page: hand-written HTML and JavaScript,
// embedded in the binary, no build step. The page speaks the Phoenix
// channels protocol (V2 JSON) to /socket/websocket itself.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the demo page at / and its assets.
func Handler() http.Handler {
	sub, _ := fs.Sub(static, "static")
	return http.FileServerFS(sub)
}
