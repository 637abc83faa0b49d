package gcp_test

import (
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectome/internal/gcp"
)

// memStore serves one object with whatever metadata a case gives it: it checks the
// downloader's own verification, independent of the storage client's.
type memStore struct {
	body   []byte
	size   int64
	crc    uint32
	hasCRC bool
}

func (m *memStore) Open(ctx context.Context, bucket, key string) (*gcp.Object, error) {
	return &gcp.Object{Body: io.NopCloser(bytes.NewReader(m.body)), Size: m.size, CRC32C: m.crc, HasCRC32C: m.hasCRC}, nil
}
func (m *memStore) Close() error { return nil }

func TestDownloadVerifies(t *testing.T) {
	body := []byte("0123456789abcdef")
	good := crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli))
	cases := []struct {
		name  string
		store memStore
		want  gcp.Kind
	}{
		{"ok", memStore{body, 16, good, true}, ""},
		{"size unknown", memStore{body, -1, good, true}, ""},
		{"wrong crc", memStore{body, 16, good ^ 1, true}, gcp.KindChecksum},
		{"no crc", memStore{body, 16, 0, false}, gcp.KindChecksum},
		{"short body", memStore{body[:10], 16, good, true}, gcp.KindChecksum},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "o.dcm")
			d := &gcp.Downloader{Store: &tc.store, Retries: 2, BackoffBase: 1}
			res, err := d.Download(context.Background(), "b", "k", dst, 0)
			if tc.want == "" {
				got, _ := os.ReadFile(dst)
				if err != nil || !bytes.Equal(got, body) || res.Attempts != 1 {
					t.Fatalf("err %v, attempts %d, file %q", err, res.Attempts, got)
				}
				return
			}
			var de *gcp.Error
			if !errors.As(err, &de) || de.Kind != tc.want {
				t.Fatalf("err = %v, want %s", err, tc.want)
			}
			if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("unverified content was renamed into place")
			}
		})
	}
}

// Wiring B of toolchain.md §4.1: no endpoint, STORAGE_EMULATOR_HOST names the server.
func TestNewGCSClientFromEnv(t *testing.T) {
	const key = "11111111-2222-3333-4444-555555555555/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee.dcm"
	data := content(9, 5000)
	srv, _ := startServer(t, map[string][]byte{key: data})
	t.Setenv("STORAGE_EMULATOR_HOST", strings.TrimPrefix(srv.URL(), "http://"))
	store, err := gcp.NewGCSClient(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	dst := filepath.Join(t.TempDir(), "o.dcm")
	if _, err := (&gcp.Downloader{Store: store}).Download(context.Background(), bucket, key, dst, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Fatal("content differs")
	}
}

func TestJSONEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:4443":                      "http://127.0.0.1:4443/storage/v1/",
		"http://127.0.0.1:4443/":                     "http://127.0.0.1:4443/storage/v1/",
		"127.0.0.1:4443":                             "http://127.0.0.1:4443/storage/v1/",
		"https://storage.googleapis.com/storage/v1/": "https://storage.googleapis.com/storage/v1/",
	} {
		if got := gcp.JSONEndpoint(in); got != want {
			t.Errorf("JSONEndpoint(%q) = %q, want %q", in, got, want)
		}
	}
}
