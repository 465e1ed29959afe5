package presencechannel_test

import (
	"encoding/base64"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gopresence/presence"
	"github.com/gopresence/presence/internal/logtest"
	"github.com/gopresence/presence/phx"
	"github.com/gopresence/presence/phx/presencechannel"
)

// Secrets stay out of the log with the built-in presence channel, as
// Phoenix filters join params in its logs: with phx and the channel both logging at
// debug level, JWTs refused at connect (bad signature, expired, garbage;
// as a param or in the auth-token subprotocol), and join and update
// payloads carrying secrets, leave no token, password or meta in the log;
// the refusals are logged with their cause.
func TestPresenceChannelLogsNoSecrets(t *testing.T) {
	var buf logtest.Buffer
	log := buf.Logger(slog.LevelDebug)
	secret := []byte("s3cret-s3cret-s3cret-s3cret-s3cr")
	p, err := presence.New(presence.Config{})
	if err != nil {
		t.Fatal(err)
	}
	st := startStack(t, p, presencechannel.Config{Presence: p, Secret: secret, Logger: log}, phx.Config{Logger: log})

	other, _ := presencechannel.SignHS256([]byte("other-key"), map[string]any{"sub": "mallory"})
	expired, _ := presencechannel.SignHS256(secret, map[string]any{"sub": "eve-x9", "exp": time.Now().Add(-time.Hour).Unix()})
	for _, tok := range []string{other, expired, "garbage.tok-123.sig-456"} {
		if _, code := st.dial(t, url.Values{"token": {tok}}); code != 403 {
			t.Fatalf("token %q: %d", tok, code)
		}
	}
	sub := "base64url.bearer.phx." + strings.TrimRight(base64.StdEncoding.EncodeToString([]byte(other)), "=")
	if _, code := st.dial(t, url.Values{}, "phoenix", sub); code != 403 {
		t.Fatalf("subprotocol token: %d", code)
	}
	good, _ := presencechannel.SignHS256(secret, map[string]any{"sub": "alice"})
	a, code := st.dial(t, url.Values{"token": {good}})
	if code != 101 {
		t.Fatalf("dial %d", code)
	}
	a.send(`["1","1","room:l","phx_join",{"meta":{"password":"hunter2"},"token":"` + good + `"}]`)
	a.recvEvent("presence_state")
	a.send(`["1","2","room:l","presence:update",{"meta":"hunter2-not-an-object"}]`)
	a.recvEvent("phx_reply")
	a.send(`["1","3","room:l","no-such-event",{"password":"hunter2"}]`)
	a.recvEvent("phx_reply")

	logged := buf.String()
	for _, want := range []string{"invalid token", "token expired"} {
		if !strings.Contains(logged, want) {
			t.Errorf("refusal %q not logged:\n%s", want, logged)
		}
	}
	for _, s := range []string{good, other, expired, sub[len("base64url.bearer.phx."):], "tok-123", "sig-456", "hunter2", "mallory", "eve-x9"} {
		if strings.Contains(logged, s) {
			t.Errorf("%q logged:\n%s", s, logged)
		}
	}
}
