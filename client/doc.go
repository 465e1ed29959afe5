// Package client is a Go client for Phoenix channels (the vsn 2.0.0 JSON
// frames over WebSocket that presenced and Phoenix speak) with the
// behaviour of phoenix.js: heartbeats, reconnection with backoff, rejoin of
// every channel with a new join_ref, pushes with timeouts, and Presence
// sync.
//
// Against presenced's built-in channel, a join with a "meta" tracks the
// socket under its user key, and "presence:update" changes the meta:
//
//	sock, err := client.Dial(ctx, "ws://127.0.0.1:4000/socket", &client.Options{
//		Params: url.Values{"user_id": {"alice"}}, // with --jwt-secret: {"token": {jwt}}
//	})
//	ch := sock.Channel("room:lobby", map[string]any{"meta": map[string]string{"status": "online"}})
//	pres := client.NewPresence(ch, nil)
//	pres.OnSync(func() { fmt.Println(pres.Keys()) })
//	_, err = ch.Join(ctx)
//	_, err = ch.Push(ctx, "presence:update", map[string]any{"meta": map[string]string{"status": "away"}})
//
// The package example runs this in full.
//
// Differences from phoenix.js, by design: Dial returns an error when the
// first connection fails (later ones are retried forever); Join returns
// the outcome of the first join, and a channel whose first join fails is
// closed instead of retrying (once joined, it rejoins like phoenix.js);
// Leave waits for the server's reply (bounded by the timeout); Presence
// lists keys in sorted order; callbacks run on one goroutine per socket.
package client
