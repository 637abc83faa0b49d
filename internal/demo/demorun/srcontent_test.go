package demorun

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	"google.golang.org/api/option"

	"connectome/internal/demo"
	"connectome/internal/tables"
	"connectome/internal/testenv"
	"connectome/pipeline"
	"connectome/stages"
	"connectome/stages/cohort"
	"connectome/stages/fetch"
)

// cohortOutput is what one cohort run gave.
type cohortOutput struct {
	lesions   []tables.Lesion
	instances []tables.Instance
	clinical  []tables.Clinical
	failures  []pipeline.Failure
	counts    map[string]int64
}

// TestSRContentFromBucketOrBigQuery: the cohort stage gives the same lesions, instances and
// clinical rows whether it reads the SRs' content from their objects in the bucket (the
// default) or from BigQuery's ContentSequence column, on a generated cohort served as IDC
// serves it (emulator rows derived from the same files that fake GCS serves). An SR whose
// object is missing, or holds no DICOM, fails as an item naming its object, and the other
// SRs' lesions are still there.
func TestSRContentFromBucketOrBigQuery(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	cfg, err := stages.LoadConfig(testenv.File(t, "configs", "demo.yaml"), stages.Overrides{RunDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cohort.SRContent != cohort.SRContentBucket {
		t.Fatalf("the demo reads SR content from %q, want the default %q", cfg.Cohort.SRContent, cohort.SRContentBucket)
	}
	man, err := generate(ctx, t.TempDir(), Options{Seed: demo.DefaultSeed, Patients: 8, Workers: 2}, log)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := startServices(ctx, man, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	store, err := fetch.NewGCSClient(ctx, svc.endpoints.GCS)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	q, err := cohort.NewBigQuery(ctx, cfg.Cohort.BQProject, option.WithEndpoint(svc.endpoints.BigQuery), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	run := func(content string) cohortOutput {
		t.Helper()
		cs := cfg.Cohort
		cs.SRContent, cs.PipelineVersion = content, "test"
		st := cohort.New(cs, q).WithObjects(cfg.Fetch.Downloader(store))
		dir := t.TempDir()
		r, err := pipeline.NewRunner([]pipeline.Stage{st}, pipeline.Options{RunDir: dir, Only: "cohort", Log: log, PipelineVersion: "test"})
		if err != nil {
			t.Fatal(err)
		}
		sum, err := r.Run(ctx)
		if err != nil {
			t.Fatalf("sr_content %s: %v", content, err)
		}
		var out cohortOutput
		if out.lesions, _, err = tables.ReadLesions(filepath.Join(dir, "cohort", "lesions.arrow")); err != nil {
			t.Fatal(err)
		}
		if out.instances, _, err = tables.ReadInstances(filepath.Join(dir, "cohort", "instances.arrow")); err != nil {
			t.Fatal(err)
		}
		if out.clinical, _, err = tables.ReadClinical(filepath.Join(dir, "cohort", "clinical.arrow")); err != nil {
			t.Fatal(err)
		}
		if out.failures, err = pipeline.ReadFailures(filepath.Join(dir, "failures.arrow")); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, s := range sum.Stages {
			if s.Name == "cohort" {
				out.counts = s.Counts
			}
		}
		return out
	}

	bucket, bq := run(cohort.SRContentBucket), run(cohort.SRContentBigQuery)
	if len(bucket.lesions) < 4 || len(bucket.failures) != 0 || len(bq.failures) != 0 {
		t.Fatalf("%d lesions, failures %v and %v", len(bucket.lesions), bucket.failures, bq.failures)
	}
	if !reflect.DeepEqual(bucket.lesions, bq.lesions) || !reflect.DeepEqual(bucket.instances, bq.instances) ||
		!reflect.DeepEqual(bucket.clinical, bq.clinical) {
		t.Fatal("the SR content read from the bucket gives other tables than read from BigQuery")
	}
	var srs []demo.Object
	for _, o := range man.Objects {
		if o.Modality == "SR" {
			srs = append(srs, o)
		}
	}
	if got := bucket.counts["sr_objects_downloaded"]; got != int64(len(srs)) {
		t.Errorf("%d SR objects downloaded, the cohort has %d", got, len(srs))
	}

	// One SR object gone, another one garbage of the right size (its CRC32C is the garbage's).
	gone, garbage := srs[0], srs[1]
	del, err := http.NewRequest(http.MethodDelete, svc.endpoints.GCS+"/storage/v1/b/"+man.Bucket+"/o/"+url.PathEscape(gone.Key), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(del)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		t.Fatalf("delete %s from fake GCS: %s", gone.Key, resp.Status)
	}
	svc.gcs.CreateObject(fakestorage.Object{
		ObjectAttrs: fakestorage.ObjectAttrs{BucketName: man.Bucket, Name: garbage.Key},
		Content:     bytes.Repeat([]byte{0x42}, int(garbage.Size)),
	})
	broken := run(cohort.SRContentBucket)
	want := map[string]string{gone.SOPInstanceUID: pipeline.ClassNotFound, garbage.SOPInstanceUID: pipeline.ClassDICOM}
	if len(broken.failures) != 2 {
		t.Fatalf("failures %+v, want the 2 broken SRs", broken.failures)
	}
	for _, f := range broken.failures {
		if want[f.ItemID] != f.ErrorClass || f.Stage != "cohort" {
			t.Errorf("failure %+v, want class %q for that SR", f, want[f.ItemID])
		}
		if f.ItemID == gone.SOPInstanceUID && !strings.Contains(f.Message, "gs://"+man.Bucket+"/"+gone.Key) {
			t.Errorf("failure of the missing SR does not name its object: %s", f.Message)
		}
	}
	// every lesion of the other patients is still there, as it was
	lost := map[string]bool{gone.PatientID: true, garbage.PatientID: true}
	var kept []tables.Lesion
	for _, l := range bucket.lesions {
		if !lost[l.PatientID] {
			kept = append(kept, l)
		}
	}
	if !reflect.DeepEqual(broken.lesions, kept) {
		t.Errorf("%d lesions with 2 SRs broken, want the other patients' %d", len(broken.lesions), len(kept))
	}
}
