package phx

import (
	"runtime"
	"slices"
	"sync"
)

// topicSubs are a topic's local subscribers. Most topics have a few: they
// are kept in a slice, replaced (never modified) on every change, so that a
// broadcast can fan out over it without holding hub.mu. Past smallTopic
// members a map holds them, and list is a snapshot built on the first
// broadcast after a change.
type topicSubs struct {
	set  map[*Socket]struct{} // nil while the topic is small
	list []*Socket            // small: the members; else the snapshot, nil when stale
}

const smallTopic = 16

// hub is the server's topic registry: the local subscribers of each
// topic, which broadcasts fan out over.
type hub struct {
	// mu guards topics (and every topicSubs in it).
	mu     sync.RWMutex
	topics map[string]*topicSubs
}

func (h *hub) subscribe(sock *Socket) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ts := h.topics[sock.topic]
	if ts == nil {
		ts = &topicSubs{}
		h.topics[sock.topic] = ts
	}
	switch {
	case ts.set == nil && len(ts.list) < smallTopic:
		ts.list = append(slices.Clip(ts.list), sock)
	case ts.set == nil:
		ts.set = make(map[*Socket]struct{}, 2*smallTopic)
		for _, x := range ts.list {
			ts.set[x] = struct{}{}
		}
		ts.set[sock] = struct{}{}
		ts.list = nil
	default:
		ts.set[sock] = struct{}{}
		ts.list = nil
	}
}

func (h *hub) unsubscribe(sock *Socket) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ts := h.topics[sock.topic]
	if ts == nil {
		return
	}
	n := 0
	if ts.set == nil {
		if i := slices.Index(ts.list, sock); i >= 0 {
			ts.list = slices.Concat(ts.list[:i], ts.list[i+1:])
		}
		n = len(ts.list)
	} else {
		delete(ts.set, sock)
		ts.list = nil
		n = len(ts.set)
	}
	if n == 0 {
		delete(h.topics, sock.topic)
	}
}

// subscribers returns the sockets joined to topic (a list not to modify).
func (h *hub) subscribers(topic string) []*Socket {
	h.mu.RLock()
	ts := h.topics[topic]
	var list []*Socket
	if ts != nil {
		list = ts.list
	}
	h.mu.RUnlock()
	if ts == nil || list != nil {
		return list
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if ts = h.topics[topic]; ts == nil {
		return nil
	}
	if ts.list == nil {
		ts.list = make([]*Socket, 0, len(ts.set))
		for sock := range ts.set {
			ts.list = append(ts.list, sock)
		}
	}
	return ts.list
}

// Subscribers returns how many sockets are joined to topic on this server.
func (s *Server) Subscribers(topic string) int {
	h := &s.hub
	h.mu.RLock()
	defer h.mu.RUnlock()
	switch ts := h.topics[topic]; {
	case ts == nil:
		return 0
	case ts.set == nil:
		return len(ts.list)
	default:
		return len(ts.set)
	}
}

// Broadcast sends event with payload to every socket joined to topic on this
// server (a local fan-out: join_ref and ref null). The payload (a value
// that encodes to a JSON object, a json.RawMessage, a JSONAppender, or
// Binary) is encoded once, and framed once per serializer in use; the same
// bytes go to every subscriber. It never blocks on a client: a subscriber whose queue is full
// is disconnected. Safe from any goroutine; broadcasts made by one goroutine
// reach each subscriber in order. Sockets still joining get it right after
// their join reply.
func (s *Server) Broadcast(topic, event string, payload any) error {
	return s.broadcast(topic, event, payload, nil)
}

// BroadcastFrom is Broadcast to every subscriber of topic but from.
func (s *Server) BroadcastFrom(from *Socket, topic, event string, payload any) error {
	return s.broadcast(topic, event, payload, from)
}

// fanoutChunk is the number of subscribers above which a broadcast is
// written by several goroutines (one per P, each over a part of the list).
// Most of a delivery is the write(2) to the subscriber's socket, so a large
// fan-out uses every core instead of one.
const fanoutChunk = 512

func (s *Server) broadcast(topic, event string, payload any, from *Socket) error {
	enc := bcast{topic: topic, event: event}
	if b, ok := payload.(Binary); ok {
		f, err := encodeBinaryBroadcast(topic, event, b)
		if err != nil {
			return err
		}
		enc.bin = withWire(f)
	} else {
		p, err := marshalObject(payload)
		if err != nil {
			return err
		}
		enc.payload = p
	}
	list := s.hub.subscribers(topic)
	workers := min(runtime.GOMAXPROCS(0), len(list)/fanoutChunk)
	if workers <= 1 {
		enc.deliver(list, from)
		return nil
	}
	// Frames are built before the workers share enc.
	if enc.payload != nil {
		enc.v1 = withWire(serV1.encodeText(nil, nil, topic, event, enc.payload))
		enc.v2 = withWire(serV2.encodeText(nil, nil, topic, event, enc.payload))
	}
	fanout(enc, list, from, workers)
	return nil
}

// fanout delivers enc over list on workers goroutines (enc is shared: its
// frames must be built). Apart from broadcast, so that the serial path's
// bcast stays on the stack.
func fanout(enc bcast, list []*Socket, from *Socket, workers int) {
	var wg sync.WaitGroup
	per := (len(list) + workers - 1) / workers
	for i := per; i < len(list); i += per {
		part := list[i:min(i+per, len(list))]
		wg.Go(func() { enc.deliver(part, from) })
	}
	enc.deliver(list[:per], from)
	wg.Wait()
}

// bcast caches the encodings of one broadcast.
type bcast struct {
	topic, event string
	payload      []byte // JSON payload, nil for binary
	bin          frame
	v1, v2       frame
}

// deliver queues the broadcast to every socket of list but from (and
// writes it, when the connection is idle: see outbox.deliver).
func (b *bcast) deliver(list []*Socket, from *Socket) {
	for _, sock := range list {
		if sock == from {
			continue
		}
		if ig := sock.ignored.Load(); ig != nil && slices.Contains(*ig, b.event) {
			continue
		}
		if f, ok := b.frameFor(sock.c); ok {
			sock.c.out.deliver(sock, f)
		}
	}
}

func (b *bcast) frameFor(c *conn) (frame, bool) {
	if b.payload == nil {
		if !c.carriesBinary() {
			return frame{}, false
		}
		return b.bin, true
	}
	if c.ser == serV1 {
		if b.v1.data == nil {
			b.v1 = withWire(serV1.encodeText(nil, nil, b.topic, b.event, b.payload))
		}
		return b.v1, true
	}
	if b.v2.data == nil {
		b.v2 = withWire(serV2.encodeText(nil, nil, b.topic, b.event, b.payload))
	}
	return b.v2, true
}
