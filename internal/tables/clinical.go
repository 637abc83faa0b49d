package tables

import (
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"connectome/internal/arrowfile"
)

// Clinical is one patient's clinical data: a row of cohort/clinical.arrow. Codes are the
// source's codes (NLST nlst_prsn); labels are their mapped names, empty when unknown.
type Clinical struct {
	PatientID      string
	Age            int32 // -1 when unknown
	Sex            string
	Race           string
	Smoking        string
	CancerTypeCode string // ICD-O-3 morphology
	CancerType     string
	StageCode      string // AJCC stage code (NLST de_stag)
	Stage          string
}

var clinicalFields = []arrow.Field{
	{Name: "patient_id", Type: arrow.BinaryTypes.String},
	{Name: "age", Type: arrow.PrimitiveTypes.Int32},
	{Name: "sex", Type: arrow.BinaryTypes.String},
	{Name: "race", Type: arrow.BinaryTypes.String},
	{Name: "smoking", Type: arrow.BinaryTypes.String},
	{Name: "cancer_type_code", Type: arrow.BinaryTypes.String},
	{Name: "cancer_type", Type: arrow.BinaryTypes.String},
	{Name: "stage_code", Type: arrow.BinaryTypes.String},
	{Name: "stage", Type: arrow.BinaryTypes.String},
}

// WriteClinical writes rows to path (atomically) with the given schema metadata.
func WriteClinical(path string, rows []Clinical, md arrow.Metadata) error {
	schema := arrow.NewSchema(clinicalFields, &md)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for _, r := range rows {
		b.Field(0).(*array.StringBuilder).Append(r.PatientID)
		b.Field(1).(*array.Int32Builder).Append(r.Age)
		for i, v := range []string{r.Sex, r.Race, r.Smoking, r.CancerTypeCode, r.CancerType, r.StageCode, r.Stage} {
			b.Field(2 + i).(*array.StringBuilder).Append(v)
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	return arrowfile.WriteFile(path, schema, rec)
}

// ReadClinical reads cohort/clinical.arrow.
func ReadClinical(path string) ([]Clinical, arrow.Metadata, error) {
	var rows []Clinical
	md, err := readBatches(path, func(b arrow.RecordBatch) error {
		pid, err := column[*array.String](b, "patient_id")
		if err != nil {
			return err
		}
		age, err := column[*array.Int32](b, "age")
		if err != nil {
			return err
		}
		s := make([]*array.String, 7)
		for i := range s {
			c, err := column[*array.String](b, clinicalFields[2+i].Name)
			if err != nil {
				return err
			}
			s[i] = c
		}
		for i := 0; i < int(b.NumRows()); i++ {
			rows = append(rows, Clinical{
				PatientID: pid.Value(i), Age: age.Value(i), Sex: s[0].Value(i), Race: s[1].Value(i),
				Smoking: s[2].Value(i), CancerTypeCode: s[3].Value(i), CancerType: s[4].Value(i),
				StageCode: s[5].Value(i), Stage: s[6].Value(i),
			})
		}
		return nil
	})
	return rows, md, err
}
