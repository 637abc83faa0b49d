package fetch

import (
	"context"
	"fmt"
	"time"

	"connectome/internal/gcp"
)

// Sources of the DICOM files.
const (
	SourceGCS   = "gcs"   // download from the bucket named in each gcs_url
	SourceLocal = "local" // the files are already on disk (instances' local_path, cohort source file)
)

// Settings configure the fetch stage.
type Settings struct {
	// Source is gcs or local.
	Source string `yaml:"source" json:"source"`
	// Concurrency is the number of objects in flight.
	Concurrency int `yaml:"concurrency" json:"concurrency"`
	// CacheDir holds <crdc_series_uuid>/<crdc_instance_uuid>.dcm; empty means <run dir>/dicom.
	// Point several runs at one directory to share downloads.
	CacheDir string `yaml:"cache_dir,omitempty" json:"cache_dir,omitempty"`
	// Endpoint is the storage server's base URL (an emulator); empty means
	// STORAGE_EMULATOR_HOST when set, else Cloud Storage.
	Endpoint string `yaml:"endpoint,omitempty" json:"endpoint,omitempty"`
	// Retries is how often a failed object is retried (429, 5xx, resets, timeouts, bad checksum).
	// A 429 or 503 with Retry-After waits what the server asks (at most 60 s) instead of the backoff.
	Retries int `yaml:"retries" json:"retries"`
	// ObjectTimeout bounds one attempt at one object, as a Go duration ("60s").
	ObjectTimeout string `yaml:"object_timeout" json:"object_timeout"`
	// MinFreeBytes is the free space that must remain on the cache's disk after the download.
	MinFreeBytes int64 `yaml:"min_free_bytes" json:"min_free_bytes"`
	// Models whose crops decide the slices to fetch, by registry name; empty means all.
	Models []string `yaml:"models" json:"models"`

	// PipelineVersion goes into metadata only; the caller fills it.
	PipelineVersion string `yaml:"-" json:"-"`
}

// DefaultSettings: Cloud Storage, 32 objects in flight, 5 retries, 60 s per attempt, 1 GiB
// of headroom on disk.
func DefaultSettings() Settings {
	return Settings{
		Source:        SourceGCS,
		Concurrency:   32,
		Retries:       5,
		ObjectTimeout: "60s",
		MinFreeBytes:  1 << 30,
	}
}

// Validate reports a setting that cannot work, naming the key.
func (s Settings) Validate() error {
	switch s.Source {
	case SourceGCS, SourceLocal:
	default:
		return fmt.Errorf("source %q: want %s or %s", s.Source, SourceGCS, SourceLocal)
	}
	if s.Concurrency < 1 || s.Concurrency > 1024 {
		return fmt.Errorf("concurrency %d: want 1..1024", s.Concurrency)
	}
	if s.Retries < 0 || s.Retries > 100 {
		return fmt.Errorf("retries %d: want 0..100", s.Retries)
	}
	if _, err := s.objectTimeout(); err != nil {
		return err
	}
	if s.MinFreeBytes < 0 {
		return fmt.Errorf("min_free_bytes %d: want >= 0", s.MinFreeBytes)
	}
	return nil
}

func (s Settings) objectTimeout() (time.Duration, error) {
	d, err := time.ParseDuration(s.ObjectTimeout)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("object_timeout %q: want a positive duration such as 60s", s.ObjectTimeout)
	}
	return d, nil
}

// Downloader is how fetch downloads from store (retries, attempt timeout), for the other
// readers of the same bucket (the cohort stage's SR objects). Call it on valid settings.
func (s Settings) Downloader(store gcp.ObjectStore) *gcp.Downloader {
	timeout, _ := s.objectTimeout()
	return &gcp.Downloader{Store: store, Retries: s.Retries, Timeout: timeout}
}

// ObjectStore is the storage client fetch downloads with (see internal/gcp).
type ObjectStore = gcp.ObjectStore

// NewGCSClient returns the anonymous Cloud Storage client for fetch.endpoint ("" = Cloud
// Storage, or STORAGE_EMULATOR_HOST when set).
func NewGCSClient(ctx context.Context, endpoint string) (ObjectStore, error) {
	return gcp.NewGCSClient(ctx, endpoint)
}
