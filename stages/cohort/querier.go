package cohort

import (
	"context"
	"errors"
	"os"
	"strings"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"connectome/pipeline"
)

// Querier is what the cohort stage needs from BigQuery. *BigQuery implements it, both
// against Google's service and against the emulator the tests start.
type Querier interface {
	// DryRun returns the bytes the query would process, without running it.
	DryRun(ctx context.Context, sql string, params []bigquery.QueryParameter) (int64, error)
	// Query runs the query with a billing cap and returns all rows, keyed by column name.
	Query(ctx context.Context, sql string, params []bigquery.QueryParameter, maxBytesBilled int64) ([]map[string]bigquery.Value, error)
}

// BigQuery is a Querier over the cloud.google.com/go/bigquery client.
type BigQuery struct {
	c *bigquery.Client
}

// NewBigQuery opens a client whose jobs run (and are billed) in project; an empty project
// falls back to GOOGLE_CLOUD_PROJECT. Credentials come from Application Default
// Credentials unless opts say otherwise (tests pass option.WithEndpoint and
// option.WithoutAuthentication for the emulator). A missing project or missing credentials
// is a *pipeline.HaltError with one line that says what to set; no credential content is
// ever put in an error or a log.
func NewBigQuery(ctx context.Context, project string, opts ...option.ClientOption) (*BigQuery, error) {
	if project == "" {
		project = strings.TrimSpace(os.Getenv("GOOGLE_CLOUD_PROJECT"))
	}
	if project == "" {
		return nil, pipeline.Haltf("no billing project for BigQuery: set cohort.billing_project in the config (or the billing-project flag) or the GOOGLE_CLOUD_PROJECT environment variable")
	}
	c, err := bigquery.NewClient(ctx, project, opts...)
	if err != nil {
		return nil, pipeline.Haltf("no usable Google Cloud credentials for BigQuery (%s): run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS to a key file", oneLine(err))
	}
	return &BigQuery{c: c}, nil
}

// Close releases the client.
func (b *BigQuery) Close() error { return b.c.Close() }

// DryRun implements Querier.
func (b *BigQuery) DryRun(ctx context.Context, sql string, params []bigquery.QueryParameter) (int64, error) {
	q := b.c.Query(sql)
	q.Parameters = params
	q.DryRun = true
	job, err := q.Run(ctx)
	if err != nil {
		return 0, err
	}
	st := job.LastStatus()
	if st == nil || st.Statistics == nil {
		return 0, errors.New("dry run returned no statistics")
	}
	if err := st.Err(); err != nil {
		return 0, err
	}
	return st.Statistics.TotalBytesProcessed, nil
}

// Query implements Querier.
func (b *BigQuery) Query(ctx context.Context, sql string, params []bigquery.QueryParameter, maxBytesBilled int64) ([]map[string]bigquery.Value, error) {
	q := b.c.Query(sql)
	q.Parameters = params
	q.MaxBytesBilled = maxBytesBilled
	it, err := q.Read(ctx)
	if err != nil {
		return nil, err
	}
	var rows []map[string]bigquery.Value
	for {
		row := map[string]bigquery.Value{}
		err := it.Next(&row)
		if errors.Is(err, iterator.Done) {
			return rows, nil
		}
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
}

// NewQuerier opens the Querier the settings need: a BigQuery client for source bigquery,
// nil for source file (which reads only local files).
func NewQuerier(ctx context.Context, s Settings, opts ...option.ClientOption) (Querier, error) {
	if s.Source != SourceBigQuery {
		return nil, nil
	}
	return NewBigQuery(ctx, s.BillingProject, opts...)
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// A compile-time check that *BigQuery is a Querier.
var _ Querier = (*BigQuery)(nil)
