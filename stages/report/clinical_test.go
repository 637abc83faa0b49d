package report

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"connectome/internal/arrowfile"
	"connectome/internal/tables"
	"connectome/pipeline"
)

// failures collects the item failures a read records.
type failures struct{ items, msgs []string }

func (f *failures) add(item string, err error) {
	f.items = append(f.items, item)
	f.msgs = append(f.msgs, err.Error())
	var ie *pipeline.ItemError
	if !errors.As(err, &ie) || ie.Class != pipeline.ClassInput || ie.Item != item {
		panic("not an input item error for " + item + ": " + err.Error())
	}
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestClinicalFileCSV: codes and labels in one file, both key columns, the NLST column names,
// and bad rows that fail as items while the others are read.
func TestClinicalFileCSV(t *testing.T) {
	p := writeFile(t, "clin.csv", "\ufeffPatient_ID,lesion_id,AGE,gender,race,cigsmok,cancer_type,stage\n"+
		"P1,,65,1,2,0,8140,0\n"+ // codes: male, Black, former, ICD-O-3 code, published index
		"P2,,71.0,F,White,Current,\"Squamous cell carcinoma, NOS\",IIB\n"+ // labels
		",L3,,,,,,400\n"+ // keyed by lesion, AJCC code
		"P4,,sixty,M,,,,\n"+ // bad age
		"P5,,60,M,,,,7\n"+ // bad stage index
		"P1,,66,M,,,,\n"+ // P1 again
		",,60,M,,,,\n") // no id
	var f failures
	ix, err := readClinicalFile(p, f.add)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"P4", "P5", "P1", "row 7"}; !slices.Equal(f.items, want) {
		t.Fatalf("failed items %q, want %q (%q)", f.items, want, f.msgs)
	}
	for i, frag := range []string{"row 4: age \"sixty\"", "row 5: stage \"7\"", "row 6: patient_id given again (row 1 is used)", "no lesion_id or patient_id"} {
		if !strings.Contains(f.msgs[i], frag) || !strings.Contains(f.msgs[i], p) {
			t.Errorf("failure %d %q: want the path and %q", i, f.msgs[i], frag)
		}
	}
	p1, p2, l3 := ix.byPatient["P1"], ix.byPatient["P2"], ix.byLesion["L3"]
	if p1 == nil || p2 == nil || l3 == nil || len(ix.byPatient) != 2 || len(ix.byLesion) != 1 {
		t.Fatalf("index %+v", ix)
	}
	want1 := tables.Clinical{PatientID: "P1", Age: 65, Sex: "M", Race: "Black", Smoking: "Former",
		CancerTypeCode: "8140", CancerType: "Adenocarcinoma, NOS", StageCode: "110", Stage: "IA"}
	if *p1 != want1 {
		t.Errorf("P1 %+v\nwant %+v", *p1, want1)
	}
	want2 := tables.Clinical{PatientID: "P2", Age: 71, Sex: "F", Race: "White", Smoking: "Current",
		CancerType: "Squamous cell carcinoma, NOS", Stage: "IIB"}
	if *p2 != want2 {
		t.Errorf("P2 %+v\nwant %+v", *p2, want2)
	}
	if l3.Age != -1 || l3.StageCode != "400" || l3.Stage != "IV" {
		t.Errorf("L3 %+v", *l3)
	}
	// A node finds its row by lesion id first, then by patient id.
	rows := ix.rowsFor([]string{"L3", "L9", "L1"}, []string{"P2", "P9", "P1"})
	if rows[0] != l3 || rows[1] != nil || rows[2] != p1 {
		t.Errorf("rowsFor: %v", rows)
	}
}

// TestClinicalFileArrowAndParquet: the same rows as Arrow IPC and as Parquet, typed columns
// (an integer age, a null) read like CSV text.
func TestClinicalFileArrowAndParquet(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "lesion_id", Type: arrow.BinaryTypes.String},
		{Name: "age", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "stage_code", Type: arrow.BinaryTypes.String},
		{Name: "sex", Type: arrow.BinaryTypes.String},
	}, nil)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	b.Field(0).(*array.StringBuilder).AppendValues([]string{"L1", "L2"}, nil)
	b.Field(1).(*array.Int64Builder).AppendValues([]int64{58, 0}, []bool{true, false})
	b.Field(2).(*array.StringBuilder).AppendValues([]string{"320", "123"}, nil)
	b.Field(3).(*array.StringBuilder).AppendValues([]string{"female", "2"}, nil)
	rec := b.NewRecordBatch()
	defer rec.Release()

	dir := t.TempDir()
	arrowPath := filepath.Join(dir, "clin.arrow")
	if err := arrowfile.WriteFile(arrowPath, schema, rec); err != nil {
		t.Fatal(err)
	}
	pqPath := filepath.Join(dir, "clin.data") // told apart by content, not by name
	fh, err := os.Create(pqPath)
	if err != nil {
		t.Fatal(err)
	}
	tbl := array.NewTableFromRecords(schema, []arrow.RecordBatch{rec})
	defer tbl.Release()
	if err := pqarrow.WriteTable(tbl, fh, 2, nil, pqarrow.DefaultWriterProps()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{arrowPath, pqPath} {
		var f failures
		ix, err := readClinicalFile(p, f.add)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		l1 := ix.byLesion["L1"]
		if l1 == nil || l1.Age != 58 || l1.Stage != "IIIB" || l1.Sex != "female" {
			t.Errorf("%s: L1 %+v", p, l1)
		}
		if !slices.Equal(f.items, []string{"L2"}) || !strings.Contains(f.msgs[0], `stage_code "123"`) {
			t.Errorf("%s: failures %q", p, f.msgs)
		}
	}
}

// TestClinicalFileHalts: a file that cannot be read, or lacks the key or every attribute
// column, halts the run and names the file.
func TestClinicalFileHalts(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"missing", "", "no such file"},
		{"no key column", "id,age\nP1,60\n", "no lesion_id or patient_id column (it has id, age)"},
		{"no attribute", "patient_id,colour\nP1,red\n", "none of the columns age, sex"},
		{"bad CSV", "patient_id,age\n\"P1,60\n", "extraneous or missing \" in quoted-field"},
		{"empty", "\n", "header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "absent.csv")
			if tc.body != "" {
				p = writeFile(t, "clin.csv", tc.body)
			}
			_, err := readClinicalFile(p, func(string, error) { t.Error("item failure instead of a halt") })
			if !pipeline.IsHalt(err) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a halt naming %s and %q", err, p, tc.want)
			}
		})
	}
}

// FuzzClinicalCSV: any CSV text either halts or gives rows and failures; it never panics, and
// every row it keeps is keyed by a non-empty id.
func FuzzClinicalCSV(f *testing.F) {
	for _, s := range []string{
		"patient_id,age,stage\nP1,60,0\n",
		"lesion_id,cancer_type,stage_code\nL1,8140/3,.M\n",
		"patient_id,sex\n\"a\"\"b\",1\n,,,\n",
		"PATIENT_ID,de_stag_mapped\nP,-1\nQ,1e9\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		p := filepath.Join(t.TempDir(), "clin.csv")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		ix, err := readClinicalFile(p, func(string, error) {})
		if err != nil {
			if !pipeline.IsHalt(err) {
				t.Fatalf("error is not a halt: %v", err)
			}
			return
		}
		for _, m := range []map[string]*tables.Clinical{ix.byLesion, ix.byPatient} {
			for id, c := range m {
				if id == "" || c == nil || c.Age < -1 || c.Age > 130 {
					t.Fatalf("row %q: %+v", id, c)
				}
			}
		}
	})
}
