package similarity

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/metadata"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"connectome/internal/knn"
	"connectome/pipeline"
)

// modelSet is one model's usable embeddings, in input order.
type modelSet struct {
	name     string
	dim      int
	ids      []string // lesion_id (or patient_id when the input has no lesion_id)
	patients []string
	vecs     *knn.Matrix // len(ids) rows of dim values; nil until the first usable vector
	seen     map[string]bool
	dimFrom  string // the id whose embedding fixed dim, for the halt message
}

// embeddings collects the models of every input file.
type embeddings struct {
	models map[string]*modelSet
	fail   func(id string, err error)
}

// sliceRows is how many rows of a batch are added before the file's pages are given back
// (readArrow): it bounds the input's share of the peak memory.
const sliceRows = 4096

// readFile reads one Arrow IPC or Parquet file (told apart by their magic bytes).
func (e *embeddings) readFile(ctx context.Context, path string, mem memory.Allocator) error {
	f, err := os.Open(path)
	if err != nil {
		return pipeline.Haltf("read embeddings %s: %w", path, err)
	}
	defer f.Close()
	head := make([]byte, 6)
	if _, err := io.ReadFull(f, head); err != nil {
		return pipeline.Haltf("read embeddings %s: not an Arrow IPC or Parquet file: %w", path, err)
	}
	switch {
	case bytes.Equal(head, []byte("ARROW1")):
		return e.readArrow(path, f, mem)
	case bytes.Equal(head[:4], []byte("PAR1")):
		return e.readParquet(ctx, path, f, mem)
	default:
		return pipeline.Haltf("read embeddings %s: not an Arrow IPC or Parquet file", path)
	}
}

// readArrow reads an Arrow IPC file batch by batch. Where it can, it maps the file into memory
// and reads the batches in place (arrow's mapped reader): the vectors are then copied once,
// from the page cache into the models' matrices, and the pages read are given back after each
// slice of rows, so a file of one large batch never sits in memory beside its copy. arrow-go's
// mapped reader does not set up dictionaries (v18.8: a nil map), so a schema with a dictionary
// column takes the copying reader, one batch at a time.
//
// A batch's body may be as large as the file (arrow-go refuses bodies over 256 MiB by default,
// which a single-batch file of 100 000 vectors of 768 exceeds); the readers check that every
// block lies within the file.
func (e *embeddings) readArrow(path string, f *os.File, mem memory.Allocator) error {
	st, err := f.Stat()
	if err != nil {
		return pipeline.Haltf("read embeddings %s: %w", path, err)
	}
	bodyLimit := ipc.WithBodySizeLimit(max(st.Size(), 1))
	r, err := ipc.NewFileReader(f, ipc.WithAllocator(mem), bodyLimit)
	if err != nil {
		return pipeline.Haltf("read embeddings %s: %w", path, err)
	}
	defer r.Close()
	if !hasDictionary(r.Schema().Fields()) {
		if mf, err := mapFile(f); err == nil {
			defer mf.close()
			mr, err := ipc.NewMappedFileReader(mf.data, ipc.WithAllocator(mem), bodyLimit)
			if err != nil {
				return pipeline.Haltf("read embeddings %s: %w", path, err)
			}
			defer mr.Close()
			return e.readBatches(path, mr, mf.drop)
		}
	}
	return e.readBatches(path, r, func() {})
}

// readBatches adds every batch of r in slices of sliceRows rows, calling drop after each.
func (e *embeddings) readBatches(path string, r *ipc.FileReader, drop func()) error {
	for i := range r.NumRecords() {
		b, err := r.RecordBatch(i)
		if err != nil {
			return pipeline.Haltf("read embeddings %s: batch %d: %w", path, i, err)
		}
		for lo := int64(0); lo < b.NumRows(); lo += sliceRows {
			s := b.NewSlice(lo, min(lo+sliceRows, b.NumRows()))
			err := e.addBatch(path, s)
			s.Release()
			drop()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func hasDictionary(fields []arrow.Field) bool {
	for _, f := range fields {
		switch t := f.Type.(type) {
		case *arrow.DictionaryType:
			return true
		case arrow.NestedType:
			if hasDictionary(t.Fields()) {
				return true
			}
		}
	}
	return false
}

// readParquet reads a Parquet file in batches of sliceRows rows, through a buffered stream
// rather than whole column chunks.
func (e *embeddings) readParquet(ctx context.Context, path string, f *os.File, mem memory.Allocator) error {
	props := parquet.NewReaderProperties(mem)
	props.BufferedStreamEnabled = true
	pf, err := file.NewParquetReader(f, file.WithReadProps(props))
	if err != nil {
		return pipeline.Haltf("read embeddings %s: %w", path, err)
	}
	defer pf.Close()
	if err := checkParquetBatches(pf.MetaData(), maxBatchBytes); err != nil {
		return pipeline.Haltf("read embeddings %s: %w", path, err)
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: sliceRows}, mem)
	if err != nil {
		return pipeline.Haltf("read embeddings %s: %w", path, err)
	}
	rr, err := fr.GetRecordReader(ctx, nil, nil)
	if err != nil {
		return pipeline.Haltf("read embeddings %s: %w", path, err)
	}
	defer rr.Release()
	for rr.Next() {
		if err := e.addBatch(path, rr.RecordBatch()); err != nil {
			return err
		}
	}
	if err := rr.Err(); err != nil && err != io.EOF {
		return pipeline.Haltf("read embeddings %s: %w", path, err)
	}
	return nil
}

// maxBatchBytes bounds one batch of sliceRows rows of a Parquet file, uncompressed, as
// arrow-go bounds an Arrow IPC batch by default: compressed pages of huge vectors (four rows
// of 50 M zeros are a few KiB on disk) would otherwise decode into gigabytes.
const maxBatchBytes = 256 << 20

// checkParquetBatches refuses a file whose row groups, by their metadata, may decode to more than
// limit bytes per batch.
func checkParquetBatches(md *metadata.FileMetaData, limit int64) error {
	for i := range md.NumRowGroups() {
		rg := md.RowGroup(i)
		// Pages may be compressed and dictionary- or run-length-encoded: the value count,
		// at 8 bytes a value (float64 at most), bounds what the reader decodes.
		size := rg.TotalByteSize()
		var cols int64
		for c := range rg.NumColumns() {
			if cc, err := rg.ColumnChunk(c); err == nil {
				cols += max(cc.TotalUncompressedSize(), 8*cc.NumValues())
			}
		}
		size = max(size, cols)
		rows := max(rg.NumRows(), 1)
		if batch := size / rows * min(rows, sliceRows); batch > limit {
			return fmt.Errorf("row group %d: %d rows take %d bytes uncompressed (%d per row), more than the %d MiB a batch may take (write smaller vectors or row groups)",
				i, rg.NumRows(), size, size/rows, limit>>20)
		}
	}
	return nil
}

// columns reads the columns of one batch that the stage uses.
type columns struct {
	lesionAt, patientAt func(int) (string, bool) // either may be nil, not both
	modelAt             func(int) (string, bool)
	vecs                *vectors
}

// columnsOf finds and checks the batch's columns; a missing or mistyped one halts.
func columnsOf(path string, b arrow.RecordBatch) (*columns, error) {
	col := func(name string) arrow.Array {
		if idx := b.Schema().FieldIndices(name); len(idx) > 0 {
			return b.Column(idx[0])
		}
		return nil
	}
	lesion, patient, model, emb := col("lesion_id"), col("patient_id"), col("model"), col("embedding")
	if lesion == nil && patient == nil {
		return nil, pipeline.Haltf("read embeddings %s: no lesion_id or patient_id column", path)
	}
	if model == nil || emb == nil {
		return nil, pipeline.Haltf("read embeddings %s: need columns model and embedding", path)
	}
	c := &columns{}
	var err error
	if lesion != nil {
		if c.lesionAt, err = stringsOf(lesion); err != nil {
			return nil, pipeline.Haltf("read embeddings %s: lesion_id: %w", path, err)
		}
	}
	if patient != nil {
		if c.patientAt, err = stringsOf(patient); err != nil {
			return nil, pipeline.Haltf("read embeddings %s: patient_id: %w", path, err)
		}
	}
	if c.modelAt, err = stringsOf(model); err != nil {
		return nil, pipeline.Haltf("read embeddings %s: model: %w", path, err)
	}
	if c.vecs, err = vectorsOf(emb); err != nil {
		return nil, pipeline.Haltf("read embeddings %s: embedding: %w", path, err)
	}
	return c, nil
}

// idsOf gives row i's node id (lesion_id, or patient_id where that is absent or empty) and
// patient id (the node id where there is none). The strings are copies: a mapped file's
// strings point into the mapping, which is gone once the file is read.
func (c *columns) idsOf(i int) (id, pid string, ok bool) {
	if c.lesionAt != nil {
		id, ok = c.lesionAt(i)
	}
	if c.patientAt != nil {
		pid, _ = c.patientAt(i)
	}
	if !ok || id == "" {
		id, ok = pid, pid != ""
	}
	if pid == "" {
		pid = id
	}
	return strings.Clone(id), strings.Clone(pid), ok
}

// addBatch adds the rows of one batch. Schema problems and inconsistent models halt; a bad
// vector is an item failure.
func (e *embeddings) addBatch(path string, b arrow.RecordBatch) error {
	c, err := columnsOf(path, b)
	if err != nil {
		return err
	}
	for i := 0; i < int(b.NumRows()); i++ {
		if err := e.addRow(path, c, i); err != nil {
			return err
		}
	}
	return nil
}

// addRow adds row i of a batch to its model.
func (e *embeddings) addRow(path string, c *columns, i int) error {
	id, pid, ok := c.idsOf(i)
	name, mok := c.modelAt(i)
	if !ok || !mok || name == "" {
		return pipeline.Haltf("read embeddings %s: row %d has no id or no model", path, i)
	}
	m := e.models[name]
	if m == nil {
		name = strings.Clone(name)
		m = &modelSet{name: name, seen: map[string]bool{}}
		e.models[name] = m
	}
	if m.seen[id] {
		return pipeline.Haltf("read embeddings %s: model %s: id %s appears twice", path, name, id)
	}
	m.seen[id] = true
	if c.vecs.isNull(i) {
		e.fail(id, pipeline.Itemf(pipeline.ClassInput, id, "model %s: embedding is null", name))
		return nil
	}
	n := c.vecs.len(i)
	if m.dim == 0 && len(m.ids) == 0 {
		m.dim, m.dimFrom = n, id
	}
	if n != m.dim {
		return pipeline.Haltf("read embeddings %s: model %s: id %s has dimension %d, id %s has %d", path, name, id, n, m.dimFrom, m.dim)
	}
	if msg := m.addVector(c.vecs, i); msg != "" {
		e.fail(id, pipeline.Itemf(pipeline.ClassInput, id, "model %s: embedding %s", name, msg))
		return nil
	}
	m.ids = append(m.ids, id)
	m.patients = append(m.patients, pid)
	return nil
}

// addVector stores row i of v (of m.dim values) as the model's next vector, or says why it
// cannot take part in a cosine and stores nothing.
func (m *modelSet) addVector(v *vectors, i int) string {
	if m.dim == 0 {
		return "has zero norm"
	}
	if m.vecs == nil {
		m.vecs = knn.NewMatrix(m.dim)
	}
	row := m.vecs.Grow()
	v.copyTo(row, i)
	if msg := checkVector(row); msg != "" {
		m.vecs.Truncate(m.vecs.Len() - 1)
		if bad := v.badValue(i); bad != "" {
			return bad
		}
		return msg
	}
	return ""
}

// checkVector says why v cannot take part in a cosine ("" if it can).
func checkVector(v []float32) string {
	var ss float64
	for _, x := range v {
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return "has a value that is not a finite float32"
		}
		ss += f * f
	}
	if ss == 0 || math.IsInf(ss, 0) {
		return "has zero norm"
	}
	return ""
}

// stringsOf gives a reader of a string-like column: string, large string, string view, a
// dictionary of those, or integers (patient ids are often numbers in external files).
func stringsOf(a arrow.Array) (func(int) (string, bool), error) {
	valid := func(i int) bool { return a.IsValid(i) }
	switch c := a.(type) {
	case *array.String:
		return func(i int) (string, bool) { return c.Value(i), valid(i) }, nil
	case *array.LargeString:
		return func(i int) (string, bool) { return c.Value(i), valid(i) }, nil
	case *array.StringView:
		return func(i int) (string, bool) { return c.Value(i), valid(i) }, nil
	case *array.Int64:
		return func(i int) (string, bool) { return strconv.FormatInt(c.Value(i), 10), valid(i) }, nil
	case *array.Int32:
		return func(i int) (string, bool) { return strconv.FormatInt(int64(c.Value(i)), 10), valid(i) }, nil
	case *array.Dictionary:
		dict, err := stringsOf(c.Dictionary())
		if err != nil {
			return nil, err
		}
		return func(i int) (string, bool) {
			if !valid(i) {
				return "", false
			}
			return dict(c.GetValueIndex(i))
		}, nil
	}
	return nil, fmt.Errorf("type %s is not a string or integer", a.DataType())
}

// vectors reads a list, large list or fixed-size list column of float32 or float64.
type vectors struct {
	list arrow.Array
	offs func(int) (int64, int64)
	f32  []float32
	f64  []float64
	vals arrow.Array
}

func vectorsOf(a arrow.Array) (*vectors, error) {
	ll, ok := a.(array.ListLike)
	if !ok {
		return nil, fmt.Errorf("type %s is not a list", a.DataType())
	}
	v := &vectors{list: a, offs: ll.ValueOffsets, vals: ll.ListValues()}
	switch c := ll.ListValues().(type) {
	case *array.Float32:
		v.f32 = c.Float32Values()
	case *array.Float64:
		v.f64 = c.Float64Values()
	default:
		return nil, fmt.Errorf("list of %s, want float32 or float64", c.DataType())
	}
	return v, nil
}

func (v *vectors) isNull(i int) bool { return v.list.IsNull(i) }

func (v *vectors) len(i int) int {
	s, e := v.offs(i)
	return int(e - s)
}

// badValue names row i's first value that is no finite float32 and why, for the failure
// message ("" if none): a finite float64 beyond float32's range is said to be that, not
// called non-finite.
func (v *vectors) badValue(i int) string {
	s, e := v.offs(i)
	for k := s; k < e; k++ {
		var x float64
		switch {
		case v.vals.IsNull(int(k)):
			return fmt.Sprintf("value %d is null", k-s)
		case v.f32 != nil:
			x = float64(v.f32[k])
		default:
			x = v.f64[k]
		}
		switch {
		case math.IsNaN(x) || math.IsInf(x, 0):
			return fmt.Sprintf("value %d is %v", k-s, x)
		case math.IsInf(float64(float32(x)), 0):
			return fmt.Sprintf("value %d is %g, beyond the float32 range (±3.4e38) the stage computes in", k-s, x)
		}
	}
	return ""
}

// copyTo writes row i into dst (len(dst) values) as float32 (float64 input is rounded: the
// stage's inputs are float32 embeddings). A null value inside the list becomes NaN, which then
// fails the item.
func (v *vectors) copyTo(dst []float32, i int) {
	s, _ := v.offs(i)
	for x := range dst {
		k := s + int64(x)
		switch {
		case v.vals.IsNull(int(k)):
			dst[x] = float32(math.NaN())
		case v.f32 != nil:
			dst[x] = v.f32[k]
		default:
			dst[x] = float32(v.f64[k])
		}
	}
}
