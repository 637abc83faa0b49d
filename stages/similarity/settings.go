package similarity

import "fmt"

// Settings decide the similarity stage's output.
type Settings struct {
	// K is the number of closest and of farthest neighbours kept per node.
	K int `yaml:"k" json:"k"`
	// BlockSize is the number of rows per block of the blocked product; 0 = automatic. It
	// changes speed and memory, never the result.
	BlockSize int `yaml:"block_size" json:"block_size"`
	// Embeddings, when set, are external Arrow IPC or Parquet files read instead of the
	// run's embeddings/<model>.arrow (the CLI's --embeddings).
	Embeddings []string `yaml:"embeddings,omitempty" json:"embeddings,omitempty"`

	// PipelineVersion and IDCVersion only go into the tables' metadata; the engine fills
	// them. They are not part of the config hash.
	PipelineVersion string `yaml:"-" json:"-"`
	IDCVersion      string `yaml:"-" json:"-"`
}

// DefaultSettings are the published connectome's: top 5.
func DefaultSettings() Settings { return Settings{K: 5} }

// Validate reports a setting that cannot work.
func (s Settings) Validate() error {
	if s.K < 1 || s.K > 10000 {
		return fmt.Errorf("k = %d, want 1..10000", s.K)
	}
	if s.BlockSize < 0 {
		return fmt.Errorf("block_size = %d, want ≥ 0 (0 = automatic)", s.BlockSize)
	}
	for _, p := range s.Embeddings {
		if p == "" {
			return fmt.Errorf("empty path in embeddings")
		}
	}
	return nil
}
