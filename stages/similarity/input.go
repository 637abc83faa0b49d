package similarity

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"connectome/arrowio"
	"connectome/pipeline"
)

// modelSet is one model's usable embeddings, in input order.
type modelSet struct {
	name     string
	dim      int
	ids      []string // lesion_id (or patient_id when the input has no lesion_id)
	patients []string
	vecs     []float32 // len(ids) × dim
	seen     map[string]bool
	dimFrom  string // the id whose embedding fixed dim, for the halt message
}

// embeddings collects the models of every input file.
type embeddings struct {
	models map[string]*modelSet
	fail   func(id string, err error)
}

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
		f.Close()
		t, err := arrowio.ReadFile(path, mem)
		if err != nil {
			return pipeline.Haltf("read embeddings %s: %w", path, err)
		}
		defer t.Release()
		for _, b := range t.Batches {
			if err := e.addBatch(path, b); err != nil {
				return err
			}
		}
		return nil
	case bytes.Equal(head[:4], []byte("PAR1")):
		pf, err := file.NewParquetReader(f)
		if err != nil {
			return pipeline.Haltf("read embeddings %s: %w", path, err)
		}
		defer pf.Close()
		fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 1 << 14}, mem)
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
	default:
		return pipeline.Haltf("read embeddings %s: not an Arrow IPC or Parquet file", path)
	}
}

// addBatch adds the rows of one batch. Schema problems and inconsistent models halt; a bad
// vector is an item failure.
func (e *embeddings) addBatch(path string, b arrow.RecordBatch) error {
	col := func(name string) arrow.Array {
		if idx := b.Schema().FieldIndices(name); len(idx) > 0 {
			return b.Column(idx[0])
		}
		return nil
	}
	lesion, patient, model, emb := col("lesion_id"), col("patient_id"), col("model"), col("embedding")
	if lesion == nil && patient == nil {
		return pipeline.Haltf("read embeddings %s: no lesion_id or patient_id column", path)
	}
	if model == nil || emb == nil {
		return pipeline.Haltf("read embeddings %s: need columns model and embedding", path)
	}
	var lesionAt, patientAt func(int) (string, bool)
	var err error
	if lesion != nil {
		if lesionAt, err = stringsOf(lesion); err != nil {
			return pipeline.Haltf("read embeddings %s: lesion_id: %w", path, err)
		}
	}
	if patient != nil {
		if patientAt, err = stringsOf(patient); err != nil {
			return pipeline.Haltf("read embeddings %s: patient_id: %w", path, err)
		}
	}
	modelAt, err := stringsOf(model)
	if err != nil {
		return pipeline.Haltf("read embeddings %s: model: %w", path, err)
	}
	vecAt, err := vectorsOf(emb)
	if err != nil {
		return pipeline.Haltf("read embeddings %s: embedding: %w", path, err)
	}
	for i := 0; i < int(b.NumRows()); i++ {
		var id, pid string
		var ok bool
		if lesionAt != nil {
			id, ok = lesionAt(i)
		}
		if patientAt != nil {
			pid, _ = patientAt(i)
		}
		if !ok || id == "" {
			id, ok = pid, pid != ""
		}
		name, mok := modelAt(i)
		if !ok || !mok || name == "" {
			return pipeline.Haltf("read embeddings %s: row %d has no id or no model", path, i)
		}
		if pid == "" {
			pid = id
		}
		m := e.models[name]
		if m == nil {
			m = &modelSet{name: name, seen: map[string]bool{}}
			e.models[name] = m
		}
		if m.seen[id] {
			return pipeline.Haltf("read embeddings %s: model %s: id %s appears twice", path, name, id)
		}
		m.seen[id] = true
		if vecAt.isNull(i) {
			e.fail(id, pipeline.Itemf(pipeline.ClassInput, id, "model %s: embedding is null", name))
			continue
		}
		n := vecAt.len(i)
		if m.dim == 0 && len(m.ids) == 0 {
			m.dim, m.dimFrom = n, id
		}
		if n != m.dim {
			return pipeline.Haltf("read embeddings %s: model %s: id %s has dimension %d, id %s has %d", path, name, id, n, m.dimFrom, m.dim)
		}
		start := len(m.vecs)
		m.vecs = vecAt.appendTo(m.vecs, i)
		if msg := checkVector(m.vecs[start:]); msg != "" {
			m.vecs = m.vecs[:start]
			e.fail(id, pipeline.Itemf(pipeline.ClassInput, id, "model %s: embedding %s", name, msg))
			continue
		}
		m.ids = append(m.ids, id)
		m.patients = append(m.patients, pid)
	}
	return nil
}

// checkVector says why v cannot take part in a cosine ("" if it can).
func checkVector(v []float32) string {
	var ss float64
	for _, x := range v {
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return "has a non-finite value"
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

// appendTo appends row i as float32 (float64 input is rounded: the stage's inputs are
// float32 embeddings). A null value inside the list becomes NaN, which then fails the item.
func (v *vectors) appendTo(dst []float32, i int) []float32 {
	s, e := v.offs(i)
	for k := s; k < e; k++ {
		var x float32
		switch {
		case v.vals.IsNull(int(k)):
			x = float32(math.NaN())
		case v.f32 != nil:
			x = v.f32[k]
		default:
			x = float32(v.f64[k])
		}
		dst = append(dst, x)
	}
	return dst
}
