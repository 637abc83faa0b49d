package similarity

import (
	"context"
	"os"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"connectome/internal/arrowfile"
	"connectome/internal/layout"
	"connectome/pipeline"
)

// embRow is one input row; empty lesion or patient means the column is absent (all rows of
// a file must agree); a nil vec is a null embedding.
type embRow struct {
	lesion, patient, model string
	vec                    []float32
}

// embSchema builds the input schema: fixed says fixed_size_list<float32>[dim] (else list),
// f64 makes the values float64.
func embSchema(rows []embRow, fixed, f64 bool) *arrow.Schema {
	var fields []arrow.Field
	if rows[0].lesion != "" {
		fields = append(fields, arrow.Field{Name: "lesion_id", Type: arrow.BinaryTypes.String})
	}
	if rows[0].patient != "" {
		fields = append(fields, arrow.Field{Name: "patient_id", Type: arrow.BinaryTypes.String})
	}
	var elem arrow.DataType = arrow.PrimitiveTypes.Float32
	if f64 {
		elem = arrow.PrimitiveTypes.Float64
	}
	var typ arrow.DataType = arrow.ListOf(elem)
	if fixed {
		dim := 0
		for _, r := range rows {
			if r.vec != nil {
				dim = len(r.vec)
				break
			}
		}
		typ = arrow.FixedSizeListOf(int32(dim), elem)
	}
	fields = append(fields,
		arrow.Field{Name: "model", Type: arrow.BinaryTypes.String},
		arrow.Field{Name: "embedding", Type: typ, Nullable: true},
		arrow.Field{Name: "ignored", Type: arrow.PrimitiveTypes.Int64})
	return arrow.NewSchema(fields, nil)
}

func embBatch(t *testing.T, mem memory.Allocator, rows []embRow, fixed, f64 bool) arrow.RecordBatch {
	t.Helper()
	schema := embSchema(rows, fixed, f64)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	for i, r := range rows {
		c := 0
		if r.lesion != "" {
			b.Field(c).(*array.StringBuilder).Append(r.lesion)
			c++
		}
		if r.patient != "" {
			b.Field(c).(*array.StringBuilder).Append(r.patient)
			c++
		}
		b.Field(c).(*array.StringBuilder).Append(r.model)
		lb := b.Field(c + 1).(array.ListLikeBuilder)
		if r.vec == nil {
			lb.AppendNull()
		} else {
			lb.Append(true)
			for _, x := range r.vec {
				if f64 {
					lb.ValueBuilder().(*array.Float64Builder).Append(float64(x))
				} else {
					lb.ValueBuilder().(*array.Float32Builder).Append(x)
				}
			}
		}
		b.Field(c + 2).(*array.Int64Builder).Append(int64(i))
	}
	return b.NewRecordBatch()
}

func writeArrow(t *testing.T, path string, rows []embRow, fixed, f64 bool) {
	t.Helper()
	rec := embBatch(t, memory.DefaultAllocator, rows, fixed, f64)
	defer rec.Release()
	if err := arrowfile.WriteFile(path, rec.Schema(), rec); err != nil {
		t.Fatal(err)
	}
}

func writeParquet(t *testing.T, path string, rows []embRow, fixed, f64 bool) {
	t.Helper()
	rec := embBatch(t, memory.DefaultAllocator, rows, fixed, f64)
	defer rec.Release()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := pqarrow.NewFileWriter(rec.Schema(), f, nil, pqarrow.DefaultWriterProps())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// recorder is the progress display of a test's stage context, and what the run recorded.
type recorder struct {
	t        testing.TB
	runDir   string
	dir      string
	mem      memory.Allocator
	failures map[string]pipeline.Failure
	counts   map[string]int64
	done     int64
	total    int64
}

func newRecorder(t testing.TB, runDir string) *recorder {
	return &recorder{t: t, runDir: runDir, dir: layout.New(runDir, pipeline.Shard{}).StageDir(layout.Similarity),
		mem: memory.DefaultAllocator, failures: map[string]pipeline.Failure{}}
}

func (r *recorder) Start(string, int64) pipeline.Bar { return r }
func (r *recorder) SetTotal(n int64)                 { r.total = n }
func (r *recorder) Add(n int64)                      { r.done += n }
func (r *recorder) Finish(bool)                      {}

// run runs the stage in a context of its own over the recorder's run directory and records
// its failures and counts.
func (r *recorder) run(ctx context.Context, st *Stage) error {
	sc, err := pipeline.NewContext(pipeline.ContextConfig{Stage: layout.Similarity, RunDir: r.runDir,
		ConfigHash: "testhash", Mem: r.mem, Progress: r})
	if err != nil {
		r.t.Fatal(err)
	}
	runErr := st.Run(ctx, sc)
	if err := sc.Close(); err != nil {
		r.t.Fatal(err)
	}
	fs, err := sc.Failures()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, f := range fs {
		r.failures[f.ItemID] = f
	}
	r.counts = sc.Counts()
	return runErr
}
