package presencechannel

import "github.com/gopresence/presence/phx"

// NewServer returns the stack presenced serves: the built-in channel of
// cfg (New) on a phx.Server of server. The channel's routes come after
// server.Channels (first match wins, so an application's own routes take
// precedence); a nil server.Connect is the channel's Connect, and a nil
// server.Logger is cfg.Logger. cfg.Presence must be started before the
// server serves its first join.
//
// Shutdown of the whole stack is the caller's: the returned Server's
// Shutdown closes the sockets, the Presence's Shutdown or Close stops
// tracking (presenced stops the Presence first, so that peers learn of
// the stop before the clients reconnect elsewhere).
func NewServer(cfg Config, server phx.Config) (*phx.Server, *Channel, error) {
	ch, err := New(cfg)
	if err != nil {
		return nil, nil, err
	}
	server.Channels = append(server.Channels[:len(server.Channels):len(server.Channels)], ch.Routes()...)
	if server.Connect == nil {
		server.Connect = ch.Connect
	}
	if server.Logger == nil {
		server.Logger = cfg.Logger
	}
	srv, err := phx.New(server)
	if err != nil {
		return nil, nil, err
	}
	return srv, ch, nil
}
