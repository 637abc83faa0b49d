// Package idcfake is a fake IDC for tests and the offline demo: fixture tables in IDC's
// BigQuery schemas (idcfixture.go) and the BigQuery emulator that serves them.
//
// The emulator is goccy/bigquery-emulator, run in-process; the fixture tables are loaded
// by load jobs from newline-delimited JSON, the one loading path that keeps IDC's nested
// REPEATED RECORD columns intact in the emulator (../shared/docs/toolchain.md §9). It is for
// tests and the offline demo only; cmd/connectome never imports it (the emulator adds about
// 270 MB to a binary).
package idcfake

import (
	"bytes"
	"context"
	"fmt"

	"cloud.google.com/go/bigquery"
	"github.com/goccy/bigquery-emulator/server"
	"github.com/goccy/bigquery-emulator/types"
	"google.golang.org/api/option"
)

// Emulator is a running in-process BigQuery emulator holding one project.
type Emulator struct {
	Project string
	srv     *server.Server
	ts      *server.TestServer
}

// Start starts an emulator with an empty project.
func Start(project string) (*Emulator, error) {
	srv, err := server.New(server.TempStorage)
	if err != nil {
		return nil, fmt.Errorf("start BigQuery emulator: %w", err)
	}
	// The emulator logs every request it answers with an error (the existence checks of Load
	// among them) to stderr; the client receives those errors anyway, so keep only fatal ones.
	if err := srv.SetLogLevel(server.LogLevelFatal); err != nil {
		srv.Close()
		return nil, err
	}
	if err := srv.Load(server.StructSource(types.NewProject(project))); err != nil {
		srv.Close()
		return nil, fmt.Errorf("create emulator project %s: %w", project, err)
	}
	if err := srv.SetProject(project); err != nil {
		srv.Close()
		return nil, err
	}
	return &Emulator{Project: project, srv: srv, ts: srv.TestServer()}, nil
}

// Endpoint is the emulator's REST endpoint.
func (e *Emulator) Endpoint() string { return e.ts.URL }

// ClientOptions point a BigQuery client at the emulator.
func (e *Emulator) ClientOptions() []option.ClientOption {
	return []option.ClientOption{option.WithEndpoint(e.ts.URL), option.WithoutAuthentication()}
}

// Close stops the emulator.
func (e *Emulator) Close() error {
	e.ts.Close()
	return e.srv.Close()
}

// Load creates each table (and its dataset) with its schema and fills it by a load job.
func (e *Emulator) Load(ctx context.Context, tables []Table) error {
	c, err := bigquery.NewClient(ctx, e.Project, e.ClientOptions()...)
	if err != nil {
		return fmt.Errorf("emulator client: %w", err)
	}
	defer c.Close()
	created := map[string]bool{}
	for _, t := range tables {
		d := c.Dataset(t.Dataset)
		if !created[t.Dataset] {
			// The emulator answers a duplicate create with 500, not 409: check first.
			if _, err := d.Metadata(ctx); err != nil {
				if err := d.Create(ctx, &bigquery.DatasetMetadata{}); err != nil {
					return fmt.Errorf("create dataset %s: %w", t.Dataset, err)
				}
			}
			created[t.Dataset] = true
		}
		tb := d.Table(t.Name)
		if err := tb.Create(ctx, &bigquery.TableMetadata{Schema: t.Schema}); err != nil {
			return fmt.Errorf("create table %s.%s: %w", t.Dataset, t.Name, err)
		}
		if t.Rows == 0 {
			continue
		}
		src := bigquery.NewReaderSource(bytes.NewReader(t.NDJSON))
		src.SourceFormat = bigquery.JSON
		src.Schema = t.Schema
		job, err := tb.LoaderFrom(src).Run(ctx)
		if err != nil {
			return fmt.Errorf("load %s.%s: %w", t.Dataset, t.Name, err)
		}
		st, err := job.Wait(ctx)
		if err != nil {
			return fmt.Errorf("load %s.%s: %w", t.Dataset, t.Name, err)
		}
		if err := st.Err(); err != nil {
			return fmt.Errorf("load %s.%s: %w", t.Dataset, t.Name, err)
		}
	}
	return nil
}
