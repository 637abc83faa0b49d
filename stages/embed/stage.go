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
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"connectome/internal/arrowfile"
	"connectome/internal/layout"
	"connectome/internal/tables"
	"connectome/models"
	"connectome/models/onnx"
	"connectome/models/onnxrt"
	"connectome/pipeline"
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

func (st *Stage) Name() string { return layout.Embed }

// Version 2: the tables moved into the stage's directory (embed/<model>.arrow), so a run
// directory of version 1 must not count as done.
func (st *Stage) Version() string { return "2" }

// Streams: embedding batches fill as preprocess finishes lesions.
func (st *Stage) Streams() bool { return true }

// Sharding: a shard embeds its own lesions into its own embed/shard-i-of-N/<model>.arrow
// (pipeline.ShardAware).
func (st *Stage) Sharding() pipeline.Sharding { return layout.Sharding(layout.Embed) }

// Published: the committed batches are work files; the tables are what the merge reads
// (pipeline.Publisher), not their Parquet copies.
func (st *Stage) Published(rel string) bool {
	return !strings.HasPrefix(rel, layout.PartsDir+"/") && !arrowfile.IsParquetCopy(rel)
}

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
			return pipeline.Haltf("model %s: ONNX file %s is missing; %s", spec.Name, path, st.reg.Obtain)
		}
	}
	if st.s.Device == onnxrt.DeviceCUDA {
		if _, err := st.rt.CheckDevice(st.s.runtimeOptions()); err != nil {
			return pipeline.Haltf("settings: %w", err)
		}
	}
	return nil
}

// selected checks the settings and returns the models to run.
func (st *Stage) selected() ([]*models.Spec, error) {
	if err := st.s.Validate(); err != nil {
		return nil, pipeline.Haltf("settings: %w", err)
	}
	if st.reg == nil || st.rt == nil {
		return nil, pipeline.Haltf("no model registry or ONNX Runtime given")
	}
	specs, err := st.reg.Select(st.s.Models)
	if err != nil {
		return nil, pipeline.Halt(err)
	}
	return specs, nil
}

// Run embeds every lesion that arrives (or, without an upstream stage in the same run, every
// lesion of the process that has tensors) with every selected model, and writes each model's
// table in lesion order.
func (st *Stage) Run(ctx context.Context, sc *pipeline.Context) error {
	specs, err := st.selected()
	if err != nil {
		return err
	}
	opts := st.s.runtimeOptions()
	provider, err := st.rt.CheckDevice(opts)
	if err != nil {
		return pipeline.Halt(err)
	}
	if provider != "CUDA" {
		opts.Device = onnxrt.DeviceCPU // decided once: no per-model CUDA attempts and warnings
	}
	if st.s.Device == onnxrt.DeviceAuto && provider != "CUDA" {
		sc.Log.Warn("embed: CUDA execution provider unavailable, falling back to CPU (device auto)")
	}
	sc.Log.Info("embed: execution provider", "provider", provider, "ort", st.rt.Version(), "library", st.rt.Library())
	lay := layout.New(sc.RunDir, sc.Shard)
	ms := make([]*model, 0, len(specs))
	for _, spec := range specs {
		m, err := st.prepare(spec, sc, lay, opts)
		if err != nil {
			return err
		}
		ms = append(ms, m)
	}
	var done int64
	for _, m := range ms {
		done += int64(m.parts.doneCount())
	}
	if done > 0 {
		sc.Count("resumed", done)
		sc.Log.Info("embed: resuming", "pairs_done", done)
	}
	if err := st.flow(ctx, sc, lay, ms); err != nil {
		return err
	}
	if ctx.Err() != nil {
		// Interrupted: the committed parts stay for --resume; no final table from a partial run.
		return context.Cause(ctx)
	}
	items := sc.AllItems()
	order := make([]string, len(items))
	for i, it := range items {
		order[i] = it.ID
	}
	for _, m := range ms {
		path := lay.Embeddings(m.spec.Name)
		n, err := m.parts.assemble(path, order, m.spec.EmbeddingDim,
			tables.Metadata(st.s.PipelineVersion, st.s.IDCVersion, sc.ConfigHash, m.md))
		if err != nil {
			return pipeline.Haltf("write the embeddings table of model %s: %w", m.spec.Name, err)
		}
		sc.Count("embeddings", int64(n))
		sc.Log.Info("embed: table written", "model", m.spec.Name, "rows", n, "path", path)
	}
	return nil
}

// prepare checks a model's file, checksum and signature and opens its session.
func (st *Stage) prepare(spec *models.Spec, sc *pipeline.Context, lay layout.Run, opts onnxrt.Options) (*model, error) {
	path := filepath.Join(st.s.ModelsDir, spec.ONNX)
	sum, err := FileSHA256(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, pipeline.Haltf("model %s: ONNX file %s is missing; %s", spec.Name, path, st.reg.Obtain)
	}
	if err != nil {
		return nil, pipeline.Haltf("model %s: %w", spec.Name, err)
	}
	switch {
	case spec.SHA256 == "":
		sc.Log.Warn("embed: no sha256 recorded for the model; its file is not verified", "model", spec.Name, "file", path, "sha256", sum)
	case !strings.EqualFold(spec.SHA256, sum):
		return nil, pipeline.Haltf("model %s: %s has sha256 %s, but %s records %s; re-export it (%s) or fix the models file",
			spec.Name, path, sum, st.reg.Path, spec.SHA256, st.reg.Obtain)
	}
	if spec.ExternalData != "" {
		dpath := filepath.Join(st.s.ModelsDir, spec.ExternalData)
		dsum, err := FileSHA256(dpath)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, pipeline.Haltf("model %s: its external weights %s are missing; %s", spec.Name, dpath, st.reg.Obtain)
		case err != nil:
			return nil, pipeline.Haltf("model %s: %w", spec.Name, err)
		case spec.ExternalDataSHA256 == "":
			sc.Log.Warn("embed: no sha256 recorded for the model's external data; not verified", "model", spec.Name, "file", dpath, "sha256", dsum)
		case !strings.EqualFold(spec.ExternalDataSHA256, dsum):
			return nil, pipeline.Haltf("model %s: %s has sha256 %s, but %s records %s; re-export it (%s)",
				spec.Name, dpath, dsum, st.reg.Path, spec.ExternalDataSHA256, st.reg.Obtain)
		}
	}
	batch := spec.BatchSize
	if st.s.BatchSize > 0 {
		batch = st.s.BatchSize
	}
	if err := CheckSignature(path, spec, batch); err != nil {
		return nil, pipeline.Haltf("model %s: %w", spec.Name, err)
	}
	sess, err := st.rt.Open(path, spec.Input, spec.Output, opts)
	if err != nil {
		return nil, pipeline.Haltf("model %s: %w", spec.Name, err)
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
	m.parts, err = openParts(lay.EmbedParts(spec.Name), spec.EmbeddingDim, sc.Mem)
	if err != nil {
		return nil, pipeline.Haltf("model %s: %w", spec.Name, err)
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
