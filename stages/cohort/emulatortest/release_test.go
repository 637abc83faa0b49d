package emulatortest

import (
	"reflect"
	"strings"
	"testing"

	"connectome/internal/idcfake"
	"connectome/pipeline"
	"connectome/stages/cohort"
)

// TestReleasesGiveSameCohort runs the same SQL on a v23-style and a v25-style IDC (the
// analysis_result_id of the SRs changed from the name to an id in v24; idcfake.StyleOf)
// and gets the same cohort from both with the default settings.
func TestReleasesGiveSameCohort(t *testing.T) {
	v23, v25 := mainFixture(), mainFixture()
	v23.Release, v25.Release = "idc_v23", "idc_v25"
	if idcfake.StyleOf(v23.Release) == idcfake.StyleOf(v25.Release) {
		t.Fatal("the two fixtures have the same style: the test would prove nothing")
	}
	emu := startEmulator(t, v23, v25)
	run := func(release string, ids ...string) outputs {
		s := settings(cohort.PolicyAllLesions)
		s.IDCRelease = release
		if ids != nil {
			s.AnalysisResultIDs = ids
		}
		return runCohort(t, emu, s)
	}
	a, b := run("idc_v23"), run("idc_v25")
	if a.runErr != nil || b.runErr != nil {
		t.Fatalf("v23: %v; v25: %v", a.runErr, b.runErr)
	}
	if len(a.lesions) == 0 || !reflect.DeepEqual(a.lesions, b.lesions) || !reflect.DeepEqual(a.instances, b.instances) ||
		!reflect.DeepEqual(a.clinical, b.clinical) || len(a.failures) != len(b.failures) {
		t.Errorf("v23 and v25 cohorts differ:\nv23 %d lesions %d instances %d failures\nv25 %d lesions %d instances %d failures",
			len(a.lesions), len(a.instances), len(a.failures), len(b.lesions), len(b.instances), len(b.failures))
	}
	// instance_size is INT64 in one style and STRING in the other: the SAFE_CAST reads both.
	for i, in := range b.instances {
		if in.InstanceSize <= 0 || in.InstanceSize != a.instances[i].InstanceSize {
			t.Fatalf("instance %s: size %d (v25) vs %d (v23)", in.SOPInstanceUID, in.InstanceSize, a.instances[i].InstanceSize)
		}
	}
	for _, o := range []struct {
		out  outputs
		want string
	}{{a, "NLST-Sybil"}, {b, "nlst_sybil"}} {
		if got := tableMeta(t, o.out, "connectome.cohort.analysis_result_id_matched"); got != o.want {
			t.Errorf("matched analysis_result_id %q, want %q", got, o.want)
		}
	}
	// A config that names only the pre-v24 value halts on v25, naming the setting.
	c := run("idc_v25", "NLST-Sybil")
	if c.runErr == nil || !pipeline.IsHalt(c.runErr) || !strings.Contains(c.runErr.Error(), "analysis_result_ids") {
		t.Errorf("v25 with the v23 name only: %v, want a halt naming analysis_result_ids", c.runErr)
	}
}
