package dicomio

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BenchmarkReadSliceCompressed reads one 512×512 12-bit CT slice (pydicom's CT_small tiled
// 4×4) in each transfer syntax dicomio decodes, through ReadSlice (whole file, header, decode),
// and reports its time against pydicom 3 decoding the same file with its plugin in the same
// run (x-pydicom: below 1 is faster than pydicom), and against reading the uncompressed file
// (x-native). Needs the reference environment (make reference-venv) and dcmcjpeg:
//
//	CONNECTOME_REFERENCE_PYTHON=… go test ./internal/dicomio -run '^$' -bench ReadSliceCompressed
func BenchmarkReadSliceCompressed(b *testing.B) {
	py := os.Getenv("CONNECTOME_REFERENCE_PYTHON")
	if py == "" {
		b.Skip("CONNECTOME_REFERENCE_PYTHON is not set (make reference-venv)")
	}
	src := filepath.Join(debianPydicomFiles, "CT_small.dcm")
	dir := b.TempDir()
	// each file: name, then how it is made from native.dcm
	files := []struct {
		Name string `json:"name"`
		Make string `json:"make"`
	}{
		{"native", ""},
		{"rle", "pydicom:RLELossless"},
		{"jpeg-lossless-sv1", "dcmcjpeg:+e1"},
		{"jpeg-extended-12bit", "dcmcjpeg:+ee"},
		{"jpeg-ls-lossless", "pydicom:JPEGLSLossless"},
		{"jpeg2000-lossless", "pydicom:JPEG2000Lossless"},
		{"jpeg2000-lossy", "pydicom:JPEG2000"},
	}
	spec, _ := json.Marshal(files)
	script := `
import json, sys, time, numpy as np, pydicom, subprocess
from pydicom import uid
src, d, files = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
ds = pydicom.dcmread(src)
a = ds.pixel_array.astype(np.int32)
u12 = np.tile(np.clip(a - a.min(), 0, 4095).astype(np.uint16), (4, 4))
ds.Rows, ds.Columns = u12.shape
ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 0, 12, 11
ds.PixelData = u12.tobytes()
ds.save_as(d + "/native.dcm")
times = {}
for f in files:
    name, how = f["name"], f["make"]
    path = d + "/" + name + ".dcm"
    if how.startswith("pydicom:"):
        e = pydicom.dcmread(d + "/native.dcm")
        kw = {"j2k_cr": [10]} if how == "pydicom:JPEG2000" else {}
        e.compress(getattr(uid, how.split(":")[1]), **kw)
        e.save_as(path)
    elif how.startswith("dcmcjpeg:"):
        subprocess.run(["dcmcjpeg", how.split(":")[1], d + "/native.dcm", path], check=True)
    elif name != "native":
        raise SystemExit("unknown " + how)
    if name == "native":
        path = d + "/native.dcm"
    best = float("inf")
    for _ in range(15):
        t0 = time.perf_counter()
        pydicom.dcmread(path).pixel_array
        best = min(best, time.perf_counter() - t0)
    times[name] = best
json.dump(times, open(d + "/pydicom-times.json", "w"))
`
	if out, err := exec.Command(py, "-c", script, src, dir, string(spec)).CombinedOutput(); err != nil {
		b.Fatalf("making the benchmark files: %v\n%s", err, out)
	}
	var pyTimes map[string]float64
	raw, err := os.ReadFile(filepath.Join(dir, "pydicom-times.json"))
	if err == nil {
		err = json.Unmarshal(raw, &pyTimes)
	}
	if err != nil {
		b.Fatal(err)
	}
	nativeNs := 0.0
	for _, f := range files {
		path := filepath.Join(dir, f.Name+".dcm")
		b.Run(f.Name, func(b *testing.B) {
			for range b.N {
				if _, _, err := ReadSlice(path); err != nil {
					b.Fatal(err)
				}
			}
			ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			if f.Name == "native" {
				nativeNs = ns
			}
			b.ReportMetric(ns/(pyTimes[f.Name]*1e9), "x-pydicom")
			if nativeNs > 0 {
				b.ReportMetric(ns/nativeNs, "x-native")
			}
		})
	}
}
