package fetch_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"connectome/internal/dicomio"
	"connectome/internal/dicomio/dicomsynth"
	"connectome/internal/gcp/gcptest"
	"connectome/internal/layout"
	"connectome/internal/tables"
	"connectome/internal/testenv"
	"connectome/models"
	"connectome/pipeline"
	"connectome/stages/fetch"
	"connectome/stages/preprocess"
)

// Fetch and the real preprocess, streaming in one segment: preprocess must find every slice
// it reads for all 9 registry models and its QC patch, although fetch brought only a part of
// each series. This is the check that the plan and preprocess agree.
func TestFetchThenPreprocess(t *testing.T) {
	root := testenv.Root(t)
	reg, err := models.Load(filepath.Join(root, "configs", "models.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const nSlices = 120
	var instances []tables.Instance
	var objects []fakestorage.Object
	var lesions []tables.Lesion
	for si, desc := range []bool{false, true} {
		uid := fmt.Sprintf("2.25.%d", 700+si)
		s := dicomsynth.Series{Rows: 64, Columns: 64, Slices: nSlices, PixelSpacing: [2]float64{0.75, 0.75},
			SliceSpacing: 2.5, Origin: [3]float64{-24, -24, -150}, Intercept: -1024, Descending: desc, SeriesUID: uid,
			HU: func(i, j, k int) float64 { return float64((i+2*j+3*k)%200) - 900 }}
		dir := filepath.Join(t.TempDir(), uid)
		if _, err := s.Write(dir); err != nil {
			t.Fatal(err)
		}
		ser, _, err := dicomio.ReadSeriesDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		su := fmt.Sprintf("%08x-0000-4000-8000-000000000000", si+1)
		for k, h := range ser.Slices {
			iu := fmt.Sprintf("%08x-%04x-4000-8000-000000000000", si+1, k)
			body, err := os.ReadFile(h.Path)
			if err != nil {
				t.Fatal(err)
			}
			key := su + "/" + iu + ".dcm"
			objects = append(objects, fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "some-public-bucket", Name: key}, Content: body})
			instances = append(instances, tables.Instance{SeriesInstanceUID: uid, SOPInstanceUID: h.SOPInstanceUID,
				CRDCSeriesUUID: su, CRDCInstanceUUID: iu, GCSURL: "gs://some-public-bucket/" + key, InstanceSize: int64(len(body)),
				InstanceNumber: int32(h.InstanceNumber), ImagePositionPatient: h.IPP, ImageOrientationPatient: h.IOP,
				PixelSpacing: h.PixelSpacing, Rows: int32(h.Rows), Columns: int32(h.Columns)})
		}
		for j, frac := range []float64{0.5, 0.1, 0.93} {
			lesions = append(lesions, tables.Lesion{LesionID: fmt.Sprintf("L%d%d", si, j), PatientID: "P", SeriesInstanceUID: uid,
				CenterMM: [3]float64{-24 + 30.3, -24 + 20.1, -150 + frac*float64(nSlices-1)*2.5 + 0.4}, StudyYear: -1})
		}
	}
	run := t.TempDir()
	md := tables.Metadata("test", "idc_test", "", nil)
	if err := tables.WriteLesions(layout.New(run, pipeline.Shard{}).Lesions(), lesions, md); err != nil {
		t.Fatal(err)
	}
	if err := tables.WriteInstances(layout.New(run, pipeline.Shard{}).Instances(), instances, md); err != nil {
		t.Fatal(err)
	}
	srv, err := gcptest.New(objects)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	store, err := fetch.NewGCSClient(context.Background(), srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	fs := fetch.DefaultSettings()
	fs.MinFreeBytes = 0
	lay := layout.New(run, pipeline.Shard{})
	ps := preprocess.DefaultSettings()
	ps.CacheDir = fs.CacheDir
	r, err := pipeline.NewRunner([]pipeline.Stage{fetch.New(fs, reg, store, nil), preprocess.New(ps, reg)},
		pipeline.Options{RunDir: run, Workers: 2, Items: tables.LesionItems(lay.Lesions(), lay.Instances())})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failures != 0 {
		fl, _ := pipeline.ReadFailures(filepath.Join(run, "failures.arrow"))
		t.Fatalf("%d failures: %+v", sum.Failures, fl)
	}
	m, _, _ := pipeline.ReadMarker(run, "preprocess", pipeline.Shard{})
	fm, _, _ := pipeline.ReadMarker(run, "fetch", pipeline.Shard{})
	got := fm.Counts["objects_downloaded"]
	// three lesions of ~26 slices each (the 64 mm QC crop at 2.5 mm) per 120-slice series
	if got == 0 || got > 2*3*27 {
		t.Errorf("fetched %d of %d slices; want only the crops'", got, 2*nSlices)
	}
	// preprocess read exactly what fetch brought: nothing missing, nothing wasted
	if m.Counts["slices_read"] != got {
		t.Errorf("preprocess read %d slices, fetch brought %d", m.Counts["slices_read"], got)
	}
	t.Logf("fetched %d of %d slices (%d bytes of %d); preprocess counts %v", got, 2*nSlices,
		fm.Counts["bytes_downloaded"], fm.Counts["bytes_whole_series"], m.Counts)
}
