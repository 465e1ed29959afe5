package phx_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/gorilla/websocket"

	"github.com/gopresence/presence/phx"
)

// lobby is a tiny channel: anyone with a user_id may join "room:*"; "shout"
// is broadcast to the room.
type lobby struct{}

func (lobby) Join(ctx context.Context, s *phx.Socket, p phx.Payload) (any, error) {
	return map[string]string{"welcome": s.Assigns().(string)}, nil
}

func (lobby) HandleIn(ctx context.Context, s *phx.Socket, event string, p phx.Payload) (*phx.Reply, error) {
	if event == "shout" {
		return phx.ReplyOK(nil), s.Broadcast("shout", p.JSON)
	}
	return phx.ReplyError(map[string]string{"reason": "unknown event"}), nil
}

func (lobby) Terminate(s *phx.Socket, reason error) {}

// Example mounts a Server at /socket and talks to it as phoenix.js would
// (V2 JSON over WebSocket).
func Example() {
	srv, err := phx.New(phx.Config{
		Mount:    "/socket",
		Channels: []phx.Route{{Pattern: "room:*", Channel: lobby{}}},
		Connect: func(ctx context.Context, info *phx.ConnectInfo) (phx.Identity, error) {
			user := info.Params.Get("user_id")
			if user == "" {
				return phx.Identity{}, errors.New("user_id required")
			}
			return phx.Identity{ID: "user:" + user, Assigns: user}, nil
		},
	})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/socket/", srv)
	hs := httptest.NewServer(mux)
	defer hs.Close()
	defer srv.Shutdown(context.Background())

	url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/socket/websocket?user_id=alice&vsn=2.0.0"
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		panic(err)
	}
	defer ws.Close()
	send := func(s string) { ws.WriteMessage(websocket.TextMessage, []byte(s)) }
	recv := func() string { _, b, _ := ws.ReadMessage(); return string(b) }

	send(`["1","1","room:lobby","phx_join",{}]`)
	fmt.Println(recv())
	send(`["1","2","room:lobby","shout",{"body":"hi"}]`)
	fmt.Println(recv())
	fmt.Println(recv())
	send(`[null,"3","phoenix","heartbeat",{}]`)
	fmt.Println(recv())
	// Output:
	// ["1","1","room:lobby","phx_reply",{"status":"ok","response":{"welcome":"alice"}}]
	// [null,null,"room:lobby","shout",{"body":"hi"}]
	// ["1","2","room:lobby","phx_reply",{"status":"ok","response":{}}]
	// [null,"3","phoenix","phx_reply",{"status":"ok","response":{}}]
}
