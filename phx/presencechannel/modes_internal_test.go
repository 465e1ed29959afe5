package presencechannel

import "testing"

func TestMentionsPresence(t *testing.T) {
	for b, want := range map[string]bool{
		`{"meta":{}}`: false, `{"presence":{}}`: true, `{"Presence":1}`: true, `{"meta":{"x":"PRESENCE"}}`: true,
		`{"presences":1}`: false, `{"a":"b","presence"`: true, `"presence`: false, ``: false, `{"meta":{"p":"x"},"preSence":{}}`: true,
	} {
		if got := mentionsPresence([]byte(b)); got != want {
			t.Errorf("%s: %v, want %v", b, got, want)
		}
	}
}
