// Package embed is the pipeline's embed stage: it runs each model's ONNX encoder on the
// preprocessed tensors of every lesion and writes embeddings/<model>.arrow.
//
// Per model there is one ONNX Runtime session, fed fixed-size batches (the last one padded with
// zeros) by a single inference goroutine, while a pool of readers loads tensors and a writer
// commits each finished batch as a part file under embed/parts/<model>/. Reading, inference and
// writing therefore overlap. A resumed run reads the committed parts and skips the (model,
// lesion) pairs they hold; the final tables are assembled from the parts in lesion-table order,
// so an interrupted and resumed run gives the same table as an uninterrupted one.
package embed

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"connectome/arrowio"
	"connectome/models"
	"connectome/models/onnx"
	"connectome/models/onnxrt"
	"connectome/pipeline"
	"connectome/tables"
)

// Stage is the embed stage.
type Stage struct {
	s   Settings
	reg *models.Registry
	rt  *onnxrt.Runtime
}

// New returns the stage. reg is the models file's registry; rt is the process's ONNX Runtime
// (created once in main).
func New(s Settings, reg *models.Registry, rt *onnxrt.Runtime) *Stage {
	return &Stage{s: s, reg: reg, rt: rt}
}

func (st *Stage) Name() string    { return pipeline.StageEmbed }
func (st *Stage) Version() string { return "1" }

// Streams: embedding batches fill as preprocess finishes lesions.
func (st *Stage) Streams() bool { return true }

// Sharding: a shard embeds its own lesions into embeddings/<model>/part-i-of-N.arrow
// (pipeline.ShardAware).
func (st *Stage) Sharding() pipeline.Sharding { return pipeline.ShardEach }

// hashView is what decides the output: per model the fields that change its embeddings (the
// recorded checksums, tensor names, dimension and preprocessing), and the batch-size override.
// Device, threads, paths and the descriptive fields (title, licence, citation) do not change
// the embeddings beyond float rounding, so changing them does not re-run the stage.
type hashView struct {
	Models    []modelView `json:"models"`
	BatchSize int         `json:"batch_size"`
}

type modelView struct {
	Name               string            `json:"name"`
	SHA256             string            `json:"sha256"`
	ExternalDataSHA256 string            `json:"external_data_sha256,omitempty"`
	Input              string            `json:"input"`
	Output             string            `json:"output"`
	EmbeddingDim       int               `json:"embedding_dim"`
	Preprocess         models.Preprocess `json:"preprocess"`
}

// Settings returns the hashed view of the settings (see hashView).
func (st *Stage) Settings() any {
	v := hashView{BatchSize: st.s.BatchSize}
	if st.reg != nil {
		specs, err := st.reg.Select(st.s.Models)
		if err != nil {
			// Run halts on this; the hash only needs to differ from a valid selection's.
			return struct {
				Error string `json:"error"`
			}{err.Error()}
		}
		for _, s := range specs {
			v.Models = append(v.Models, modelView{Name: s.Name, SHA256: s.SHA256, ExternalDataSHA256: s.ExternalDataSHA256,
				Input: s.Input, Output: s.Output, EmbeddingDim: s.EmbeddingDim, Preprocess: s.Preprocess})
		}
	}
	return v
}

// env is what the stage needs from the engine, so that tests can run it without one.
type env struct {
	runDir, dir, configHash string
	resume                  bool
	workers                 int
	log                     *slog.Logger
	items                   func(ctx context.Context, all []pipeline.Item) <-chan pipeline.Item
	streamed                bool
	fail                    func(item string, err error)
	count                   func(name string, n int64)
	progress                interface {
		SetTotal(int64)
		Add(int64)
	}
	mem memory.Allocator
	// shard is the process's shard; prepDir is preprocess's directory for it ("" means
	// runDir/preprocess).
	shard   pipeline.Shard
	prepDir string
}

// tensorPath is where preprocess put a lesion's tensor for this process's shard.
func (e env) tensorPath(model, lesionID string) string {
	if e.prepDir == "" {
		return TensorPath(e.runDir, model, lesionID)
	}
	return filepath.Join(e.prepDir, "tensors", model, lesionID+".npy")
}

// tablePath is the model's output: its table, or the shard's part of it.
func (e env) tablePath(model string) string {
	if e.shard.IsPart() {
		return PartPath(e.runDir, model, e.shard)
	}
	return TablePath(e.runDir, model)
}

// Run embeds every lesion that arrives (or, without an upstream stage in the same run, every
// lesion of cohort/lesions.arrow that has tensors).
func (st *Stage) Run(ctx context.Context, sc *pipeline.Context) error {
	return st.run(ctx, env{
		runDir: sc.RunDir, dir: sc.Dir, configHash: sc.ConfigHash, resume: sc.Resume, workers: sc.Workers,
		log: sc.Log, items: sc.Items, streamed: sc.In != nil, fail: sc.Fail, count: sc.Count,
		progress: sc.Progress(0), mem: memory.DefaultAllocator,
		shard: sc.Shard, prepDir: pipeline.ShardDir(sc.RunDir, pipeline.StagePreprocess, sc.Shard),
	})
}

// TensorPath is where the preprocess stage writes a lesion's input tensor for a model.
func TensorPath(runDir, model, lesionID string) string {
	return filepath.Join(runDir, "preprocess", "tensors", model, lesionID+".npy")
}

// TablePath is the final embeddings table of a model.
func TablePath(runDir, model string) string {
	return filepath.Join(runDir, "embeddings", model+".arrow")
}

// PartPath is a shard's part of a model's embeddings, embeddings/<model>/part-i-of-N.arrow:
// the shard's lesions in lesion-table order, with the embed config hash (which includes N but
// not i) in its metadata, so a merge can tell parts of different configs apart.
func PartPath(runDir, model string, sh pipeline.Shard) string {
	return filepath.Join(runDir, "embeddings", model, sh.PartName())
}

// model is one model being run.
type model struct {
	spec    *models.Spec
	path    string
	sha256  string
	batch   int
	shape   []int64 // input shape of a full batch
	size    int     // values per lesion
	session *onnxrt.Session
	parts   *partStore
	md      map[string]string // table metadata beyond the standard keys
}

// Preflight checks, before any stage of the run starts, what would halt this one later: the
// settings, the models, each model's ONNX file being there, and (for --device cuda) that the
// CUDA provider loads. Checksums and signatures are checked when the stage runs.
func (st *Stage) Preflight(ctx context.Context) error {
	specs, err := st.selected()
	if err != nil {
		return err
	}
	for _, spec := range specs {
		path := filepath.Join(st.s.ModelsDir, spec.ONNX)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return pipeline.Haltf("embed: model %s: ONNX file %s is missing; %s", spec.Name, path, exportHint(spec))
		}
	}
	if st.s.Device == onnxrt.DeviceCUDA {
		if _, err := st.rt.CheckDevice(st.s.runtimeOptions()); err != nil {
			return pipeline.Haltf("embed: %w", err)
		}
	}
	return nil
}

// selected checks the settings and returns the models to run.
func (st *Stage) selected() ([]*models.Spec, error) {
	if err := st.s.Validate(); err != nil {
		return nil, pipeline.Haltf("%w", err)
	}
	if st.reg == nil || st.rt == nil {
		return nil, pipeline.Haltf("embed: no model registry or ONNX Runtime given")
	}
	specs, err := st.reg.Select(st.s.Models)
	if err != nil {
		return nil, pipeline.Haltf("embed: %w", err)
	}
	return specs, nil
}

func (st *Stage) run(ctx context.Context, e env) error {
	specs, err := st.selected()
	if err != nil {
		return err
	}
	lesions, _, err := tables.ReadLesions(filepath.Join(e.runDir, "cohort", "lesions.arrow"))
	if err != nil {
		return pipeline.Haltf("embed: read lesions: %w", err)
	}
	lesions = pipeline.ShardOf(lesions, func(l tables.Lesion) string { return l.LesionID }, e.shard)
	opts := st.s.runtimeOptions()
	provider, err := st.rt.CheckDevice(opts)
	if err != nil {
		return pipeline.Haltf("embed: %w", err)
	}
	if provider != "CUDA" {
		opts.Device = onnxrt.DeviceCPU // decided once: no per-model CUDA attempts and warnings
	}
	if st.s.Device == onnxrt.DeviceAuto && provider != "CUDA" {
		e.log.Warn("embed: CUDA execution provider unavailable, falling back to CPU (device auto)")
	}
	e.log.Info("embed: execution provider", "provider", provider, "ort", st.rt.Version(), "library", st.rt.Library())

	if !e.resume {
		// A fresh attempt: parts and tables of an earlier one must not leak into this one.
		if err := os.RemoveAll(filepath.Join(e.dir, "parts")); err != nil {
			return pipeline.Haltf("clear parts: %w", err)
		}
		if err := clearTables(e, specs); err != nil {
			return pipeline.Haltf("clear embeddings: %w", err)
		}
	}
	ms := make([]*model, 0, len(specs))
	for _, spec := range specs {
		m, err := st.prepare(spec, e, opts)
		if err != nil {
			return err
		}
		ms = append(ms, m)
	}
	patients := make(map[string]string, len(lesions))
	all := make([]pipeline.Item, len(lesions))
	for i, l := range lesions {
		patients[l.LesionID] = l.PatientID
		all[i] = pipeline.Item{ID: l.LesionID}
	}
	var done int64
	for _, m := range ms {
		done += int64(m.parts.doneCount())
	}
	e.progress.SetTotal(int64(len(lesions) * len(ms)))
	e.progress.Add(done)
	if done > 0 {
		e.count("resumed", done)
		e.log.Info("embed: resuming", "pairs_done", done)
	}

	if err := st.flow(ctx, e, ms, all, patients); err != nil {
		return err
	}
	if ctx.Err() != nil {
		// Interrupted: the committed parts stay for --resume; no final table from a partial run.
		return context.Cause(ctx)
	}
	order := make([]string, len(lesions))
	for i, l := range lesions {
		order[i] = l.LesionID
	}
	for _, m := range ms {
		n, err := m.parts.assemble(e.tablePath(m.spec.Name), order, m.spec.EmbeddingDim,
			arrowio.Metadata(st.s.PipelineVersion, st.s.IDCVersion, e.configHash, m.md))
		if err != nil {
			return pipeline.Haltf("embed: write table of %s: %w", m.spec.Name, err)
		}
		e.count("embeddings", int64(n))
		e.log.Info("embed: table written", "model", m.spec.Name, "rows", n, "path", e.tablePath(m.spec.Name))
	}
	return nil
}

// exportHint says how to get a model's ONNX file.
func exportHint(spec *models.Spec) string {
	if strings.HasPrefix(spec.Name, "demo-") || strings.HasPrefix(spec.Name, "test-") {
		return "generated encoders are written by `connectome models write-demo` (make demo)"
	}
	return "export it on a GPU VM with internet: python3 scripts/export_models.py --models " + spec.Name + " (see scripts/requirements-export.txt), then copy it there"
}

// prepare checks a model's file, checksum and signature and opens its session.
func (st *Stage) prepare(spec *models.Spec, e env, opts onnxrt.Options) (*model, error) {
	path := filepath.Join(st.s.ModelsDir, spec.ONNX)
	sum, err := FileSHA256(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, pipeline.Haltf("embed: model %s: ONNX file %s is missing; %s", spec.Name, path, exportHint(spec))
	}
	if err != nil {
		return nil, pipeline.Haltf("embed: model %s: %w", spec.Name, err)
	}
	switch {
	case spec.SHA256 == "":
		e.log.Warn("embed: no sha256 recorded for the model; its file is not verified", "model", spec.Name, "file", path, "sha256", sum)
	case !strings.EqualFold(spec.SHA256, sum):
		return nil, pipeline.Haltf("embed: model %s: %s has sha256 %s, but %s records %s; re-export it (%s) or fix the models file",
			spec.Name, path, sum, st.reg.Path, spec.SHA256, exportHint(spec))
	}
	if spec.ExternalData != "" {
		dpath := filepath.Join(st.s.ModelsDir, spec.ExternalData)
		dsum, err := FileSHA256(dpath)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, pipeline.Haltf("embed: model %s: its external weights %s are missing; %s", spec.Name, dpath, exportHint(spec))
		case err != nil:
			return nil, pipeline.Haltf("embed: model %s: %w", spec.Name, err)
		case spec.ExternalDataSHA256 == "":
			e.log.Warn("embed: no sha256 recorded for the model's external data; not verified", "model", spec.Name, "file", dpath, "sha256", dsum)
		case !strings.EqualFold(spec.ExternalDataSHA256, dsum):
			return nil, pipeline.Haltf("embed: model %s: %s has sha256 %s, but %s records %s; re-export it (%s)",
				spec.Name, dpath, dsum, st.reg.Path, spec.ExternalDataSHA256, exportHint(spec))
		}
	}
	batch := spec.BatchSize
	if st.s.BatchSize > 0 {
		batch = st.s.BatchSize
	}
	if err := CheckSignature(path, spec, batch); err != nil {
		return nil, pipeline.Haltf("embed: model %s: %w", spec.Name, err)
	}
	sess, err := st.rt.Open(path, spec.Input, spec.Output, opts)
	if err != nil {
		return nil, pipeline.Haltf("embed: model %s: %w", spec.Name, err)
	}
	pre, _ := json.Marshal(spec.Preprocess)
	shape := spec.InputShape(batch)
	m := &model{spec: spec, path: path, sha256: sum, batch: batch, shape: shape,
		size: int(shape[2] * shape[3] * shape[4]), session: sess,
		md: map[string]string{
			tables.MetaModel:         spec.Name,
			tables.MetaModelSHA256:   sum,
			tables.MetaPreprocessing: string(pre),
			tables.MetaEmbeddingDim:  strconv.Itoa(spec.EmbeddingDim),
		}}
	m.parts, err = openParts(filepath.Join(e.dir, "parts", spec.Name), spec.EmbeddingDim, e.mem)
	if err != nil {
		return nil, pipeline.Haltf("embed: model %s: %w", spec.Name, err)
	}
	return m, nil
}

// CheckSignature checks an ONNX file's declared input and output against the spec: names,
// input shape (batch, 1, R0, R1, R2) and output (batch, embedding_dim). A fixed batch size in
// the file must equal batch.
func CheckSignature(path string, spec *models.Spec, batch int) error {
	sig, err := onnx.ReadSignatureFile(path)
	if err != nil {
		return err
	}
	in, ok := sig.Input(spec.Input)
	if !ok {
		return fmt.Errorf("%s has no input %q (inputs: %v)", path, spec.Input, sig.Inputs)
	}
	out, ok := sig.Output(spec.Output)
	if !ok {
		return fmt.Errorf("%s has no output %q (outputs: %v)", path, spec.Output, sig.Outputs)
	}
	if in.Elem != onnx.Float32 || out.Elem != onnx.Float32 {
		return fmt.Errorf("%s: input and output must be float32 (element types %d, %d)", path, in.Elem, out.Elem)
	}
	want := spec.InputShape(batch)
	if len(in.Dims) != len(want) {
		return fmt.Errorf("%s: input %v, want (batch, 1, %d, %d, %d)", path, in, want[2], want[3], want[4])
	}
	for i, d := range in.Dims {
		if d.Param != "" {
			continue // symbolic: any size
		}
		if d.Value != want[i] {
			if i == 0 {
				return fmt.Errorf("%s: input %v has a fixed batch of %d, but the batch size is %d (set batch_size to %d or export with a symbolic batch)",
					path, in, d.Value, batch, d.Value)
			}
			return fmt.Errorf("%s: input %v, want (batch, 1, %d, %d, %d) from the preprocessing (roi %v, axcodes %s)",
				path, in, want[2], want[3], want[4], spec.Preprocess.ROI, spec.Preprocess.Axcodes)
		}
	}
	if len(out.Dims) != 2 {
		return fmt.Errorf("%s: output %v, want (batch, %d)", path, out, spec.EmbeddingDim)
	}
	if d := out.Dims[1]; d.Param == "" && d.Value != int64(spec.EmbeddingDim) {
		return fmt.Errorf("%s: output %v has dimension %d, but embedding_dim is %d", path, out, d.Value, spec.EmbeddingDim)
	}
	return nil
}

// FileSHA256 is the hex sha256 of a file's content.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("checksum %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
