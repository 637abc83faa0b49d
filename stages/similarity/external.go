package similarity

// SelfContained tells the engine that, fed with external embedding files (--embeddings), the
// stage needs no upstream stage's output: `run --only similarity --embeddings F` works in an
// empty run directory.
func (st *Stage) SelfContained() bool { return len(st.s.Embeddings) > 0 }
