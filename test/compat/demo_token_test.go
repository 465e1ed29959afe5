package compat

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// tokenSecret is the HS256 secret of the token-mode node (32 bytes).
const tokenSecret = "compat-demo-token-mode-secret-32b"

// TestDemoPageTokenMode drives the demo page of a node started with
// --jwt-secret (demo-token.test.mjs): the page asks for a token, says how
// to mint one, refuses what is not a valid token with a reason, and two
// people with tokens minted by `presenced token` see each other.
// Screenshots of the prompt and the room go to the output directory.
func TestDemoPageTokenMode(t *testing.T) {
	node := requireNode(t)
	requireChromium(t)
	outDir := screenshotDir(t)
	addr := freeAddr(t)
	s := launch(t, "token", addr, []string{"--listen", addr, "--node", "token", "--jwt-secret", tokenSecret,
		"--shutdown-timeout", "3s", "--log-level", "info"})
	mint := func(sub string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, presenced(t), "token", "--sub", sub, "--ttl", "1h")
		cmd.Env = append(os.Environ(), "PRESENCE_JWT_SECRET="+tokenSecret)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("presenced token --sub %s: %v", sub, err)
		}
		return strings.TrimSpace(string(out))
	}
	runNode(t, node, []string{"PRESENCE_URL=" + s.URL(), "PRESENCE_COMPAT_OUT=" + outDir, "CHROMIUM=" + chromium,
		"TOKEN_ALICE=" + mint("alice"), "TOKEN_BOB=" + mint("bob"), "TOKEN_SECRET=" + tokenSecret}, "demo-token.test.mjs")
}
