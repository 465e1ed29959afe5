// Package client is a Go client for Phoenix channels (the protocol of
// spec §5, vsn 2.0.0 JSON over WebSocket) with the behaviour of phoenix.js
// (§6): heartbeats, reconnection with backoff, rejoin of every channel with
// a new join_ref, pushes with timeouts, and Presence sync.
//
//	sock, err := client.Dial(ctx, "ws://localhost:4000/socket", &client.Options{
//		Params: url.Values{"token": {"abc"}},
//	})
//	ch := sock.Channel("room:lobby", map[string]any{"name": "alice"})
//	pres := client.NewPresence(ch, nil)
//	pres.OnSync(func() { fmt.Println(pres.Keys()) })
//	reply, err := ch.Join(ctx)
//	reply, err = ch.Push(ctx, "new_msg", map[string]string{"body": "hi"})
//
// Differences from phoenix.js, by design: Dial returns an error when the
// first connection fails (later ones are retried forever); Join returns
// the outcome of the first join, and a channel whose first join fails is
// closed instead of retrying (once joined, it rejoins like phoenix.js);
// Leave waits for the server's reply (bounded by the timeout); Presence
// lists keys in sorted order; callbacks run on one goroutine per socket.
package client
