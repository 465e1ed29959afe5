package web

import (
	"context"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gopresence/presence/internal/testenv"
)

func TestSecurityHeaders(t *testing.T) {
	for _, path := range []string{"/", "/app.js", "/app.css", "/missing"} {
		w := httptest.NewRecorder()
		Handler().ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		want := 200
		if path == "/missing" {
			want = 404
		}
		if w.Code != want {
			t.Errorf("GET %s: %d", path, w.Code)
		}
		for k, v := range map[string]string{
			"Content-Security-Policy": "default-src 'self'; connect-src 'self' ws: wss:; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
		} {
			if got := w.Header().Get(k); got != v {
				t.Errorf("GET %s: %s = %q, want %q", path, k, got, v)
			}
		}
	}
}

// The page keeps to its own policy: no inline script or style.
func TestPageHasNothingInline(t *testing.T) {
	b, err := static.ReadFile("static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, bad := range []string{"<script>", "<style", " style=", " onclick=", " onload=", " onsubmit=", "javascript:"} {
		if strings.Contains(page, bad) {
			t.Errorf("index.html has %q, which the Content-Security-Policy blocks", bad)
		}
	}
}

// app.test.mjs runs app.js on a fake DOM, with users named after
// Object.prototype's properties.
func TestAppJS(t *testing.T) {
	node := testenv.LookPath(t, "node", "app.test.mjs needs Node.js 20+")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, "--test", "--test-timeout=30000", "app.test.mjs").CombinedOutput()
	if err != nil {
		t.Fatalf("node --test app.test.mjs: %v\n%s", err, out)
	}
}
