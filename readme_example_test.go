package presence_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"testing"

	"github.com/gopresence/presence"
	"github.com/gopresence/presence/internal/testenv"
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
	snippet := testenv.READMEBlock(t, "README.md", "## Embedding in Go", "go")
	if want := testenv.ExampleBody(t, "readme_example_test.go"); snippet != want {
		t.Fatalf("README's Go snippet differs from Example_readme:\n--- README\n%s--- example\n%s", snippet, want)
	}
}
