package fetch

import (
	"testing"

	"go.uber.org/goleak"
)

// Workers, waiters and stalled downloads must all be gone when a run returns.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// started by an init() of go.opencensus.io, which the storage client links in
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"))
}
