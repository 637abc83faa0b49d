package cohort

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLesionCSV: any bytes as a cohort CSV either fail to read (a halt naming the file) or
// give rows each with a non-empty, unique lesion id, patient and series; bad rows fail as
// items. None panics. `go test` runs the seeds (testdata/fuzz holds more).
func FuzzLesionCSV(f *testing.F) {
	hdr := "lesion_id,patient_id,series_instance_uid,center_x_mm,center_y_mm,center_z_mm\n"
	for _, s := range []string{
		hdr + "L1,P1,1.2.3,-5,-4,-45\n",
		hdr + "L1,P1,1.2.3,-5,-4,-45\nL1,P1,1.2.3,-2,-1,-40\n",
		hdr + "../../../../outside/pwn,P1,1.2.3,1,2,3\n",
		hdr + ",P1,1.2.3,NaN,1e400,-0\n",
		hdr, "", "\ufeffPATIENT_ID,Series_Instance_UID,center_x_mm,center_y_mm,center_z_mm\nP,S,1,2,3\n",
		hdr + "\"unterminated,P,S,1,2,3\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "lesions.csv")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		recs, err := readCSV(path)
		if err != nil {
			return
		}
		failed := 0
		rows, err := parseLesionRecords(recs, func(string, error) { failed++ })
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, r := range rows {
			l := r.lesion
			if l.LesionID == "" || l.PatientID == "" || l.SeriesInstanceUID == "" || seen[l.LesionID] {
				t.Fatalf("row %d kept: %+v", r.row, l)
			}
			seen[l.LesionID] = true
		}
		if len(rows)+failed > len(recs) {
			t.Fatalf("%d rows kept and %d failed of %d records", len(rows), failed, len(recs))
		}
	})
}
