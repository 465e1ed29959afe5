package compat

import (
	"strconv"
	"testing"
	"time"
)

// stormWindow is presenced's --diff-window in TestPhoenixJSStorm (the
// default, given explicitly), told to the Node test as
// PRESENCE_DIFF_WINDOW_MS: every burst of the storm is sent faster.
const stormWindow = 100 * time.Millisecond

// TestPhoenixJSStorm: hundreds of phoenix.js sockets in one topic through a
// storm of changes in bursts shorter than the diff window (storm.test.mjs):
// double status updates, leaves, clean and abrupt disconnects, new joins,
// a leave and join again of a device (a new channel on the same socket,
// and a fresh socket of the same user), join+leave ghosts, a watcher
// joining mid-burst. After a quiet period every remaining Presence.list
// equals the server's and the truth the test kept; 300 changes sent at
// once go as far fewer presence_diffs. PRESENCE_STORM_SEED replays a storm.
func TestPhoenixJSStorm(t *testing.T) {
	node := requireNode(t)
	addr := freeAddr(t)
	s := launch(t, "storm", addr, []string{"--listen", addr, "--node", "storm", "--shutdown-timeout", "3s",
		"--log-level", "info", "--diff-window", stormWindow.String()})
	runNode(t, node, []string{"PRESENCE_URL=" + s.URL(),
		"PRESENCE_DIFF_WINDOW_MS=" + strconv.FormatInt(stormWindow.Milliseconds(), 10)}, "storm.test.mjs")
}
