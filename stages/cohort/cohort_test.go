package cohort

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"connectome/internal/dicomio/dicomsynth"
	"connectome/internal/layout"
	"connectome/internal/tables"
	"connectome/internal/testenv"
	"connectome/internal/yamlconf"
	"connectome/pipeline"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// An oblique slice: the formula's terms can be checked one by one.
func TestPixelToLPS(t *testing.T) {
	c, s := math.Cos(0.3), math.Sin(0.3)
	in := &tables.Instance{
		ImagePositionPatient:    [3]float64{10, 20, 30},
		ImageOrientationPatient: [6]float64{c, s, 0, 0, 0, -1}, // rows run along (c,s,0), columns down −z
		PixelSpacing:            [2]float64{2, 0.5},            // row spacing 2 (ΔY), column spacing 0.5 (ΔX)
	}
	// (x,y) = (0.5, 0.5) is the centre of the first pixel: exactly IPP.
	if p := pixelToLPS(in, 0.5, 0.5); p != [3]float64{10, 20, 30} {
		t.Errorf("first pixel centre %v", p)
	}
	// x = 10.5 → i = 10 → 10·0.5 = 5 mm along X; y = 3.5 → j = 3 → 3·2 = 6 mm along Y.
	p := pixelToLPS(in, 10.5, 3.5)
	want := [3]float64{10 + 5*c, 20 + 5*s, 30 - 6}
	for a := range 3 {
		if !near(p[a], want[a]) {
			t.Fatalf("P = %v, want %v", p, want)
		}
	}
	if n := normal(in); !near(n[0], -s) || !near(n[1], c) || !near(n[2], 0) {
		t.Errorf("normal %v", n)
	}
	if err := checkGeometry(&tables.Instance{ImageOrientationPatient: [6]float64{1, 0, 0, 1, 0, 0}, PixelSpacing: [2]float64{1, 1}}); err == nil {
		t.Error("parallel IOP accepted")
	}
}

func TestSettings(t *testing.T) {
	d := DefaultSettings()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []func(*Settings){
		func(s *Settings) { s.IDCRelease = "idc_v23`; DROP" },
		func(s *Settings) { s.IDCRelease = "v23" },
		func(s *Settings) { s.BQProject = "a.b`c" },
		func(s *Settings) { s.Policy = "some" },
		func(s *Settings) { s.Source = "s3" },
		func(s *Settings) { s.MaxBytesBilled = 0 },
		func(s *Settings) { s.Source = SourceFile },
		func(s *Settings) { s.AnalysisResultIDs = nil },
		func(s *Settings) { s.AnalysisResultIDs = []string{"NLST-Sybil", ""} },
		func(s *Settings) { s.SRContent = "" },
		func(s *Settings) { s.SRContent = "file" },
	}
	for i, f := range bad {
		s := DefaultSettings()
		f(&s)
		if s.Validate() == nil {
			t.Errorf("case %d accepted: %+v", i, s)
		}
	}
	s := DefaultSettings()
	s.IDCRelease = "idc_current"
	if err := s.Validate(); err != nil {
		t.Error(err)
	}
	for in, want := range map[string]int64{"50GB": 50e9, "50 GB": 50e9, "1.5TB": 1.5e12, "200MiB": 200 << 20, "1234": 1234, "2kb": 2000} {
		if got, err := ParseByteSize(in); err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GB", "5 XB", "-1"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", in)
		}
	}
}

// TestSRObjectsReadsContentOnlyWhenAsked: with sr_content bucket (the default), sr_objects
// reads no SR sequence column, above all not the wide ContentSequence that BigQuery would bill
// for every SR of the collection; with sr_content bigquery it reads all three.
func TestSRObjectsReadsContentOnlyWhenAsked(t *testing.T) {
	sequences := []string{"ContentSequence", "ContentTemplateSequence", "CurrentRequestedProcedureEvidenceSequence"}
	for _, content := range []bool{false, true} {
		r := &queryRunner{project: "bigquery-public-data", release: "idc_v25", srContent: content}
		sql, err := r.render("sr_objects")
		if err != nil {
			t.Fatal(err)
		}
		var code []string
		for _, line := range strings.Split(sql, "\n") {
			code = append(code, strings.SplitN(line, "--", 2)[0])
		}
		body := strings.Join(code, "\n")
		for _, col := range sequences {
			if strings.Contains(body, "TO_JSON_STRING("+col+")") != content {
				t.Errorf("srContent %v: query reads %s: %v\n%s", content, col, !content, body)
			}
		}
		if !strings.Contains(body, "gcs_url") || !strings.Contains(body, "instance_size") {
			t.Errorf("srContent %v: query does not return the SR objects' gcs_url and instance_size", content)
		}
	}
}

func TestRenderOnlyValidated(t *testing.T) {
	r := &queryRunner{project: "bigquery-public-data", release: "idc_v23"}
	sql, err := r.render("ct_instances")
	if err != nil || !strings.Contains(sql, "`bigquery-public-data.idc_v23.dicom_all`") || strings.Contains(sql, "{{") {
		t.Fatalf("%v\n%s", err, sql)
	}
	r.release = "idc_v23.x"
	if _, err := r.render("ct_instances"); err == nil {
		t.Error("unvalidated release rendered")
	}
}

func TestLabels(t *testing.T) {
	l, err := LoadLabels()
	if err != nil {
		t.Fatal(err)
	}
	c, err := l.clinical(prsnRow{PatientID: "1", Age: "63", Gender: "2", Race: "6", Cigsmok: "0", DeStag: "320", DeType: "8255"})
	if err != nil {
		t.Fatal(err)
	}
	want := tables.Clinical{PatientID: "1", Age: 63, Sex: "F", Race: "Multi-racial", Smoking: "Former",
		CancerTypeCode: "8255", CancerType: "Adenocarcinoma with mixed subtypes", StageCode: "320", Stage: "IIIB"}
	if c != want {
		t.Errorf("got %+v want %+v", c, want)
	}
	if _, err := l.clinical(prsnRow{PatientID: "1", DeStag: "777"}); err == nil {
		t.Error("unknown stage accepted")
	}
	if !l.validStage("400") || l.validStage("999") || l.validStage(".M") {
		t.Error("valid stages")
	}
	if len(l.PublishedCancerTypes) != 24 {
		t.Errorf("%d published ICD-O-3 codes", len(l.PublishedCancerTypes))
	}
}

// A stage the file cohort cannot read is its patient's error, naming the row, the column and
// the value; the patient's other rows and the other patients are read on.
func TestFileClinicalStage(t *testing.T) {
	l, err := LoadLabels()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		rec   record
		stage string // the label read, when no error
		err   string
	}{
		{record{"de_stag": "110"}, "IA", ""},
		{record{"stage_code": "777"}, "", `row 1 (patient P): stage_code "777" is not an AJCC stage code`},
		{record{"de_stag": "x"}, "", `row 1 (patient P): de_stag "x" is not an AJCC stage code`},
		{record{"de_stag_mapped": "3"}, "IIB", ""},
		{record{"stage": "IIA"}, "IIA", ""},
		{record{"stage": "210"}, "IIA", ""}, // an AJCC code in stage, as the README allows
		{record{"stage": "9"}, "", `row 1 (patient P): stage "9" is neither a stage label nor the published index 0..6`},
	} {
		c.rec["patient_id"] = "P"
		recs := []record{c.rec, {"patient_id": "P", "stage_code": "555"}, {"patient_id": "Q", "age": "60"}}
		clin, bad := fileClinical(recs, l, func(i int) string { return fmt.Sprintf("row %d", i+1) })
		if clin["Q"].Age != 60 {
			t.Errorf("%v: patient Q not read: %+v", c.rec, clin["Q"])
		}
		if c.err == "" {
			if clin["P"].Stage != c.stage || !strings.Contains(fmt.Sprint(bad["P"]), `row 2 (patient P): stage_code "555"`) {
				t.Errorf("%v: stage %q (want %q), error %v", c.rec, clin["P"].Stage, c.stage, bad["P"])
			}
			continue
		}
		if err := bad["P"]; err == nil || !strings.Contains(err.Error(), c.err) || len(bad) != 1 {
			t.Errorf("%v: errors %v, want P's to contain %q", c.rec, bad, c.err)
		}
	}
}

// The published export (734 records) read as a cohort file: the preset's last step keeps
// the patients with exactly one record, the 289 of the published map.
func TestFileSourcePublishedRecords(t *testing.T) {
	path := testenv.Shared(t, "reference", "nlst-sybil-embeddings", "lesions.csv")
	if _, err := os.Stat(path); err != nil {
		testenv.Missing(t, "reference data missing: %v", err)
	}
	recs, err := readRecords(path, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := parseLesionRecords(recs, func(item string, err error) { t.Errorf("%s: %v", item, err) })
	if err != nil || len(rows) != 734 {
		t.Fatalf("%d rows, %v", len(rows), err)
	}
	ids := map[string]bool{}
	for _, r := range rows {
		ids[r.lesion.LesionID] = true
	}
	if len(ids) != 734 {
		t.Errorf("%d distinct lesion ids for 734 rows", len(ids))
	}
	if kept := filePolicy(PolicyPublished2026, rows); len(kept) != 289 {
		t.Errorf("published-2026 keeps %d records, want 289", len(kept))
	}
	if kept := filePolicy(PolicyAllLesions, rows); len(kept) != 734 {
		t.Errorf("all-lesions keeps %d", len(kept))
	}
	l, _ := LoadLabels()
	clin, bad := fileClinical(recs, l, func(i int) string { return fmt.Sprintf("row %d", i+1) })
	if len(bad) != 0 {
		t.Fatal(bad)
	}
	if c := clin["100242"]; c.CancerTypeCode != "8250" || c.CancerType != "Lepidic adenocarcinoma" || c.StageCode != "110" || c.Stage != "IA" {
		t.Errorf("clinical from lesion columns: %+v", c)
	}
}

// A cohort file plus a local DICOM folder written by dicomsynth, through the engine.
// runFileCohort writes csv as the lesions table, runs the cohort stage alone on source file
// over the DICOM folder dcm (policy all-lesions), and returns the run directory.
func runFileCohort(t *testing.T, tmp, dcm, csv string) string {
	t.Helper()
	lf := filepath.Join(tmp, "lesions.csv")
	if err := os.WriteFile(lf, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	s := DefaultSettings()
	s.Source, s.Policy, s.File, s.DICOMDir = SourceFile, PolicyAllLesions, lf, dcm
	runDir := filepath.Join(tmp, "run")
	r, err := pipeline.NewRunner([]pipeline.Stage{New(s, nil)}, pipeline.Options{RunDir: runDir, Only: "cohort", Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return runDir
}

func TestFileSourceRun(t *testing.T) {
	tmp := t.TempDir()
	dcm := filepath.Join(tmp, "dicom")
	ser := dicomsynth.Series{Rows: 16, Columns: 16, Slices: 6, PixelSpacing: [2]float64{0.8, 0.8}, SliceSpacing: 2.5,
		Origin: [3]float64{-10, -10, -50}, HU: func(i, j, k int) float64 { return 0 }, PatientID: "P1", SeriesUID: "1.2.3.4"}
	if _, err := ser.Write(dcm); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dcm, "notes.txt"), []byte("not dicom"), 0o644); err != nil {
		t.Fatal(err)
	}
	csv := "patient_id,series_instance_uid,center_x_mm,center_y_mm,center_z_mm,age,sex,race,smoking,de_stag\n" +
		"P1,1.2.3.4,-5,-4,-44.9,61,1,1,1,110\n" + // nearest slice z = -45 (index 2)
		"P2,9.9.9,1,2,3,70,2,2,0,120\n" // series not in the folder → failure
	runDir := runFileCohort(t, tmp, dcm, csv)
	ls, _, err := tables.ReadLesions(layout.New(runDir, pipeline.Shard{}).Lesions())
	if err != nil {
		t.Fatal(err)
	}
	ins, _, err := tables.ReadInstances(layout.New(runDir, pipeline.Shard{}).Instances())
	if err != nil {
		t.Fatal(err)
	}
	cl, _, err := tables.ReadClinical(layout.New(runDir, pipeline.Shard{}).Clinical())
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls[0].PatientID != "P1" || ls[0].StudyInstanceUID == "" {
		t.Fatalf("lesions %+v", ls)
	}
	if len(ins) != 6 {
		t.Fatalf("%d instances, want 6", len(ins))
	}
	key := ""
	for _, in := range ins {
		if in.LocalPath == "" || in.InstanceSize == 0 || in.PixelSpacing != [2]float64{0.8, 0.8} {
			t.Errorf("instance %+v", in)
		}
		if near(in.ImagePositionPatient[2], -45) {
			key = in.SOPInstanceUID
		}
	}
	if ls[0].KeySOPInstanceUID != key || key == "" {
		t.Errorf("key slice %s, want the slice at z=-45 (%s)", ls[0].KeySOPInstanceUID, key)
	}
	if len(cl) != 1 || cl[0] != (tables.Clinical{PatientID: "P1", Age: 61, Sex: "M", Race: "White", Smoking: "Current", StageCode: "110", Stage: "IA"}) {
		t.Errorf("clinical %+v", cl)
	}
	fs, err := pipeline.ReadFailures(filepath.Join(runDir, "failures.arrow"))
	if err != nil || len(fs) != 1 || fs[0].ErrorClass != pipeline.ClassNotFound || !strings.Contains(fs[0].Message, "9.9.9") {
		t.Errorf("failures %+v %v", fs, err)
	}
}

func TestNewBigQueryHalts(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("HOME", tmp)
	t.Setenv("CLOUDSDK_CONFIG", tmp)
	t.Setenv("GOOGLE_CLOUD_PROJECT", "")
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", filepath.Join(tmp, "missing.json"))
	ctx := context.Background()

	_, err := NewBigQuery(ctx, "")
	if !pipeline.IsHalt(err) || !strings.Contains(err.Error(), "GOOGLE_CLOUD_PROJECT") || strings.Contains(err.Error(), "\n") {
		t.Errorf("no project: %v", err)
	}
	t.Setenv("GOOGLE_CLOUD_PROJECT", "my-billing-project")
	_, err = NewBigQuery(ctx, "")
	if !pipeline.IsHalt(err) || !strings.Contains(err.Error(), "GOOGLE_APPLICATION_CREDENTIALS") || strings.Contains(err.Error(), "\n") {
		t.Errorf("no credentials: %v", err)
	}

	// A (fake) service-account key: the client opens without any network access, and no
	// part of the key shows up in an error.
	key := filepath.Join(tmp, "key.json")
	secret := "-----BEGIN PRIVATE KEY-----\\nTOPSECRET\\n-----END PRIVATE KEY-----\\n"
	if err := os.WriteFile(key, []byte(`{"type":"service_account","project_id":"p","private_key_id":"k","private_key":"`+secret+
		`","client_email":"x@p.iam.gserviceaccount.com","client_id":"1","token_uri":"http://127.0.0.1:1/token"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", key)
	q, err := NewBigQuery(ctx, "")
	if err != nil {
		if strings.Contains(err.Error(), "TOPSECRET") {
			t.Fatal("key material in error")
		}
		t.Fatalf("fake key: %v", err)
	}
	q.Close()
}

func TestSettingsYAML(t *testing.T) {
	s := DefaultSettings()
	err := yamlconf.Decode("c.yaml", []byte("source: bigquery\npolicy: published-2026\nidc_release: idc_v23\nmax_bytes_billed: 2 TB\nbilling_project: my-proj-1\nanalysis_result_ids: [nlst_sybil]\n"), &s)
	if err != nil {
		t.Fatal(err)
	}
	if s.Policy != PolicyPublished2026 || s.MaxBytesBilled != 2e12 || s.BillingProject != "my-proj-1" || s.BQProject != "bigquery-public-data" ||
		!slices.Equal(s.AnalysisResultIDs, []string{"nlst_sybil"}) {
		t.Errorf("%+v", s)
	}
	if err := yamlconf.Decode("c.yaml", []byte("polcy: all-lesions\n"), &s); err == nil || !strings.Contains(err.Error(), "c.yaml:1") {
		t.Errorf("unknown key: %v", err)
	}
	// Billing project, byte cap and where the SR content is read do not change the output,
	// so not the config hash.
	other := s
	other.BillingProject, other.MaxBytesBilled, other.SRContent = "other-proj", 1, SRContentBigQuery
	a, b := New(s, nil).Settings(), New(other, nil).Settings()
	if !reflect.DeepEqual(a, b) {
		t.Errorf("hashed settings differ: %+v vs %+v", a, b)
	}
	if parseAge("65.0") != 65 || parseAge("") != -1 || parseAge("x") != -1 {
		t.Error("parseAge")
	}
}

// TestDicomAllQueriesPruneByCollection: every embedded query over dicom_all filters on its
// clustering column, collection_id, in the WHERE clause (not only in a comment), so that
// BigQuery reads one collection's blocks. The emulator tests show the filter's effect on
// rows (a decoy collection in the fixture); this catches a new query that forgets it.
func TestDicomAllQueriesPruneByCollection(t *testing.T) {
	files, err := filepath.Glob("../../configs/sql/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no queries found: %v", err)
	}
	filter := regexp.MustCompile(`(?is)\bWHERE\s+(?:.*\bAND\s+)?collection_id\s*=\s*@collection_id\b`)
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var code []string
		for _, line := range strings.Split(string(b), "\n") {
			code = append(code, strings.SplitN(line, "--", 2)[0])
		}
		sql := strings.Join(code, "\n")
		if !strings.Contains(sql, ".dicom_all`") {
			continue
		}
		n++
		if !filter.MatchString(sql) {
			t.Errorf("%s reads dicom_all without WHERE … collection_id = @collection_id", filepath.Base(f))
		}
	}
	if n < 2 {
		t.Errorf("%d queries read dicom_all, want sr_objects and ct_instances at least", n)
	}
}

// TestNLSTCodes: the morphology codes NLST holds beyond the published 24 have their ICD-O-3
// labels (and stay out of the preset list), and a "missing" key slice (999) matches no slice.
func TestNLSTCodes(t *testing.T) {
	l, err := LoadLabels()
	if err != nil {
		t.Fatal(err)
	}
	for code, want := range map[string]string{"8050": "Papillary carcinoma, NOS", "8083": "Basaloid squamous cell carcinoma",
		"8240": "Carcinoid tumor, NOS", "8570": "Adenocarcinoma with squamous metaplasia"} {
		if c, _ := l.clinical(prsnRow{PatientID: "1", DeType: code}); c.CancerType != want || l.publishedCancerType(code) {
			t.Errorf("de_type %s: label %q (want %q), in preset list %v", code, c.CancerType, want, l.publishedCancerType(code))
		}
	}
	m := ctabMatches([]ctabRow{{PatientID: "1", StudyYr: "0", SliceNum: "999"}, {PatientID: "1", StudyYr: "0", SliceNum: "12"},
		{PatientID: "1", StudyYr: "1", SliceNum: ".N"}}, l)
	if len(m) != 1 || m[ctabKey{"1", 0, 12}] != 1 {
		t.Errorf("matches %v, want only slice 12 of year 0", m)
	}
}
