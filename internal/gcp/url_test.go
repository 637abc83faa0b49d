package gcp

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestParseIDCURL(t *testing.T) {
	const s, i = "11111111-2222-3333-4444-555555555555", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	cases := []struct {
		url     string
		want    IDCKey
		wantErr string
	}{
		{url: "gs://idc-open-data/" + s + "/" + i + ".dcm", want: IDCKey{"idc-open-data", s, i}},
		{url: "gs://public-datasets-idc/" + s + "/" + i + ".dcm", want: IDCKey{"public-datasets-idc", s, i}},
		{url: "s3://idc-open-data/" + s + "/" + i + ".dcm", wantErr: "want gs://"},
		{url: "gs://idc-open-data/" + s + "/../" + i + ".dcm", wantErr: "want gs://"},
		{url: "gs://idc-open-data/../" + i + ".dcm", wantErr: "not a uuid"},
		{url: "gs://idc-open-data/" + s + "/" + i, wantErr: "not <uuid>.dcm"},
		{url: "gs://idc-open-data/" + s + "/" + strings.ToUpper(i) + ".dcm", wantErr: "not <uuid>.dcm"},
		{url: "gs://idc-open-data/" + s + "/" + i + ".dcm/", wantErr: "want gs://"},
		{url: "gs://../" + s + "/" + i + ".dcm", wantErr: "bad bucket"},
		{url: "gs:///" + s + "/" + i + ".dcm", wantErr: "bad bucket"},
		{url: "gs://Idc/" + s + "/" + i + ".dcm", wantErr: "bad bucket"},
	}
	for _, tc := range cases {
		got, err := ParseIDCURL(tc.url)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want %q", tc.url, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v", tc.url, got, err, tc.want)
		}
		if got.Key() != s+"/"+i+".dcm" {
			t.Errorf("%s: Key() = %q", tc.url, got.Key())
		}
	}
}

// A key that parses must be safe to join under a cache directory.
func FuzzParseIDCURL(f *testing.F) {
	f.Add("gs://idc-open-data/11111111-2222-3333-4444-555555555555/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee.dcm")
	f.Add("gs://b/../../etc/passwd")
	f.Add("gs://a..b/------------------------------------/------------------------------------.dcm")
	f.Fuzz(func(t *testing.T, u string) {
		k, err := ParseIDCURL(u)
		if err != nil {
			return
		}
		p := filepath.Join("/cache", k.Series, k.Instance+".dcm")
		if filepath.Dir(filepath.Dir(p)) != "/cache" || strings.Contains(k.Series+k.Instance, "/") {
			t.Fatalf("%q escapes the cache as %q", u, p)
		}
		if "gs://"+k.Bucket+"/"+k.Key() != u {
			t.Fatalf("%q does not round-trip: %+v", u, k)
		}
	})
}
