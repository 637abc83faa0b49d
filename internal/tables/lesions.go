package tables

import (
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"connectome/internal/arrowfile"
)

// Lesion is one node of the map: a row of cohort/lesions.arrow.
type Lesion struct {
	LesionID            string // stable across runs
	PatientID           string
	StudyInstanceUID    string
	SeriesInstanceUID   string // the CT series
	SRSeriesInstanceUID string // empty when the lesion did not come from an SR
	SRSOPInstanceUID    string
	KeySOPInstanceUID   string     // the CT slice through the centre
	CenterMM            [3]float64 // LPS
	NBoxes              int32
	BoxMinMM, BoxMaxMM  [3]float64 // LPS extent of the grouped boxes; zero when unknown
	StudyYear           int32      // NLST screening year 0/1/2; -1 when unknown
}

// LesionsSchema is the schema of cohort/lesions.arrow.
var lesionsFields = []arrow.Field{
	{Name: "lesion_id", Type: arrow.BinaryTypes.String},
	{Name: "patient_id", Type: arrow.BinaryTypes.String},
	{Name: "study_instance_uid", Type: arrow.BinaryTypes.String},
	{Name: "series_instance_uid", Type: arrow.BinaryTypes.String},
	{Name: "sr_series_instance_uid", Type: arrow.BinaryTypes.String},
	{Name: "sr_sop_instance_uid", Type: arrow.BinaryTypes.String},
	{Name: "key_sop_instance_uid", Type: arrow.BinaryTypes.String},
	{Name: "center_x_mm", Type: arrow.PrimitiveTypes.Float64},
	{Name: "center_y_mm", Type: arrow.PrimitiveTypes.Float64},
	{Name: "center_z_mm", Type: arrow.PrimitiveTypes.Float64},
	{Name: "n_boxes", Type: arrow.PrimitiveTypes.Int32},
	{Name: "box_min_x_mm", Type: arrow.PrimitiveTypes.Float64},
	{Name: "box_min_y_mm", Type: arrow.PrimitiveTypes.Float64},
	{Name: "box_min_z_mm", Type: arrow.PrimitiveTypes.Float64},
	{Name: "box_max_x_mm", Type: arrow.PrimitiveTypes.Float64},
	{Name: "box_max_y_mm", Type: arrow.PrimitiveTypes.Float64},
	{Name: "box_max_z_mm", Type: arrow.PrimitiveTypes.Float64},
	{Name: "study_year", Type: arrow.PrimitiveTypes.Int32},
}

// WriteLesions writes rows to path (atomically) with the given schema metadata.
func WriteLesions(path string, rows []Lesion, md arrow.Metadata) error {
	schema := arrow.NewSchema(lesionsFields, &md)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for _, r := range rows {
		str := func(i int, v string) { b.Field(i).(*array.StringBuilder).Append(v) }
		f64 := func(i int, v float64) { b.Field(i).(*array.Float64Builder).Append(v) }
		str(0, r.LesionID)
		str(1, r.PatientID)
		str(2, r.StudyInstanceUID)
		str(3, r.SeriesInstanceUID)
		str(4, r.SRSeriesInstanceUID)
		str(5, r.SRSOPInstanceUID)
		str(6, r.KeySOPInstanceUID)
		f64(7, r.CenterMM[0])
		f64(8, r.CenterMM[1])
		f64(9, r.CenterMM[2])
		b.Field(10).(*array.Int32Builder).Append(r.NBoxes)
		for a := 0; a < 3; a++ {
			f64(11+a, r.BoxMinMM[a])
			f64(14+a, r.BoxMaxMM[a])
		}
		b.Field(17).(*array.Int32Builder).Append(r.StudyYear)
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	return arrowfile.WriteFile(path, schema, rec)
}

// ReadLesions reads cohort/lesions.arrow.
func ReadLesions(path string) ([]Lesion, arrow.Metadata, error) {
	var rows []Lesion
	md, err := readBatches(path, func(b arrow.RecordBatch) error {
		s := make([]*array.String, 7)
		for i := range s {
			c, err := column[*array.String](b, lesionsFields[i].Name)
			if err != nil {
				return err
			}
			s[i] = c
		}
		f := make([]*array.Float64, 9)
		for i, fi := range []int{7, 8, 9, 11, 12, 13, 14, 15, 16} {
			c, err := column[*array.Float64](b, lesionsFields[fi].Name)
			if err != nil {
				return err
			}
			f[i] = c
		}
		nb, err := column[*array.Int32](b, "n_boxes")
		if err != nil {
			return err
		}
		sy, err := column[*array.Int32](b, "study_year")
		if err != nil {
			return err
		}
		for i := 0; i < int(b.NumRows()); i++ {
			rows = append(rows, Lesion{
				LesionID: s[0].Value(i), PatientID: s[1].Value(i), StudyInstanceUID: s[2].Value(i),
				SeriesInstanceUID: s[3].Value(i), SRSeriesInstanceUID: s[4].Value(i),
				SRSOPInstanceUID: s[5].Value(i), KeySOPInstanceUID: s[6].Value(i),
				CenterMM:  [3]float64{f[0].Value(i), f[1].Value(i), f[2].Value(i)},
				NBoxes:    nb.Value(i),
				BoxMinMM:  [3]float64{f[3].Value(i), f[4].Value(i), f[5].Value(i)},
				BoxMaxMM:  [3]float64{f[6].Value(i), f[7].Value(i), f[8].Value(i)},
				StudyYear: sy.Value(i),
			})
		}
		return nil
	})
	return rows, md, err
}
