package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
)

// --help goes to stdout, and each default shows once.
func TestHelpOnStdout(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, env(nil), &stdout, &stderr); err != errHelp {
		t.Fatalf("--help: %v", err)
	}
	if stderr.Len() != 0 || !strings.Contains(stdout.String(), "Usage: presenced") {
		t.Fatalf("--help: stdout %d bytes, stderr %q", stdout.Len(), stderr.String())
	}
	if n := strings.Count(helpOf(stdout.String(), "node"), "default"); n != 1 {
		t.Errorf("--node's default shown %d times:\n%s", n, helpOf(stdout.String(), "node"))
	}
}

// A mistyped flag is one line naming it, not the whole usage.
func TestUnknownFlagIsOneLine(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"--lisen", "x"}, env(nil), &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "lisen") || !strings.Contains(err.Error(), "--help") {
		t.Fatalf("unknown flag: %v", err)
	}
	if stdout.Len()+stderr.Len() != 0 || strings.Contains(err.Error(), "\n") {
		t.Fatalf("more than one line: %q / %q / %q", err, stdout.String(), stderr.String())
	}
}

// The period errors name the flags.
func TestPeriodErrorsNameFlags(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"--listen", "127.0.0.1:0", "--broadcast-period", "1s", "--down-period", "1s"}, env(nil), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "--down-period") || !strings.Contains(err.Error(), "--broadcast-period") || strings.Contains(err.Error(), "_period") {
		t.Fatalf("down period error: %v", err)
	}
	err = run(context.Background(), []string{"--listen", "127.0.0.1:0", "--down-period", "30s", "--permdown-period", "20s"}, env(nil), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "--permdown-period") {
		t.Fatalf("permdown period error: %v", err)
	}
}

// A PRESENCE_ variable that is no flag's is warned about at startup.
func TestUnknownEnvironmentWarned(t *testing.T) {
	prev := environ
	environ = func() []string {
		return []string{"PRESENCE_JWT_SECRT=x", "PRESENCE_NODE=n1", "PRESENCE_REQUIRE_ALL=1", "HOME=/"}
	}
	defer func() { environ = prev }()
	n := startNode(t, nil, map[string]string{"PRESENCE_NODE": "n1"}, nil)
	out := n.out.String()
	if !strings.Contains(out, "PRESENCE_JWT_SECRT is not a presenced setting") {
		t.Fatalf("no warning for PRESENCE_JWT_SECRT:\n%s", out)
	}
	if strings.Contains(out, "PRESENCE_NODE is not") || strings.Contains(out, "PRESENCE_REQUIRE_ALL is not") {
		t.Fatalf("a known variable warned about:\n%s", out)
	}
}

// A method a route does not serve answers 405, not 404.
func TestWrongMethodIs405(t *testing.T) {
	n := startNode(t, nil, nil, nil)
	for _, path := range []string{"/api/v1/cluster", "/healthz", "/"} {
		resp, err := http.Post("http://"+n.addr+path, "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST %s: %d, want 405", path, resp.StatusCode)
		}
	}
}
