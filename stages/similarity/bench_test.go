package similarity

import (
	"context"
	"flag"
	"strings"
	"testing"
)

var benchEmbeddings = flag.String("similarity.embeddings", "", "embeddings file(s) for BenchmarkStage, comma-separated")

// BenchmarkStage runs the stage as `connectome run --only similarity --embeddings FILE` does,
// on a file given with -similarity.embeddings: with -memprofile, its heap profile (the note in
// docs/bench/similarity.md; scripts/bench/similarity_faiss.py gen writes such a file).
func BenchmarkStage(b *testing.B) {
	if *benchEmbeddings == "" {
		b.Skip("needs -similarity.embeddings FILE")
	}
	s := DefaultSettings()
	s.Embeddings = strings.Split(*benchEmbeddings, ",")
	for b.Loop() {
		rec := newRecorder(b, b.TempDir())
		if err := rec.run(context.Background(), New(s)); err != nil {
			b.Fatal(err)
		}
	}
}
