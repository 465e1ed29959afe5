package redisbus

import (
	"testing"

	"github.com/gopresence/presence/internal/testenv"
)

// TestMain reports, in one line, the integration tests skipped for want of
// a tool (see testenv).
func TestMain(m *testing.M) { testenv.Main(m) }
