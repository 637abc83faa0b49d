// Package stages assembles the pipeline from a config: the six stages in run order (one
// package each), the clients each one gets, and the items that stream through fetch,
// preprocess and embed. It is the one place that knows the whole chain; `connectome run` and
// the offline demo both use it, so the demo runs the production code path with only the
// service endpoints changed.
package stages

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/option"

	"connectome/internal/layout"
	"connectome/internal/tables"
	"connectome/models"
	"connectome/models/onnxrt"
	"connectome/pipeline"
	"connectome/stages/cohort"
	"connectome/stages/embed"
	"connectome/stages/fetch"
	"connectome/stages/preprocess"
	"connectome/stages/report"
	"connectome/stages/similarity"
)

// Endpoints replace Google's service endpoints (the demo's in-process emulators). Empty
// fields mean the real services.
type Endpoints struct {
	BigQuery string // e.g. http://127.0.0.1:9050; requests are then unauthenticated
	GCS      string // e.g. http://127.0.0.1:4443/storage/v1/
}

// Pipeline is the assembled chain and what it holds open.
type Pipeline struct {
	Stages []pipeline.Stage
	// Items lists the run's lesions, each with the CT instances of its series, from the cohort
	// tables: read once per process and carried by the items through the streaming stages.
	Items    pipeline.ItemSource
	Registry *models.Registry
	Runtime  *onnxrt.Runtime
	config   Config
	version  string
	close    []func() error
}

// Close releases the clients and the ONNX Runtime.
func (p *Pipeline) Close() error {
	var first error
	for i := len(p.close) - 1; i >= 0; i-- {
		if err := p.close[i](); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Build assembles the stages. Clients that need credentials or native libraries (BigQuery,
// ONNX Runtime) are opened only when their stage actually runs, so a resumed run or
// `--only similarity` needs neither.
func Build(ctx context.Context, cfg Config, version string, ep Endpoints, log *slog.Logger) (*Pipeline, error) {
	reg, err := models.Load(cfg.ModelsFile)
	if err != nil {
		return nil, pipeline.Haltf("load model registry: %w", err)
	}
	lay := layout.New(cfg.RunDir, pipeline.Shard{})
	p := &Pipeline{Registry: reg, Items: tables.LesionItems(lay.Lesions(), lay.Instances()), config: cfg, version: version}
	idc := cfg.Cohort.IDCRelease

	cs := cfg.Cohort
	cs.PipelineVersion = version
	var bqOpts []option.ClientOption
	if ep.BigQuery != "" {
		bqOpts = append(bqOpts, option.WithEndpoint(ep.BigQuery), option.WithoutAuthentication())
	}
	lq := &lazyQuerier{open: func(ctx context.Context) (cohort.Querier, error) {
		return cohort.NewQuerier(ctx, cs, bqOpts...)
	}}
	p.close = append(p.close, lq.Close)
	var q cohort.Querier
	if cs.Source == cohort.SourceBigQuery {
		q = lq
	}

	fs := cfg.Fetch
	fs.PipelineVersion = version
	if ep.GCS != "" {
		fs.Endpoint = ep.GCS
	}
	if len(fs.Models) == 0 {
		// Fetch must plan every crop preprocess will read.
		fs.Models = cfg.Preprocess.Models
	}
	store, err := fetch.NewGCSClient(ctx, fs.Endpoint)
	if err != nil {
		return nil, pipeline.Haltf("open Cloud Storage client: %w", err)
	}
	p.close = append(p.close, store.Close)

	ps := cfg.Preprocess
	ps.PipelineVersion, ps.IDCVersion = version, idc
	ps.CacheDir = cfg.Fetch.CacheDir
	if ps.Workers == 0 {
		ps.Workers = cfg.Workers
	}

	lib, err := onnxrt.LibraryPath()
	if err != nil {
		// Reported when embed opens its first session; other stages do not need the library.
		log.Debug("ONNX Runtime library not found yet", "err", err)
	}
	p.Runtime = onnxrt.New(lib, log)
	p.close = append(p.close, p.Runtime.Close)
	es := cfg.Embed
	es.PipelineVersion, es.IDCVersion = version, idc

	ss := cfg.Similarity
	ss.PipelineVersion, ss.IDCVersion = version, idc

	rs := cfg.Report
	rs.PipelineVersion, rs.IDCVersion = version, idc
	rs.Models = reportModels(reg)

	p.Stages = []pipeline.Stage{
		cohort.New(cs, q).WithObjects(fs.Downloader(store)),
		fetch.New(fs, reg, store, nil).WithExtraCrops(preprocess.QCCrop()),
		preprocess.New(ps, reg),
		embed.New(es, reg, p.Runtime),
		similarity.New(ss),
		report.New(rs),
	}
	return p, nil
}

// Names lists the stage names in run order (what --from, --to and --only take).
func Names() []string { return layout.Stages() }

// NewRunner returns the engine's runner over the assembled stages. The caller sets the run's
// selection, output and manifest fields of o; the pipeline fills what it knows: the item
// source, the versions in every table and marker, the models' checksums.
func (p *Pipeline) NewRunner(o pipeline.Options) (*pipeline.Runner, error) {
	o.RunDir = p.config.RunDir
	o.Items = p.Items
	o.PipelineVersion = p.version
	o.TableMetadata = map[string]string{
		tables.MetaPipelineVersion: p.version,
		tables.MetaIDCVersion:      p.config.Cohort.IDCRelease,
	}
	if o.Workers == 0 {
		o.Workers = p.config.Workers
	}
	if o.Config == nil {
		o.Config = p.config
	}
	if o.Models == nil {
		sums := map[string]string{}
		for _, m := range p.Registry.Models {
			sums[m.Name] = m.SHA256
		}
		o.Models = sums
	}
	return pipeline.NewRunner(p.Stages, o)
}

func reportModels(reg *models.Registry) []report.ModelInfo {
	var out []report.ModelInfo
	for _, m := range reg.Models {
		out = append(out, report.ModelInfo{Name: m.Name, Title: m.Title, Description: m.Description,
			Citation: m.Citation, Reference: m.Reference, License: m.License})
	}
	return out
}

// lazyQuerier opens the BigQuery client on first use.
type lazyQuerier struct {
	open func(ctx context.Context) (cohort.Querier, error)
	once sync.Once
	q    cohort.Querier
	err  error
}

func (l *lazyQuerier) get(ctx context.Context) (cohort.Querier, error) {
	l.once.Do(func() { l.q, l.err = l.open(ctx) })
	if l.err == nil && l.q == nil {
		return nil, fmt.Errorf("cohort source does not use BigQuery")
	}
	return l.q, l.err
}

func (l *lazyQuerier) DryRun(ctx context.Context, sql string, params []bigquery.QueryParameter) (int64, error) {
	q, err := l.get(ctx)
	if err != nil {
		return 0, err
	}
	return q.DryRun(ctx, sql, params)
}

func (l *lazyQuerier) Query(ctx context.Context, sql string, params []bigquery.QueryParameter, maxBytesBilled int64) ([]map[string]bigquery.Value, error) {
	q, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return q.Query(ctx, sql, params, maxBytesBilled)
}

// Close closes the client if one was opened.
func (l *lazyQuerier) Close() error {
	if l.err != nil || l.q == nil {
		return nil // never opened, or opening failed: nothing to close
	}
	if c, ok := l.q.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}
