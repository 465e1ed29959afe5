package compat

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopresence/presence/internal/testenv"
)

// readmeGoClient is the README's "A Go client" snippet as a program (its
// imports and a main around it), pointed at s.
func readmeGoClient(t *testing.T, s *server) string {
	t.Helper()
	code := testenv.READMEBlock(t, filepath.Join("..", "..", "README.md"), "## A Go client", "go")
	if !strings.Contains(code, "ws://127.0.0.1:4000/socket") {
		t.Fatal("README's Go client is not for ws://127.0.0.1:4000/socket")
	}
	code = strings.ReplaceAll(code, "ws://127.0.0.1:4000", "ws://"+s.addr)
	var b strings.Builder
	b.WriteString("package main\n\nimport (\n")
	for _, imp := range []string{"context", "encoding/json", "fmt", "log", "net/url", "strings", "github.com/gopresence/presence/client"} {
		b.WriteString("\t\"" + imp + "\"\n")
	}
	b.WriteString(")\n\nfunc main() {\n")
	for _, line := range strings.SplitAfter(code, "\n") {
		if line != "" && line != "\n" {
			b.WriteString("\t")
		}
		b.WriteString(line)
	}
	b.WriteString("}\n")
	return b.String()
}

// The README's Go client snippet, as written (only the port differs), built
// as a program and run against presenced: it prints alice online, then
// away, and ends by itself.
func TestREADMEGoClient(t *testing.T) {
	s := startServer(t)
	dir, err := os.MkdirTemp(".", "readme-goclient-") // inside the module, so that it imports this one
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(readmeGoClient(t, s)), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "readme-goclient")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./"+dir)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("the README's Go client does not build: %v\n%s", err, out)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	run := exec.CommandContext(ctx, bin)
	run.Stderr = &lineLog{t: t}
	out, err := run.Output()
	if err != nil {
		t.Fatalf("the README's Go client failed: %v; it printed %q", err, out)
	}
	if want := "alice: 1 device(s), online\nalice: 1 device(s), away\n"; string(out) != want {
		t.Fatalf("the README's Go client printed %q, want %q", out, want)
	}
}
