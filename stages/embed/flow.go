package embed

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"

	"golang.org/x/sync/errgroup"

	"connectome/internal/layout"
	"connectome/internal/patch"
	"connectome/internal/tables"
	"connectome/pipeline"
)

// job is one lesion's tensor for one model.
type job struct {
	lesion, patient string
	data            []float32
}

// flow runs readers (the engine's worker pool over the items) → per model a batcher and
// inference → per model a writer, until the items end.
func (st *Stage) flow(ctx context.Context, sc *pipeline.Context, lay layout.Run, ms []*model) error {
	g, gctx := errgroup.WithContext(ctx)
	jobs := make([]chan job, len(ms))
	for i, m := range ms {
		// Two batches of look-ahead: the readers fill the next batch while one runs.
		jobs[i] = make(chan job, 2*m.batch)
	}
	readers := st.s.Readers
	if readers <= 0 {
		readers = max(sc.Workers, 2)
	}
	g.Go(func() error {
		defer func() {
			for _, c := range jobs {
				close(c)
			}
		}()
		return sc.Each(gctx, readers, func(ctx context.Context, it pipeline.Item) error {
			return st.read(ctx, sc, lay, ms, jobs, it)
		})
	})
	for i, m := range ms {
		results := make(chan []tables.Embedding, 4)
		g.Go(func() error {
			defer close(results)
			return infer(gctx, sc, m, jobs[i], results)
		})
		g.Go(func() error { return write(m, results) })
	}
	return g.Wait()
}

// read loads a lesion's tensor for every model that still needs it and queues it. A tensor
// that cannot be read fails that (model, lesion); the lesion's other models go on.
func (st *Stage) read(ctx context.Context, sc *pipeline.Context, lay layout.Run, ms []*model, jobs []chan job, it pipeline.Item) error {
	ls, err := tables.LesionSeriesOf(it.Payload)
	if err != nil {
		return pipeline.Haltf("embed lesion %s: %w", it.ID, err)
	}
	lesion := it.ID
	type loaded struct {
		i    int
		data []float32
	}
	var ready []loaded
	var missing []string
	pending := 0
	for i, m := range ms {
		if m.parts.done(lesion) {
			continue
		}
		pending++
		data, err := readTensor(lay.Tensor(m.spec.Name, lesion), m.shape[1:])
		if errors.Is(err, os.ErrNotExist) {
			missing = append(missing, m.spec.Name)
			continue
		}
		if err != nil {
			sc.Fail(lesion, pipeline.Itemf(pipeline.ClassInput, lesion, "model %s: %w", m.spec.Name, err))
			continue
		}
		ready = append(ready, loaded{i, data})
	}
	if !sc.Streamed() && len(missing) > 0 && len(missing) == pending {
		// Without a streaming upstream every lesion of the process comes by; one without any
		// tensor failed in preprocess, which recorded it already.
		sc.Count("no_tensors", 1)
		missing = nil
	}
	for _, name := range missing {
		sc.Fail(lesion, pipeline.Itemf(pipeline.ClassNotFound, lesion, "model %s: no input tensor %s",
			name, lay.Tensor(name, lesion)))
	}
	for _, r := range ready {
		select {
		case jobs[r.i] <- job{lesion: lesion, patient: ls.Lesion.PatientID, data: r.data}:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	return nil
}

// readTensor reads a .npy tensor and checks its shape against want (1, R0, R1, R2) with a
// leading batch of 1.
func readTensor(path string, want []int64) ([]float32, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	shape, data, err := patch.ReadNPY(f)
	if err != nil {
		return nil, fmt.Errorf("read tensor %s: %w", path, err)
	}
	ok := len(shape) == len(want)+1 && shape[0] == 1
	for i := 0; ok && i < len(want); i++ {
		ok = int64(shape[i+1]) == want[i]
	}
	if !ok {
		return nil, fmt.Errorf("tensor %s has shape %v, want (1, %d, %d, %d, %d)", path, shape, want[0], want[1], want[2], want[3])
	}
	return data, nil
}

// infer batches a model's jobs into fixed-size batches (the last padded with zeros), runs them
// one at a time on the model's session and hands the rows to the writer.
func infer(ctx context.Context, sc *pipeline.Context, m *model, jobs <-chan job, results chan<- []tables.Embedding) error {
	buf := make([]float32, m.batch*m.size)
	ids := make([]string, 0, m.batch)
	patients := make([]string, 0, m.batch)
	run := func() error {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		n := len(ids)
		clear(buf[n*m.size:]) // padding: zeros, whose outputs are dropped
		shape, out, err := m.session.Run(m.shape, buf)
		if err != nil {
			return pipeline.Haltf("model %s: inference on a batch of %d: %w", m.spec.Name, m.batch, err)
		}
		dim := m.spec.EmbeddingDim
		if len(shape) != 2 || shape[0] != int64(m.batch) || shape[1] != int64(dim) {
			return pipeline.Haltf("model %s: output shape %v, want [%d %d] (embedding_dim %d in %s)",
				m.spec.Name, shape, m.batch, dim, dim, m.path)
		}
		rows := make([]tables.Embedding, 0, n)
		for i, id := range ids {
			v := out[i*dim : (i+1)*dim : (i+1)*dim]
			if !finite(v) {
				sc.Fail(id, pipeline.Itemf(pipeline.ClassModel, id, "model %s: embedding has NaN or Inf values", m.spec.Name))
				continue
			}
			rows = append(rows, tables.Embedding{LesionID: id, PatientID: patients[i], Model: m.spec.Name, Vector: v})
		}
		ids, patients = ids[:0], patients[:0]
		select {
		case results <- rows:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	for {
		select {
		case j, ok := <-jobs:
			if !ok {
				if len(ids) > 0 {
					return run()
				}
				return nil
			}
			copy(buf[len(ids)*m.size:], j.data)
			ids = append(ids, j.lesion)
			patients = append(patients, j.patient)
			if len(ids) == m.batch {
				if err := run(); err != nil {
					return err
				}
			}
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

func finite(v []float32) bool {
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return false
		}
	}
	return true
}

// write commits finished batches as part files; batches that queued up meanwhile go into the
// same part. On an error it returns at once: the flow's context is then cancelled, which
// releases the inference goroutine.
func write(m *model, results <-chan []tables.Embedding) error {
	for rows := range results {
	more:
		for {
			select {
			case r, ok := <-results:
				if !ok {
					break more
				}
				rows = append(rows, r...)
			default:
				break more
			}
		}
		if len(rows) == 0 {
			continue
		}
		if err := m.parts.commit(rows); err != nil {
			return pipeline.Haltf("commit embeddings of model %s: %w", m.spec.Name, err)
		}
	}
	return nil
}
