package tables

import (
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"connectome/internal/arrowfile"
)

// Patch is one row of preprocess/patches.arrow: the input tensor of one model for one lesion,
// with where it came from and flags a person should look at.
type Patch struct {
	LesionID    string
	Model       string
	Shape       [5]int32 // (1, 1, R0, R1, R2), model axis order
	FracPadded  float64  // fraction of voxels from outside the volume (zero padding or SpatialPad)
	FracClipped float64  // fraction of voxels clipped by the HU window
	MeanHU10mm  float64  // mean HU in a ball of 10 mm diameter at the seed (1 mm grid, in-volume voxels)
	SeedInAir   bool     // MeanHU10mm below −900: the seed is probably not on tissue
	CropLo      [3]int32 // crop window on the resampled grid (RAS axes), [lo, hi)
	CropHi      [3]int32
	SeedIndex   [3]int32 // seed voxel c on the resampled grid (RAS axes)
	GridShape   [3]int32 // m: shape of the full resampled grid (RAS axes)
	SHA256      string   // hex SHA-256 of the tensor's little-endian float32 bytes
}

var patchFields = []arrow.Field{
	{Name: "lesion_id", Type: arrow.BinaryTypes.String},
	{Name: "model", Type: arrow.BinaryTypes.String},
	{Name: "shape", Type: arrow.FixedSizeListOf(5, arrow.PrimitiveTypes.Int32)},
	{Name: "frac_padded", Type: arrow.PrimitiveTypes.Float64},
	{Name: "frac_clipped", Type: arrow.PrimitiveTypes.Float64},
	{Name: "mean_hu_10mm", Type: arrow.PrimitiveTypes.Float64},
	{Name: "seed_in_air", Type: arrow.FixedWidthTypes.Boolean},
	{Name: "crop_lo", Type: arrow.FixedSizeListOf(3, arrow.PrimitiveTypes.Int32)},
	{Name: "crop_hi", Type: arrow.FixedSizeListOf(3, arrow.PrimitiveTypes.Int32)},
	{Name: "seed_index", Type: arrow.FixedSizeListOf(3, arrow.PrimitiveTypes.Int32)},
	{Name: "grid_shape", Type: arrow.FixedSizeListOf(3, arrow.PrimitiveTypes.Int32)},
	{Name: "sha256", Type: arrow.BinaryTypes.String},
}

// PatchSchema is the schema of preprocess/patches.arrow with metadata md.
func PatchSchema(md arrow.Metadata) *arrow.Schema { return arrow.NewSchema(patchFields, &md) }

func appendFixedInt32(b *array.FixedSizeListBuilder, v []int32) {
	b.Append(true)
	b.ValueBuilder().(*array.Int32Builder).AppendValues(v, nil)
}

func fixedInt32(col *array.FixedSizeList, i int, dst []int32) {
	vals := col.ListValues().(*array.Int32)
	start, _ := col.ValueOffsets(i)
	for k := range dst {
		dst[k] = vals.Value(int(start) + k)
	}
}

// WritePatches writes rows to path (atomically) with the given schema metadata.
func WritePatches(path string, rows []Patch, md arrow.Metadata) error {
	return writePatches(path, rows, md, arrowfile.WriteFile)
}

// WritePatchRecord writes one lesion's rows as a work file of the preprocess stage (its record,
// gathered into patches.arrow later): Arrow IPC only.
func WritePatchRecord(path string, rows []Patch, md arrow.Metadata) error {
	return writePatches(path, rows, md, arrowfile.WriteWorkFile)
}

func writePatches(path string, rows []Patch, md arrow.Metadata, write fileWriter) error {
	schema := PatchSchema(md)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for _, r := range rows {
		b.Field(0).(*array.StringBuilder).Append(r.LesionID)
		b.Field(1).(*array.StringBuilder).Append(r.Model)
		appendFixedInt32(b.Field(2).(*array.FixedSizeListBuilder), r.Shape[:])
		b.Field(3).(*array.Float64Builder).Append(r.FracPadded)
		b.Field(4).(*array.Float64Builder).Append(r.FracClipped)
		b.Field(5).(*array.Float64Builder).Append(r.MeanHU10mm)
		b.Field(6).(*array.BooleanBuilder).Append(r.SeedInAir)
		appendFixedInt32(b.Field(7).(*array.FixedSizeListBuilder), r.CropLo[:])
		appendFixedInt32(b.Field(8).(*array.FixedSizeListBuilder), r.CropHi[:])
		appendFixedInt32(b.Field(9).(*array.FixedSizeListBuilder), r.SeedIndex[:])
		appendFixedInt32(b.Field(10).(*array.FixedSizeListBuilder), r.GridShape[:])
		b.Field(11).(*array.StringBuilder).Append(r.SHA256)
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	return write(path, schema, rec)
}

// ReadPatches reads preprocess/patches.arrow.
func ReadPatches(path string) ([]Patch, arrow.Metadata, error) {
	var rows []Patch
	md, err := readBatches(path, func(b arrow.RecordBatch) error {
		lid, err := column[*array.String](b, "lesion_id")
		if err != nil {
			return err
		}
		model, err := column[*array.String](b, "model")
		if err != nil {
			return err
		}
		sha, err := column[*array.String](b, "sha256")
		if err != nil {
			return err
		}
		var f64 [3]*array.Float64
		for i, n := range []string{"frac_padded", "frac_clipped", "mean_hu_10mm"} {
			if f64[i], err = column[*array.Float64](b, n); err != nil {
				return err
			}
		}
		air, err := column[*array.Boolean](b, "seed_in_air")
		if err != nil {
			return err
		}
		var fl [5]*array.FixedSizeList
		for i, n := range []string{"shape", "crop_lo", "crop_hi", "seed_index", "grid_shape"} {
			if fl[i], err = column[*array.FixedSizeList](b, n); err != nil {
				return err
			}
		}
		for i := 0; i < int(b.NumRows()); i++ {
			r := Patch{LesionID: lid.Value(i), Model: model.Value(i), SHA256: sha.Value(i),
				FracPadded: f64[0].Value(i), FracClipped: f64[1].Value(i), MeanHU10mm: f64[2].Value(i),
				SeedInAir: air.Value(i)}
			fixedInt32(fl[0], i, r.Shape[:])
			fixedInt32(fl[1], i, r.CropLo[:])
			fixedInt32(fl[2], i, r.CropHi[:])
			fixedInt32(fl[3], i, r.SeedIndex[:])
			fixedInt32(fl[4], i, r.GridShape[:])
			rows = append(rows, r)
		}
		return nil
	})
	return rows, md, err
}
