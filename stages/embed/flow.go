package embed

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"

	"golang.org/x/sync/errgroup"

	"connectome/npy"
	"connectome/pipeline"
	"connectome/tables"
)

// job is one lesion's tensor for one model.
type job struct {
	lesion string
	data   []float32
}

// flow runs readers → (per model) batcher and inference → writer, until the items end.
func (st *Stage) flow(ctx context.Context, e env, ms []*model, all []pipeline.Item, patients map[string]string) error {
	g, gctx := errgroup.WithContext(ctx)
	jobs := make([]chan job, len(ms))
	for i, m := range ms {
		// Two batches of look-ahead: the readers fill the next batch while one runs.
		jobs[i] = make(chan job, 2*m.batch)
	}
	items := e.items(gctx, all)
	readers := st.s.Readers
	if readers <= 0 {
		readers = max(e.workers, 2)
	}
	var rwg sync.WaitGroup
	for w := 0; w < readers; w++ {
		rwg.Add(1)
		g.Go(func() error {
			defer rwg.Done()
			for {
				select {
				case it, ok := <-items:
					if !ok {
						return nil
					}
					if err := st.read(gctx, e, ms, jobs, it.ID); err != nil {
						return err
					}
				case <-gctx.Done():
					return context.Cause(gctx)
				}
			}
		})
	}
	g.Go(func() error {
		rwg.Wait()
		for _, c := range jobs {
			close(c)
		}
		return nil
	})
	for i, m := range ms {
		results := make(chan []tables.Embedding, 4)
		g.Go(func() error {
			defer close(results)
			return infer(gctx, e, m, jobs[i], results, patients)
		})
		g.Go(func() error { return write(e, m, results) })
	}
	return g.Wait()
}

// read loads a lesion's tensor for every model that still needs it and queues it.
func (st *Stage) read(ctx context.Context, e env, ms []*model, jobs []chan job, lesion string) error {
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
		path := e.tensorPath(m.spec.Name, lesion)
		data, err := readTensor(path, m.shape[1:])
		if errors.Is(err, os.ErrNotExist) {
			missing = append(missing, m.spec.Name)
			continue
		}
		if err != nil {
			e.fail(lesion, pipeline.Itemf(pipeline.ClassInput, lesion, "model %s: %w", m.spec.Name, err))
			continue
		}
		ready = append(ready, loaded{i, data})
	}
	if !e.streamed && len(missing) > 0 && len(missing) == pending {
		// Without a streaming upstream every lesion of the cohort comes by; one without any
		// tensor failed in preprocess, which recorded it already.
		e.count("no_tensors", 1)
		missing = nil
	}
	for _, name := range missing {
		e.fail(lesion, pipeline.Itemf(pipeline.ClassNotFound, lesion, "model %s: no input tensor %s",
			name, e.tensorPath(name, lesion)))
	}
	for _, r := range ready {
		select {
		case jobs[r.i] <- job{lesion: lesion, data: r.data}:
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
	shape, data, err := npy.ReadFloat32(f)
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
func infer(ctx context.Context, e env, m *model, jobs <-chan job, results chan<- []tables.Embedding, patients map[string]string) error {
	buf := make([]float32, m.batch*m.size)
	ids := make([]string, 0, m.batch)
	run := func() error {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		n := len(ids)
		clear(buf[n*m.size:]) // padding: zeros, whose outputs are dropped
		shape, out, err := m.session.Run(m.shape, buf)
		if err != nil {
			return pipeline.Haltf("embed: model %s: inference on a batch of %d: %w", m.spec.Name, m.batch, err)
		}
		dim := m.spec.EmbeddingDim
		if len(shape) != 2 || shape[0] != int64(m.batch) || shape[1] != int64(dim) {
			return pipeline.Haltf("embed: model %s: output shape %v, want [%d %d] (embedding_dim %d in %s)",
				m.spec.Name, shape, m.batch, dim, dim, m.path)
		}
		rows := make([]tables.Embedding, 0, n)
		for i, id := range ids {
			v := out[i*dim : (i+1)*dim : (i+1)*dim]
			if !finite(v) {
				e.fail(id, pipeline.Itemf(pipeline.ClassModel, id, "model %s: embedding has NaN or Inf values", m.spec.Name))
				continue
			}
			rows = append(rows, tables.Embedding{LesionID: id, PatientID: patients[id], Model: m.spec.Name, Vector: v})
		}
		ids = ids[:0]
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
func write(e env, m *model, results <-chan []tables.Embedding) error {
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
			return pipeline.Haltf("embed: model %s: %w", m.spec.Name, err)
		}
		e.progress.Add(int64(len(rows)))
	}
	return nil
}
