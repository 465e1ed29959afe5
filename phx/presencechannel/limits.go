package presencechannel

import (
	"time"

	"golang.org/x/time/rate"
)

// connLimits are the rate limits of one connection, shared by the
// channels it joined: a client cannot multiply its budget by joining more
// topics.
type connLimits struct {
	broadcast *rate.Limiter
	update    *rate.Limiter
	warned    time.Time // last refusal logged (guarded by User.mu)
}

func limiter(r float64, burst int) *rate.Limiter {
	if r < 0 {
		return rate.NewLimiter(rate.Inf, 0)
	}
	return rate.NewLimiter(rate.Limit(r), burst)
}

// limits returns u's rate limits, making them on first use (Connect's
// users get theirs on the first limited event, as do users built by hand).
func (ch *Channel) limits(u *User) *connLimits {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.lim == nil {
		u.lim = &connLimits{
			broadcast: limiter(ch.cfg.BroadcastRate, ch.cfg.BroadcastBurst),
			update:    limiter(ch.cfg.UpdateRate, ch.cfg.UpdateBurst),
		}
	}
	return u.lim
}

// allow takes a token from l (u's broadcast or update limiter). A refusal
// is logged at most once a second per connection: a flooding client would
// otherwise fill the log with one line per frame.
func (ch *Channel) allow(u *User, l *rate.Limiter, event, topic string) bool {
	now := time.Now()
	if l.AllowN(now, 1) {
		return true
	}
	u.mu.Lock()
	log := now.Sub(u.lim.warned) >= time.Second
	if log {
		u.lim.warned = now
	}
	u.mu.Unlock()
	if log {
		ch.log.Warn("presencechannel: rate limited", "key", u.Key, "topic", topic, "event", event)
	}
	return false
}
