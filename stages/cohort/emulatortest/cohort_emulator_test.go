package emulatortest

import (
	"strings"
	"testing"

	"connectome/internal/idcfake"
	"connectome/internal/tables"
	"connectome/pipeline"
	"connectome/stages/cohort"
)

// mainFixture covers grouping, centres, both general policies, clinical labels and every
// bad-row failure. Geometry is chosen so centres can be computed by hand (see the tests).
func mainFixture() *idcfake.Fixture {
	return &idcfake.Fixture{Release: cohort.DefaultRelease, Patients: []idcfake.Patient{
		{ID: "100001", Prsn: &idcfake.Prsn{Age: 65, Gender: "1", Race: "1", Cigsmok: "1", DeStag: "110", DeType: "8140"},
			Series: []idcfake.Series{
				{UID: "1.2.826.0.1.1001.1", StudyYear: 0, Slices: 10, Origin: [3]float64{-180, -200, -100}, Step: -2.5,
					SR: &idcfake.SR{Boxes: []idcfake.Box{
						{Slice: 3, X0: 100, Y0: 120, X1: 140, Y1: 150},
						{Slice: 4, X0: 98, Y0: 118, X1: 142, Y1: 152},
						{Slice: 5, X0: 102, Y0: 121, X1: 138, Y1: 149},
						{Slice: 4, X0: 300, Y0: 300, X1: 320, Y1: 330},
					}}},
				// An unannotated reconstruction: never queried, never in instances.arrow.
				{UID: "1.2.826.0.1.1001.2", StudyYear: 0, Slices: 4, Origin: [3]float64{-180, -200, -100}, Step: -5},
			}},
		{ID: "100002", Prsn: &idcfake.Prsn{Age: 70, Gender: "2", Race: "2", Cigsmok: "0", DeStag: "120", DeType: "8070"},
			Series: []idcfake.Series{
				{UID: "1.2.826.0.1.1002.1", StudyYear: 0, Slices: 12, Origin: [3]float64{-150, -150, -300}, Step: 1.25,
					PixelSpacing: [2]float64{0.8, 0.8},
					SR: &idcfake.SR{Boxes: []idcfake.Box{
						{Slice: 6, X0: 200, Y0: 200, X1: 220, Y1: 240},
						{Slice: 7, X0: 205, Y0: 198, X1: 225, Y1: 238},
					}}},
				{UID: "1.2.826.0.1.1002.2", StudyYear: 1, Slices: 5, Origin: [3]float64{-150, -150, -300}, Step: 2.5,
					SR: &idcfake.SR{Boxes: []idcfake.Box{{Slice: 2, X0: 10, Y0: 10, X1: 20, Y1: 20}}}},
			}},
		{ID: "100003", Prsn: &idcfake.Prsn{Age: 60, Gender: "1", Race: "3", Cigsmok: "0", DeStag: "310", DeType: "8250"},
			Series: []idcfake.Series{
				{UID: "1.2.826.0.1.1003.1", StudyYear: 0, Slices: 8, Origin: [3]float64{-170, -170, -50}, Step: -2,
					NullGeometry: []int{5},
					SR: &idcfake.SR{Boxes: []idcfake.Box{
						{Slice: 2, X0: 50, Y0: 50, X1: 60, Y1: 60},
						{Slice: 3, NoGraphicData: true},
						{Slice: 3, X0: 50, Y0: 50, X1: 60, Y1: 60, GraphicType: "POINT"},
						{SOP: "1.2.826.0.1.1003.1.999", X0: 50, Y0: 50, X1: 60, Y1: 60},
						{Slice: 5, X0: 50, Y0: 50, X1: 60, Y1: 60},
					}}},
			}},
		{ID: "100004", Prsn: &idcfake.Prsn{Age: 58, Gender: "1", Race: "1", Cigsmok: "1", DeStag: "123", DeType: "8140"},
			Series: []idcfake.Series{
				{UID: "1.2.826.0.1.1004.1", Slices: 4, Origin: [3]float64{0, 0, 0}, Step: -2.5,
					SR: &idcfake.SR{Boxes: []idcfake.Box{{Slice: 1, X0: 10, Y0: 10, X1: 30, Y1: 30}}}},
			}},
		{ID: "100005", Prsn: &idcfake.Prsn{Age: 66, Gender: "2", Race: "1", Cigsmok: "1", DeStag: "110", DeType: "8140"},
			Series: []idcfake.Series{
				{UID: "1.2.826.0.1.1005.1", Slices: 4, Origin: [3]float64{0, 0, 0}, Step: -2.5,
					SR: &idcfake.SR{Template: "2000", Boxes: []idcfake.Box{{Slice: 1, X0: 10, Y0: 10, X1: 30, Y1: 30}}}},
			}},
		{ID: "100006", // no nlst_prsn row
			Series: []idcfake.Series{
				{UID: "1.2.826.0.1.1006.1", StudyYear: 2, Slices: 4, Origin: [3]float64{0, 0, 0}, Step: -2.5,
					SR: &idcfake.SR{Boxes: []idcfake.Box{{Slice: 1, X0: 10, Y0: 10, X1: 30, Y1: 30}}}},
			}},
		// Another collection, with an SR of the same analysis result and a CT series whose UID
		// (and so SOP UIDs) collides with 100006's: a query that does not filter on
		// collection_id gains a lesion (sr_objects) or doubles 1006.1's instances (ct_instances).
		{ID: "900001", Collection: "nlst-decoy", Prsn: &idcfake.Prsn{Age: 61, Gender: "1", Race: "1", Cigsmok: "1", DeStag: "110", DeType: "8140"},
			Series: []idcfake.Series{
				{UID: "1.2.826.0.1.1006.1", StudyYear: 2, Slices: 4, Origin: [3]float64{0, 0, 0}, Step: -2.5,
					SR: &idcfake.SR{Boxes: []idcfake.Box{{Slice: 2, X0: 100, Y0: 100, X1: 130, Y1: 130}}}},
			}},
	}}
}

// settings: the fixtures are BigQuery rows only (no SR objects in a bucket), so the SR
// content is read from BigQuery; internal/demo/demorun checks that the bucket gives the same.
func settings(policy string) cohort.Settings {
	s := cohort.DefaultSettings()
	s.SRContent = cohort.SRContentBigQuery
	s.Policy = policy
	s.PipelineVersion = "test"
	return s
}

func TestAllLesions(t *testing.T) {
	f := mainFixture()
	emu := startEmulator(t, f)
	out := runCohort(t, emu, settings(cohort.PolicyAllLesions))
	if out.runErr != nil {
		t.Fatal(out.runErr)
	}

	// Patient 100001: boxes on slices 3–5 overlap → one lesion; the box at (300,300) on
	// slice 4 is another. Hand computation (IPP of slice k = (-180, -200, -100 - 2.5k),
	// spacing 0.7, P = IPP + 0.7·(pixel − 0.5)):
	//   x: 98 → -111.75, 142 → -80.95; y: 118 → -117.75, 152 → -93.95; z: -107.5 .. -112.5.
	a := lesionsOf(out.lesions, "100001")
	if len(a) != 2 {
		t.Fatalf("patient 100001: %d lesions, want 2: %+v", len(a), a)
	}
	var big, small tables.Lesion
	for _, l := range a {
		if l.NBoxes == 3 {
			big = l
		} else {
			small = l
		}
	}
	s0 := &f.Patients[0].Series[0]
	if !near3(big.CenterMM, [3]float64{-96.35, -105.85, -110}) ||
		!near3(big.BoxMinMM, [3]float64{-111.75, -117.75, -112.5}) || !near3(big.BoxMaxMM, [3]float64{-80.95, -93.95, -107.5}) {
		t.Errorf("lesion of 3 boxes: centre %v extent %v..%v", big.CenterMM, big.BoxMinMM, big.BoxMaxMM)
	}
	if big.KeySOPInstanceUID != s0.SOPUID(4) {
		t.Errorf("key slice %s, want slice 4 %s", big.KeySOPInstanceUID, s0.SOPUID(4))
	}
	if big.SRSOPInstanceUID != s0.SRSOPUID() || big.SRSeriesInstanceUID != s0.SRSeriesUID() || big.StudyInstanceUID != s0.StudyInstanceUID() || big.StudyYear != 0 {
		t.Errorf("lesion ids: %+v", big)
	}
	// x: 300 → 29.65, 320 → 43.65; y: 300 → 9.65, 330 → 30.65.
	if small.NBoxes != 1 || !near3(small.CenterMM, [3]float64{36.65, 20.15, -110}) {
		t.Errorf("single-box lesion: %+v", small)
	}

	// Patient 100002, series 1: slices 6 and 7 (z -292.5, -291.25), spacing 0.8, origin -150:
	//   x: 200 → 9.6, 225 → 29.6; y: 198 → 8.0, 240 → 41.6. Centre z -291.875 is equidistant
	//   from both slices: the lower one (slice 6) is the key slice.
	b := lesionsOf(out.lesions, "100002")
	if len(b) != 2 {
		t.Fatalf("patient 100002: %d lesions, want 2", len(b))
	}
	b0 := b[0]
	if b0.StudyYear != 0 {
		b0 = b[1]
	}
	s1 := &f.Patients[1].Series[0]
	if !near3(b0.CenterMM, [3]float64{19.6, 24.8, -291.875}) || b0.KeySOPInstanceUID != s1.SOPUID(6) || b0.NBoxes != 2 {
		t.Errorf("patient 100002 lesion: %+v", b0)
	}

	// Patient 100003: only the first group is usable.
	if c := lesionsOf(out.lesions, "100003"); len(c) != 1 || c[0].NBoxes != 1 {
		t.Errorf("patient 100003: %+v", c)
	}
	// 100004 (unknown stage) and 100005 (not TID 1500) are out; 100006 (no clinical row) is in.
	if n := len(lesionsOf(out.lesions, "100004")) + len(lesionsOf(out.lesions, "100005")); n != 0 {
		t.Errorf("failed patients have %d lesions", n)
	}
	if len(lesionsOf(out.lesions, "100006")) != 1 {
		t.Errorf("patient without clinical row lost")
	}
	if len(out.lesions) != 6 {
		t.Errorf("%d lesions, want 6", len(out.lesions))
	}

	// Failures: one per bad row, with its class and a message that names the problem.
	sr3 := f.Patients[2].Series[0].SRSOPUID()
	want := map[string]struct{ class, msg string }{
		sr3 + "#2":                         {pipeline.ClassInput, "no GraphicData"},
		sr3 + "#3":                         {pipeline.ClassInput, `"POINT", want POLYLINE`},
		sr3 + "#4":                         {pipeline.ClassNotFound, "not an instance of series"},
		sr3 + "#5":                         {pipeline.ClassGeometry, "NULL ImagePositionPatient"},
		"100004":                           {pipeline.ClassInput, `unknown AJCC stage code de_stag="123"`},
		f.Patients[4].Series[0].SRSOPUID(): {pipeline.ClassInput, "want TID 1500"},
	}
	if len(out.failures) != len(want) {
		t.Errorf("%d failures, want %d: %+v", len(out.failures), len(want), out.failures)
	}
	for _, fl := range out.failures {
		w, ok := want[fl.ItemID]
		if !ok {
			t.Errorf("unexpected failure %+v", fl)
			continue
		}
		if fl.Stage != "cohort" || fl.ErrorClass != w.class || !strings.Contains(fl.Message, w.msg) {
			t.Errorf("failure %s: class %s message %q, want %s containing %q", fl.ItemID, fl.ErrorClass, fl.Message, w.class, w.msg)
		}
	}

	// Clinical labels.
	clin := map[string]tables.Clinical{}
	for _, c := range out.clinical {
		clin[c.PatientID] = c
	}
	wantClin := map[string]tables.Clinical{
		"100001": {PatientID: "100001", Age: 65, Sex: "M", Race: "White", Smoking: "Current", CancerTypeCode: "8140", CancerType: "Adenocarcinoma, NOS", StageCode: "110", Stage: "IA"},
		"100002": {PatientID: "100002", Age: 70, Sex: "F", Race: "Black", Smoking: "Former", CancerTypeCode: "8070", CancerType: "Squamous cell carcinoma, NOS", StageCode: "120", Stage: "IB"},
		"100003": {PatientID: "100003", Age: 60, Sex: "M", Race: "Asian", Smoking: "Former", CancerTypeCode: "8250", CancerType: "Lepidic adenocarcinoma", StageCode: "310", Stage: "IIIA"},
		"100006": {PatientID: "100006", Age: -1},
	}
	if len(clin) != len(wantClin) {
		t.Errorf("clinical rows for %d patients, want %d: %+v", len(clin), len(wantClin), out.clinical)
	}
	for p, w := range wantClin {
		if clin[p] != w {
			t.Errorf("clinical %s = %+v, want %+v", p, clin[p], w)
		}
	}

	// Instances: every slice of each lesion series with usable geometry, nothing else.
	perSeries := map[string]int{}
	for _, in := range out.instances {
		perSeries[in.SeriesInstanceUID]++
		if in.SeriesInstanceUID == s0.UID && in.SOPInstanceUID == s0.SOPUID(7) {
			if in.GCSURL != s0.GCSURL(7) || in.CRDCInstanceUUID != s0.CRDCInstanceUUID(7) || in.CRDCSeriesUUID != s0.CRDCSeriesUUID() ||
				in.InstanceSize != s0.InstanceSize(7) || in.InstanceNumber != 8 || in.ImagePositionPatient != s0.IPP(7) ||
				in.PixelSpacing != [2]float64{0.7, 0.7} || in.ImageOrientationPatient != [6]float64{1, 0, 0, 0, 1, 0} || in.Rows != 512 || in.Columns != 512 {
				t.Errorf("instance row %+v", in)
			}
		}
	}
	wantSeries := map[string]int{"1.2.826.0.1.1001.1": 10, "1.2.826.0.1.1002.1": 12, "1.2.826.0.1.1002.2": 5,
		"1.2.826.0.1.1003.1": 7, "1.2.826.0.1.1006.1": 4}
	if len(perSeries) != len(wantSeries) {
		t.Errorf("instances for series %v, want %v", perSeries, wantSeries)
	}
	for uid, n := range wantSeries {
		if perSeries[uid] != n {
			t.Errorf("series %s: %d instances, want %d", uid, perSeries[uid], n)
		}
	}

	// Table metadata.
	meta := func(key string) string { return tableMeta(t, out, key) }
	if meta(tables.MetaIDCVersion) != cohort.DefaultRelease || meta(tables.MetaConfigHash) == "" || meta("connectome.cohort.policy") != cohort.PolicyAllLesions ||
		meta(tables.MetaPipelineVersion) != "test" || meta("connectome.cohort.analysis_result_ids") != "NLST-Sybil,nlst_sybil" {
		t.Errorf("metadata: %s %s %s %s", meta(tables.MetaIDCVersion), meta("connectome.cohort.policy"),
			meta(tables.MetaPipelineVersion), meta("connectome.cohort.analysis_result_ids"))
	}

	// Stable ids: a second run gives the same lesion ids.
	again := runCohort(t, emu, settings(cohort.PolicyAllLesions))
	if again.runErr != nil {
		t.Fatal(again.runErr)
	}
	for i := range out.lesions {
		if out.lesions[i].LesionID != again.lesions[i].LesionID {
			t.Errorf("lesion %d id %s then %s", i, out.lesions[i].LesionID, again.lesions[i].LesionID)
		}
	}
}

func TestOneLesionPerPatient(t *testing.T) {
	emu := startEmulator(t, mainFixture())
	out := runCohort(t, emu, settings(cohort.PolicyOneLesionPerPatient))
	if out.runErr != nil {
		t.Fatal(out.runErr)
	}
	got := map[string]tables.Lesion{}
	for _, l := range out.lesions {
		if _, dup := got[l.PatientID]; dup {
			t.Errorf("patient %s has several lesions", l.PatientID)
		}
		got[l.PatientID] = l
	}
	// 100001's chosen series holds two lesions → dropped. 100002: the T0 series is chosen.
	if _, ok := got["100001"]; ok {
		t.Errorf("patient 100001 kept although its series holds 2 lesions")
	}
	if l, ok := got["100002"]; !ok || l.SeriesInstanceUID != "1.2.826.0.1.1002.1" {
		t.Errorf("patient 100002: %+v", l)
	}
	for _, p := range []string{"100003", "100006"} {
		if _, ok := got[p]; !ok {
			t.Errorf("patient %s missing", p)
		}
	}
	if len(got) != 3 || len(out.clinical) != 3 {
		t.Errorf("%d patients, %d clinical rows; want 3", len(got), len(out.clinical))
	}
}

func TestMaxBytesBilledHalts(t *testing.T) {
	emu := startEmulator(t, mainFixture())
	s := settings(cohort.PolicyAllLesions)
	s.MaxBytesBilled = 1
	out := runCohort(t, emu, s)
	if out.runErr == nil || !pipeline.IsHalt(out.runErr) || !strings.Contains(out.runErr.Error(), "max_bytes_billed") {
		t.Fatalf("got %v, want a halt naming max_bytes_billed", out.runErr)
	}
}

func TestMissingClinicalColumnHalts(t *testing.T) {
	f := mainFixture()
	for _, c := range idcfake.DefaultColumns() {
		if c.Column != "cigsmok" {
			f.Columns = append(f.Columns, c)
		}
	}
	out := runCohort(t, startEmulator(t, f), settings(cohort.PolicyAllLesions))
	if out.runErr == nil || !pipeline.IsHalt(out.runErr) || !strings.Contains(out.runErr.Error(), "cigsmok") {
		t.Fatalf("got %v, want a halt naming cigsmok", out.runErr)
	}
}
