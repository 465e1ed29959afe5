package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

// A token from `presenced token` opens a socket of a node with the same
// secret, as its sub, limited to its topics.
func TestTokenCommand(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"token", "--sub", "alice", "--topics", "room:*"},
		env(map[string]string{"PRESENCE_JWT_SECRET": secret32}), &out, &out); err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(out.String())
	n := startNode(t, []string{"--jwt-secret", secret32}, nil, nil)
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+n.addr+"/socket/websocket?vsn=2.0.0&token="+tok, nil)
	if err != nil {
		t.Fatalf("dial with the minted token: %v", err)
	}
	defer ws.Close()
	for i, topic := range []string{"room:lobby", "other:x"} {
		ws.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `["%d","%d","%s","phx_join",{}]`, i, i, topic))
		_, b, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if ok := strings.Contains(string(b), `"status":"ok"`); ok != (i == 0) {
			t.Errorf("join %s: %s", topic, b)
		}
		if i == 0 {
			ws.ReadMessage() // presence_state
		}
	}
	for _, bad := range [][]string{{"token"}, {"token", "--sub", "a", "--jwt-secret", "short"}} {
		if err := run(context.Background(), bad, env(nil), &out, &out); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
