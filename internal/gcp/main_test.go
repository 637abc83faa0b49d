package gcp_test

import (
	"testing"

	"go.uber.org/goleak"
)

// No download may leave a goroutine behind (stalled bodies, retries, cancelled reads).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// started by an init() of go.opencensus.io, which the storage client links in
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"))
}
