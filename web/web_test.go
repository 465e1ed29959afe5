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
	for _, path := range []string{"/", "/app.js", "/app.css", "/config.json", "/missing"} {
		w := httptest.NewRecorder()
		Handler(Config{}).ServeHTTP(w, httptest.NewRequest("GET", path, nil))
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

// config.json tells the page whether the server wants tokens.
func TestConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{{Config{}, `{"identity":"dev"}`}, {Config{TokenMode: true}, `{"identity":"token"}`}} {
		w := httptest.NewRecorder()
		Handler(c.cfg).ServeHTTP(w, httptest.NewRequest("GET", "/config.json", nil))
		if w.Code != 200 || w.Body.String() != c.want || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%+v: %d %q %q, want %s", c.cfg, w.Code, w.Body, w.Header().Get("Content-Type"), c.want)
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
