package embed

import (
	"testing"

	"connectome/internal/layout"
)

// A sharded run's merge pulls a shard's tables, not its committed batches nor the tables'
// Parquet copies (which it never reads).
func TestPublished(t *testing.T) {
	st := &Stage{}
	for rel, want := range map[string]bool{
		"CTFM.arrow":   true,
		"CTFM.parquet": false,
		layout.PartsDir + "/CTFM/part-000001.arrow": false,
		"_failures.jsonl": true,
	} {
		if got := st.Published(rel); got != want {
			t.Errorf("Published(%q) = %v, want %v", rel, got, want)
		}
	}
}
