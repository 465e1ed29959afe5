package presence_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"strings"
	"testing"

	"github.com/gopresence/presence"
)

// The README's "Embedding in Go" snippet, as it is there (between the
// markers; TestREADMEGoSnippet keeps the two equal).
func Example_readme() {
	// README begin
	ctx := context.Background()
	p, err := presence.New(presence.Config{}) // one node; set Tracker.Bus for a cluster
	if err != nil {
		log.Fatal(err)
	}
	p.Start(ctx)
	defer p.Shutdown(ctx)

	diffs := make(chan presence.Diff, 1)
	cancel := p.Subscribe("room:lobby", func(d presence.Diff) { diffs <- d })
	defer cancel()

	p.Track(ctx, "socket-1", "room:lobby", "alice", json.RawMessage(`{"status":"online"}`))
	fmt.Println("online:", (<-diffs).Online) // online: [alice]

	var meta struct {
		Status string `json:"status"`
	}
	json.Unmarshal(p.List("room:lobby")["alice"].Metas[0], &meta)
	fmt.Println("alice is", meta.Status) // alice is online
	// README end

	// Output:
	// online: [alice]
	// alice is online
}

// TestREADMEGoSnippet checks that the README shows Example_readme's code.
func TestREADMEGoSnippet(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "## Embedding in Go")
	_, rest, ok2 := strings.Cut(rest, "```go\n")
	snippet, _, ok3 := strings.Cut(rest, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README has no Go block under \"Embedding in Go\"")
	}
	src, err := os.ReadFile("readme_example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ := strings.Cut(string(src), "\t// README begin\n")
	body, _, _ = strings.Cut(body, "\t// README end\n")
	var want strings.Builder
	for _, line := range strings.SplitAfter(body, "\n") {
		want.WriteString(strings.TrimPrefix(line, "\t"))
	}
	if snippet != want.String() {
		t.Fatalf("README's Go snippet differs from Example_readme:\n--- README\n%s--- example\n%s", snippet, want.String())
	}
}
