package tables

import (
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"connectome/internal/arrowfile"
)

// Instance is one CT slice that some lesion needs: a row of cohort/instances.arrow.
// Geometry is as stored in DICOM (LPS, mm); it lets fetch plan and preprocess order slices
// without reading a file.
type Instance struct {
	SeriesInstanceUID       string
	SOPInstanceUID          string
	CRDCSeriesUUID          string // empty for a local source
	CRDCInstanceUUID        string
	GCSURL                  string // gs://bucket/<crdc_series_uuid>/<crdc_instance_uuid>.dcm
	LocalPath               string // set when the DICOM file is already on local disk (cohort.source: file)
	InstanceSize            int64  // bytes, 0 when unknown
	InstanceNumber          int32
	ImagePositionPatient    [3]float64
	ImageOrientationPatient [6]float64
	PixelSpacing            [2]float64 // row spacing, column spacing (DICOM order)
	Rows, Columns           int32
}

var instancesFields = []arrow.Field{
	{Name: "series_instance_uid", Type: arrow.BinaryTypes.String},
	{Name: "sop_instance_uid", Type: arrow.BinaryTypes.String},
	{Name: "crdc_series_uuid", Type: arrow.BinaryTypes.String},
	{Name: "crdc_instance_uuid", Type: arrow.BinaryTypes.String},
	{Name: "gcs_url", Type: arrow.BinaryTypes.String},
	{Name: "local_path", Type: arrow.BinaryTypes.String},
	{Name: "instance_size", Type: arrow.PrimitiveTypes.Int64},
	{Name: "instance_number", Type: arrow.PrimitiveTypes.Int32},
	{Name: "image_position_patient", Type: arrow.FixedSizeListOf(3, arrow.PrimitiveTypes.Float64)},
	{Name: "image_orientation_patient", Type: arrow.FixedSizeListOf(6, arrow.PrimitiveTypes.Float64)},
	{Name: "pixel_spacing", Type: arrow.FixedSizeListOf(2, arrow.PrimitiveTypes.Float64)},
	{Name: "rows", Type: arrow.PrimitiveTypes.Int32},
	{Name: "columns", Type: arrow.PrimitiveTypes.Int32},
}

// WriteInstances writes rows to path (atomically) with the given schema metadata.
func WriteInstances(path string, rows []Instance, md arrow.Metadata) error {
	schema := arrow.NewSchema(instancesFields, &md)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for _, r := range rows {
		for i, v := range []string{r.SeriesInstanceUID, r.SOPInstanceUID, r.CRDCSeriesUUID, r.CRDCInstanceUUID, r.GCSURL, r.LocalPath} {
			b.Field(i).(*array.StringBuilder).Append(v)
		}
		b.Field(6).(*array.Int64Builder).Append(r.InstanceSize)
		b.Field(7).(*array.Int32Builder).Append(r.InstanceNumber)
		appendFixedFloat64(b.Field(8).(*array.FixedSizeListBuilder), r.ImagePositionPatient[:])
		appendFixedFloat64(b.Field(9).(*array.FixedSizeListBuilder), r.ImageOrientationPatient[:])
		appendFixedFloat64(b.Field(10).(*array.FixedSizeListBuilder), r.PixelSpacing[:])
		b.Field(11).(*array.Int32Builder).Append(r.Rows)
		b.Field(12).(*array.Int32Builder).Append(r.Columns)
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	return arrowfile.WriteFile(path, schema, rec)
}

// ReadInstances reads cohort/instances.arrow.
func ReadInstances(path string) ([]Instance, arrow.Metadata, error) {
	var rows []Instance
	md, err := readBatches(path, func(b arrow.RecordBatch) error {
		s := make([]*array.String, 6)
		for i := range s {
			c, err := column[*array.String](b, instancesFields[i].Name)
			if err != nil {
				return err
			}
			s[i] = c
		}
		size, err := column[*array.Int64](b, "instance_size")
		if err != nil {
			return err
		}
		num, err := column[*array.Int32](b, "instance_number")
		if err != nil {
			return err
		}
		fl := make([]*array.FixedSizeList, 3)
		for i := range fl {
			c, err := column[*array.FixedSizeList](b, instancesFields[8+i].Name)
			if err != nil {
				return err
			}
			fl[i] = c
		}
		rowsCol, err := column[*array.Int32](b, "rows")
		if err != nil {
			return err
		}
		colsCol, err := column[*array.Int32](b, "columns")
		if err != nil {
			return err
		}
		for i := 0; i < int(b.NumRows()); i++ {
			r := Instance{
				SeriesInstanceUID: s[0].Value(i), SOPInstanceUID: s[1].Value(i),
				CRDCSeriesUUID: s[2].Value(i), CRDCInstanceUUID: s[3].Value(i),
				GCSURL: s[4].Value(i), LocalPath: s[5].Value(i),
				InstanceSize: size.Value(i), InstanceNumber: num.Value(i),
				Rows: rowsCol.Value(i), Columns: colsCol.Value(i),
			}
			fixedFloat64(fl[0], i, r.ImagePositionPatient[:])
			fixedFloat64(fl[1], i, r.ImageOrientationPatient[:])
			fixedFloat64(fl[2], i, r.PixelSpacing[:])
			rows = append(rows, r)
		}
		return nil
	})
	return rows, md, err
}
