package tracker

// LockShardForTest holds the lock of topic's shard until the returned
// function is called.
func LockShardForTest(t *Tracker, topic string) func() {
	s := t.shardFor(topic)
	s.mu.Lock()
	return s.mu.Unlock
}
