package cohort

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"connectome/internal/dicomio/dicomsynth"
	"connectome/internal/layout"
	"connectome/internal/tables"
	"connectome/pipeline"
)

// TestFileSourceBadInputs: each bad input of a file cohort fails its own lesion, naming the
// cause (issue 20): a series that is not CT, a truncated and an empty slice file beside a
// series, and two rows with one lesion_id. The good lesion goes on.
func TestFileSourceBadInputs(t *testing.T) {
	tmp := t.TempDir()
	dcm := filepath.Join(tmp, "dicom")
	mk := func(sub, uid string, edit func(int, []*dicom.Element) []*dicom.Element) []string {
		s := dicomsynth.Series{Rows: 16, Columns: 16, Slices: 6, PixelSpacing: [2]float64{0.8, 0.8}, SliceSpacing: 2.5,
			Origin: [3]float64{-10, -10, -50}, HU: func(i, j, k int) float64 { return 0 }, PatientID: sub, SeriesUID: uid, Edit: edit}
		files, err := s.Write(filepath.Join(dcm, sub))
		if err != nil {
			t.Fatal(err)
		}
		return files
	}
	mk("good", "1.1", nil)
	mk("mr", "1.2", func(_ int, e []*dicom.Element) []*dicom.Element {
		for i, x := range e {
			if x.Tag == tag.Modality {
				mr, err := dicom.NewElement(tag.Modality, []string{"MR"})
				if err != nil {
					t.Fatal(err)
				}
				e[i] = mr
			}
		}
		return e
	})
	trunc := mk("trunc", "1.3", nil)
	if err := os.Truncate(trunc[3], 300); err != nil {
		t.Fatal(err)
	}
	empty := mk("empty", "1.4", nil)
	if err := os.Truncate(empty[2], 0); err != nil {
		t.Fatal(err)
	}
	csv := "lesion_id,patient_id,series_instance_uid,center_x_mm,center_y_mm,center_z_mm,de_stag\n" +
		"G,good,1.1,-5,-4,-45,110\n" +
		"M,mr,1.2,-5,-4,-45,\n" +
		"T,trunc,1.3,-5,-4,-45,\n" +
		"E,empty,1.4,-5,-4,-45,\n" +
		"D,good,1.1,-5,-4,-45,\n" +
		"D,good,1.1,-2,-1,-40,\n" +
		"S,staged,1.1,-5,-4,-45,777\n"
	runDir := runFileCohort(t, tmp, dcm, csv)
	ls, _, err := tables.ReadLesions(layout.New(runDir, pipeline.Shard{}).Lesions())
	if err != nil || len(ls) != 1 || ls[0].LesionID != "G" {
		t.Fatalf("lesions %+v %v", ls, err)
	}
	fs, err := pipeline.ReadFailures(filepath.Join(runDir, "failures.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"M":      "Modality MR: not a CT image",
		"T":      "unreadable file beside it: read header " + trunc[3],
		"E":      "unreadable file beside it: read header " + empty[2] + ": file is 0 bytes",
		"D":      `lesion file rows 5, 6 all have lesion_id "D"`,
		"staged": `lesion file row 7 (patient staged): de_stag "777" is not an AJCC stage code`,
	}
	got := map[string]string{}
	for _, f := range fs {
		got[f.ItemID] = f.Message
	}
	for id, frag := range want {
		if !strings.Contains(got[id], frag) {
			t.Errorf("lesion %s: failure %q, want it to contain %q", id, got[id], frag)
		} else if testing.Verbose() {
			t.Logf("%s: %s", id, got[id])
		}
	}
	if len(fs) != len(want) {
		t.Errorf("%d failures, want %d: %+v", len(fs), len(want), fs)
	}
}
