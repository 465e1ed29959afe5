package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/gopresence/presence"
	"github.com/gopresence/presence/client"
	"github.com/gopresence/presence/internal/testenv"
	"github.com/gopresence/presence/phx"
	"github.com/gopresence/presence/phx/presencechannel"
)

// Example joins a room of presenced's built-in channel with a meta, follows
// the room through Presence's OnSync, and changes its status. The server is
// the stack presenced runs (presence, presencechannel, phx), started here in
// the process; the code between the README markers is the README's "A Go
// client" snippet, with the server's address in place of
// ws://127.0.0.1:4000/socket (TestREADMEClientSnippet keeps the two equal).
func Example() {
	p, _ := presence.New(presence.Config{})
	p.Start(context.Background())
	defer p.Close()
	srv, _, _ := presencechannel.NewServer(presencechannel.Config{Presence: p}, phx.Config{})
	defer srv.Shutdown(context.Background())
	hs := httptest.NewServer(srv)
	defer hs.Close()
	endpoint := "ws" + strings.TrimPrefix(hs.URL, "http") + "/socket"

	// README begin
	ctx := context.Background()
	sock, err := client.Dial(ctx, endpoint, &client.Options{
		Params: url.Values{"user_id": {"alice"}}, // with --jwt-secret: {"token": {jwt}}
	})
	if err != nil {
		log.Fatal(err)
	}
	defer sock.Close()

	// OnSync runs after every presence_state and presence_diff, on the
	// socket's event goroutine, with the room as it now is.
	ch := sock.Channel("room:lobby", map[string]any{"meta": map[string]string{"device": "laptop", "status": "online"}})
	pres := client.NewPresence(ch, nil)
	views := make(chan string, 16)
	pres.OnSync(func() {
		views <- strings.Join(client.ListBy(pres, func(key string, e client.Entry) string {
			var meta struct {
				Status string `json:"status"`
			}
			json.Unmarshal(e.Metas[0].Raw, &meta)
			return fmt.Sprintf("%s: %d device(s), %s", key, len(e.Metas), meta.Status)
		}), "; ")
	})
	if _, err := ch.Join(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-views) // alice: 1 device(s), online

	update := map[string]any{"meta": map[string]string{"device": "laptop", "status": "away"}}
	if _, err := ch.Push(ctx, "presence:update", update); err != nil {
		log.Fatal(err)
	}
	for v := range views {
		if strings.Contains(v, "away") {
			fmt.Println(v) // alice: 1 device(s), away
			break
		}
	}
	// README end

	// Output:
	// alice: 1 device(s), online
	// alice: 1 device(s), away
}

// TestREADMEClientSnippet checks that the README's "A Go client" snippet is
// Example's code, with presenced's default address for the server's.
func TestREADMEClientSnippet(t *testing.T) {
	snippet := testenv.READMEBlock(t, "../README.md", "## A Go client", "go")
	want := strings.Replace(testenv.ExampleBody(t, "example_test.go"), "client.Dial(ctx, endpoint,", `client.Dial(ctx, "ws://127.0.0.1:4000/socket",`, 1)
	if snippet != want {
		t.Fatalf("README's Go client snippet differs from Example:\n--- README\n%s--- example\n%s", snippet, want)
	}
}
