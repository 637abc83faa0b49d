package patch

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"connectome/internal/testenv"
)

func TestRoundTrip(t *testing.T) {
	for _, shape := range [][]int{{3}, {2, 3}, {1, 1, 2, 3, 4}, {0}} {
		n := 1
		for _, d := range shape {
			n *= d
		}
		data := make([]float32, n)
		for i := range data {
			data[i] = float32(i)*0.5 - 3
		}
		var buf bytes.Buffer
		if err := WriteNPY(&buf, shape, data); err != nil {
			t.Fatal(err)
		}
		if (buf.Len()-len(data)*4)%64 != 0 {
			t.Errorf("shape %v: header not padded to 64 bytes", shape)
		}
		gotShape, got, err := ReadNPY(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if len(gotShape) != len(shape) {
			t.Fatalf("shape %v read back as %v", shape, gotShape)
		}
		for i := range data {
			if got[i] != data[i] {
				t.Fatalf("value %d: %v != %v", i, got[i], data[i])
			}
		}
	}
}

func TestWriteRejectsShapeMismatch(t *testing.T) {
	if err := WriteNPY(&bytes.Buffer{}, []int{2, 2}, make([]float32, 3)); err == nil {
		t.Fatal("want an error for 3 values in shape (2,2)")
	}
}

// TestNumpyReadsOurFile checks the format against numpy itself when Debian's numpy is there.
func TestNumpyReadsOurFile(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import numpy").Run(); err != nil {
		testenv.Missing(t, "%s with numpy (Debian python3-numpy): %v", py, err)
	}
	path := filepath.Join(t.TempDir(), "a.npy")
	var buf bytes.Buffer
	if err := WriteNPY(&buf, []int{1, 1, 2, 3, 4}, make([]float32, 24)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "-c", "import numpy,sys; a=numpy.load(sys.argv[1]); print(a.dtype, a.shape)", path).CombinedOutput()
	if err != nil {
		t.Fatalf("numpy.load: %v: %s", err, out)
	}
	if got := string(bytes.TrimSpace(out)); got != "float32 (1, 1, 2, 3, 4)" {
		t.Fatalf("numpy sees %q", got)
	}
}

func FuzzReadNPY(f *testing.F) {
	var buf bytes.Buffer
	WriteNPY(&buf, []int{2, 2}, []float32{1, 2, 3, 4})
	f.Add(buf.Bytes())
	f.Add([]byte("\x93NUMPY\x01\x00\x10\x00{'shape': (9999999999,)}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ReadNPY(bytes.NewReader(b))
	})
}
