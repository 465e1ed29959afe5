package presencechannel_test

import (
	"context"
	"fmt"
	"log"
	"net/http/httptest"
	"net/url"
	"strings"

	"github.com/gopresence/presence"
	goclient "github.com/gopresence/presence/client"
	"github.com/gopresence/presence/phx"
	"github.com/gopresence/presence/phx/presencechannel"
)

// ExampleNewServer builds the stack presenced serves (presence, the
// built-in channel, phx) in the process and joins a room through it.
func ExampleNewServer() {
	ctx := context.Background()
	p, err := presence.New(presence.Config{}) // a Tracker on an in-process bus
	if err != nil {
		log.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	srv, _, err := presencechannel.NewServer(presencechannel.Config{Presence: p, Topics: []string{"room:*"}},
		phx.Config{LongPoll: true})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown(ctx)
	hs := httptest.NewServer(srv) // presenced serves it at /socket/
	defer hs.Close()

	sock, err := goclient.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http")+"/socket",
		&goclient.Options{Params: url.Values{"user_id": {"alice"}}}) // dev mode: no Secret
	if err != nil {
		log.Fatal(err)
	}
	defer sock.Close()
	if _, err := sock.Channel("room:lobby", map[string]any{"meta": map[string]string{"status": "online"}}).Join(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(p.List("room:lobby")["alice"].Metas), "meta of alice in room:lobby")
	// Output: 1 meta of alice in room:lobby
}
