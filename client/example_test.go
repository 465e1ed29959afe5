package client_test

import (
	"context"
	"fmt"
	"log"
	"net/http/httptest"
	"net/url"
	"strings"

	"github.com/gopresence/presence"
	"github.com/gopresence/presence/client"
	"github.com/gopresence/presence/phx"
	"github.com/gopresence/presence/phx/presencechannel"
)

// Example joins a presence channel of a presenced stack (started here in
// the process) and follows who is present.
func Example() {
	ctx := context.Background()
	p, _ := presence.New(presence.Config{})
	p.Start(ctx)
	defer p.Close()
	pc, _ := presencechannel.New(presencechannel.Config{Presence: p})
	srv, _ := phx.New(phx.Config{Channels: pc.Routes(), Connect: pc.Connect})
	defer srv.Shutdown(ctx)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	endpoint := "ws" + strings.TrimPrefix(hs.URL, "http") + "/socket"

	sock, err := client.Dial(ctx, endpoint, &client.Options{Params: url.Values{"user_id": {"alice"}}})
	if err != nil {
		log.Fatal(err)
	}
	defer sock.Close()

	ch := sock.Channel("room:lobby", map[string]any{"meta": map[string]string{"status": "online"}})
	pres := client.NewPresence(ch, nil)
	synced := make(chan []string, 1)
	pres.OnSync(func() { synced <- pres.Keys() })
	if _, err := ch.Join(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("present:", <-synced)
	// Output: present: [alice]
}
