package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectome/internal/dicomio"
	"connectome/internal/dicomio/dicomsynth"
	"connectome/internal/patch"
	"connectome/models"
	"connectome/stages/preprocess"
)

func TestCmdPatch(t *testing.T) {
	root, _ := filepath.Abs("../..")
	modelsFile := filepath.Join(root, "configs", "models.yaml")
	dir := t.TempDir()
	s := dicomsynth.Series{Rows: 40, Columns: 44, Slices: 16, PixelSpacing: [2]float64{0.7, 0.7}, SliceSpacing: 2.5,
		Origin: [3]float64{-15, -14, -80}, Intercept: -1024, Descending: true,
		HU: func(i, j, k int) float64 { return float64((i*13+j*7+k*31)%1500 - 900) }}
	if _, err := s.Write(filepath.Join(dir, "ct")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "p.npy")
	qc := filepath.Join(dir, "p.png")
	var so, se bytes.Buffer
	code := cmdPatch(context.Background(), []string{"--dicom", filepath.Join(dir, "ct"), "--center-lps=-1.2,0.5,-62",
		"--model", "Merlin", "--out", out, "--models", modelsFile, "--qc", qc}, &so, &se)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, se.String())
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	shape, data, err := patch.ReadNPY(f)
	f.Close()
	if err != nil || len(shape) != 5 || shape[2] != 48 {
		t.Fatalf("tensor %v %v", shape, err)
	}
	reg, _ := models.Load(modelsFile)
	spec, _ := reg.Get("Merlin")
	ser, _, _ := dicomio.ReadSeriesDir(filepath.Join(dir, "ct"))
	res, err := preprocess.Extract(ser, [3]float64{-1.2, 0.5, -62}, []*models.Spec{spec})
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		if data[i] != res.Tensors[0].Data[i] {
			t.Fatalf("voxel %d: %v, want %v", i, data[i], res.Tensors[0].Data[i])
		}
	}
	if fi, err := os.Stat(qc); err != nil || fi.Size() == 0 {
		t.Errorf("qc preview: %v", err)
	}

	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--help"}, 0, ""},
		{[]string{"--dicom", dir}, 2, "required"},
		{[]string{"--dicom", dir, "--center-lps=1,2", "--model", "Merlin", "--out", out}, 2, "three"},
		{[]string{"--dicom", filepath.Join(dir, "ct"), "--center-lps=1,2,3", "--model", "Nope", "--out", out, "--models", modelsFile}, 2, "not in"},
		{[]string{"--dicom", filepath.Join(dir, "ct"), "--center-lps=0,0,900", "--model", "Merlin", "--out", out, "--models", modelsFile}, 1, "seed outside the volume"},
		{[]string{"--bogus"}, 2, "bogus"},
	}
	for _, c := range cases {
		so.Reset()
		se.Reset()
		if got := cmdPatch(context.Background(), c.args, &so, &se); got != c.code || !strings.Contains(se.String(), c.msg) {
			t.Errorf("%v: exit %d (%s), want %d with %q", c.args, got, se.String(), c.code, c.msg)
		}
	}
}
