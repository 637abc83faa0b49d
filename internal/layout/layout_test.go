package layout

import (
	"path/filepath"
	"strings"
	"testing"

	"connectome/pipeline"
)

func TestFileNameIsOneSafeElementAndRoundTrips(t *testing.T) {
	for _, tc := range []struct{ id, want string }{
		{"L00067", "L00067"},
		{"100012_T1_L1", "100012_T1_L1"},
		{"CTClipVit", "CTClipVit"},
		{"a.b-c_d", "a.b-c_d"},
		{"../../../../outside/pwn", "%2E.%2F..%2F..%2F..%2Foutside%2Fpwn"},
		{"a/b", "a%2Fb"},
		{".hidden", "%2Ehidden"},
		{"..", "%2E."},
		{"100%", "100%25"},
		{"é", "%C3%A9"},
		{"", "%"},
	} {
		got := FileName(tc.id)
		if got != tc.want {
			t.Errorf("FileName(%q) = %q, want %q", tc.id, got, tc.want)
		}
		if strings.ContainsAny(got, `/\`) || got == "." || got == ".." || strings.HasPrefix(got, ".") {
			t.Errorf("FileName(%q) = %q is not one plain path element", tc.id, got)
		}
		if back, ok := idOf(got); !ok || back != tc.id {
			t.Errorf("idOf(%q) = %q, %v, want %q", got, back, ok, tc.id)
		}
	}
	for _, name := range []string{".tmp-x", "a%2", "a%zz", "a b", "%2e%2e"} {
		if id, ok := idOf(name); ok {
			t.Errorf("idOf(%q) = %q: a name FileName cannot make was taken for an id", name, id)
		}
	}
}

func FuzzFileName(f *testing.F) {
	for _, s := range []string{"L1", "../x", "", "%", "a/b/c", ".", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		name := FileName(id)
		if filepath.Base(name) != name || name == "." || name == ".." || strings.HasPrefix(name, ".") {
			t.Fatalf("FileName(%q) = %q escapes its directory or hides", id, name)
		}
		if back, ok := idOf(name); !ok || back != id {
			t.Fatalf("idOf(FileName(%q)) = %q, %v", id, back, ok)
		}
	})
}

func TestPathsPerProcess(t *testing.T) {
	plain := New("/r", pipeline.Shard{})
	shard := New("/r", pipeline.Shard{Index: 1, Count: 3})
	merge := New("/r", pipeline.AllShards(3))
	for _, tc := range []struct{ got, want string }{
		{plain.Lesions(), "/r/cohort/lesions.arrow"},
		{shard.Lesions(), "/r/cohort/lesions.arrow"},
		{plain.Tensor("CTFM", "L1"), "/r/preprocess/tensors/CTFM/L1.npy"},
		{shard.Tensor("CTFM", "L1"), "/r/preprocess/shard-1-of-3/tensors/CTFM/L1.npy"},
		{plain.Tensor("CTFM", "../../x"), "/r/preprocess/tensors/CTFM/%2E.%2F..%2Fx.npy"},
		{plain.QCPreview("L1"), "/r/preprocess/qc/L1.png"},
		{shard.QCPreview("L1"), "/r/preprocess/shard-1-of-3/qc/L1.png"},
		{plain.Embeddings("CTFM"), "/r/embed/CTFM.arrow"},
		{shard.Embeddings("CTFM"), "/r/embed/shard-1-of-3/CTFM.arrow"},
		{shard.EmbedParts("CTFM"), "/r/embed/shard-1-of-3/parts/CTFM"},
		{plain.Edges(), "/r/similarity/edges.arrow"},
		{shard.Edges(), "/r/similarity/shard-1-of-3/edges.arrow"},
		{merge.Edges(), "/r/similarity/edges.arrow"},
		{merge.Page(), "/r/report/index.html"},
		{shard.StageDir(Cohort), "/r/cohort"},
		{plain.DICOMCache(""), "/r/dicom"},
		{plain.DICOMCache("/cache"), "/cache"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
	if got := merge.QCPreviews("L1"); len(got) != 3 || got[2] != "/r/preprocess/shard-2-of-3/qc/L1.png" {
		t.Errorf("merge QCPreviews = %v", got)
	}
	if got := plain.QCPreviews("L1"); len(got) != 1 || got[0] != "/r/preprocess/qc/L1.png" {
		t.Errorf("plain QCPreviews = %v", got)
	}
	if got := merge.ShardEdges(); len(got) != 3 || got[0] != "/r/similarity/shard-0-of-3/edges.arrow" {
		t.Errorf("ShardEdges = %v", got)
	}
}

func TestDICOMObject(t *testing.T) {
	p, err := DICOMObject("/c", "11111111-2222-3333-4444-555555555555", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
	if err != nil || p != "/c/11111111-2222-3333-4444-555555555555/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee.dcm" {
		t.Errorf("DICOMObject = %q, %v", p, err)
	}
	if _, err := DICOMObject("/c", "11111111-2222-3333-4444-555555555555", "../../../../../../../etc/passwd"); err == nil {
		t.Error("path escape accepted")
	}
}
