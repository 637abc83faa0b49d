package pipeline

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"connectome/internal/arrowfile"
)

// failuresJournal is each stage's append-only record of item failures; failures.arrow at the
// run root is rebuilt from all of them, so a failure is on disk the moment it happens.
const failuresJournal = "_failures.jsonl"

// Failure is one row of failures.arrow.
type Failure struct {
	Stage      string    `json:"stage"`
	ItemID     string    `json:"item_id"`
	ErrorClass string    `json:"error_class"`
	Message    string    `json:"message"`
	Time       time.Time `json:"time"`
}

// failureLog appends a stage's failures to its journal.
type failureLog struct {
	mu   sync.Mutex
	path string
	f    *os.File
	err  error // first write error, reported when the stage ends
	now  func() time.Time
}

func openFailureLog(stageDir string) (*failureLog, error) {
	path := filepath.Join(stageDir, failuresJournal)
	// A stage that runs again retries its failed items, so its old failures no longer hold.
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open failure journal: %w", err)
	}
	return &failureLog{path: path, f: f, now: time.Now}, nil
}

func (l *failureLog) add(stage, item string, err error) {
	msg := err.Error()
	var ie *ItemError
	if errors.As(err, &ie) {
		msg = ie.Err.Error()
		if ie.Item != "" && ie.Item != item {
			msg = ie.Item + ": " + msg
		}
	}
	rec := Failure{Stage: stage, ItemID: item, ErrorClass: ErrorClass(err), Message: msg, Time: l.now().UTC()}
	b, jerr := json.Marshal(rec)
	l.mu.Lock()
	defer l.mu.Unlock()
	if jerr != nil {
		if l.err == nil {
			l.err = fmt.Errorf("encode failure of %s: %w", item, jerr)
		}
		return
	}
	if _, werr := l.f.Write(append(b, '\n')); werr != nil && l.err == nil {
		l.err = fmt.Errorf("write failure journal %s: %w", l.path, werr)
	}
}

func (l *failureLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	cerr := l.f.Close()
	if l.err != nil {
		return l.err
	}
	return cerr
}

// journals lists the failure journals a process's table is built from, in stage order: for a
// shard, its own stage directories'; otherwise every stage's and every shard's.
func journals(runDir string, stages []string, sh Shard) ([]string, error) {
	var out []string
	for _, st := range stages {
		if sh.IsPart() {
			out = append(out, filepath.Join(ShardDir(runDir, st, sh), failuresJournal))
			continue
		}
		out = append(out, filepath.Join(runDir, st, failuresJournal))
		shards, err := filepath.Glob(filepath.Join(runDir, st, "shard-*-of-*", failuresJournal))
		if err != nil {
			return nil, fmt.Errorf("list failure journals of %s: %w", st, err)
		}
		out = append(out, shards...)
	}
	return out, nil
}

// readJournal reads one failure journal; a missing journal has no failures.
func readJournal(path string) ([]Failure, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read failure journal: %w", err)
	}
	defer f.Close()
	var out []Failure
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var rec Failure
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			// A line cut by a crash is the only way to get here; skip it.
			continue
		}
		out = append(out, rec)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read failure journal %s: %w", path, err)
	}
	return out, nil
}

// readFailures reads the journals under runDir (see journals), in stage order then time order.
func readFailures(runDir string, stages []string, sh Shard) ([]Failure, error) {
	paths, err := journals(runDir, stages, sh)
	if err != nil {
		return nil, err
	}
	var out []Failure
	for _, path := range paths {
		recs, err := readJournal(path)
		if err != nil {
			return nil, err
		}
		out = append(out, recs...)
	}
	rank := make(map[string]int, len(stages))
	for i, s := range stages {
		rank[s] = i
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Stage != out[j].Stage {
			return rank[out[i].Stage] < rank[out[j].Stage]
		}
		return out[i].Time.Before(out[j].Time)
	})
	return out, nil
}

var failureFields = []arrow.Field{
	{Name: "stage", Type: arrow.BinaryTypes.String},
	{Name: "item_id", Type: arrow.BinaryTypes.String},
	{Name: "error_class", Type: arrow.BinaryTypes.String},
	{Name: "message", Type: arrow.BinaryTypes.String},
	{Name: "time", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}},
}

// writeFailuresTable rebuilds RunDir/failures.arrow (a shard's: FailuresName) and its
// Parquet copy from the journals of the stages; it returns the row count.
func writeFailuresTable(runDir string, stages []string, sh Shard, md arrow.Metadata) (int, error) {
	rows, err := readFailures(runDir, stages, sh)
	if err != nil {
		return 0, err
	}
	schema := arrow.NewSchema(failureFields, &md)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for _, r := range rows {
		b.Field(0).(*array.StringBuilder).Append(r.Stage)
		b.Field(1).(*array.StringBuilder).Append(r.ItemID)
		b.Field(2).(*array.StringBuilder).Append(r.ErrorClass)
		b.Field(3).(*array.StringBuilder).Append(r.Message)
		b.Field(4).(*array.TimestampBuilder).Append(arrow.Timestamp(r.Time.UnixMicro()))
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	// with a Parquet copy beside it, as every table of the run has
	if err := arrowfile.WriteFile(filepath.Join(runDir, FailuresName(sh)), schema, rec); err != nil {
		return 0, fmt.Errorf("write %s: %w", FailuresName(sh), err)
	}
	return len(rows), nil
}

// ReadFailures reads a failures table (failures.arrow, or a shard's).
func ReadFailures(path string) ([]Failure, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read failures: %w", err)
	}
	defer f.Close()
	r, err := ipc.NewFileReader(f)
	if err != nil {
		return nil, fmt.Errorf("read failures %s: %w", path, err)
	}
	defer r.Close()
	var out []Failure
	for i := 0; i < r.NumRecords(); i++ {
		b, err := r.RecordBatch(i)
		if err != nil {
			return nil, fmt.Errorf("read failures %s: %w", path, err)
		}
		rows, err := failureRows(b)
		if err != nil {
			return nil, fmt.Errorf("read failures %s: %w", path, err)
		}
		out = append(out, rows...)
	}
	return out, nil
}

// failureRows decodes one batch of the failures table.
func failureRows(b arrow.RecordBatch) ([]Failure, error) {
	if int(b.NumCols()) != len(failureFields) {
		return nil, fmt.Errorf("%d columns, want %d", b.NumCols(), len(failureFields))
	}
	cols := make([]*array.String, 4)
	for i := range cols {
		c, ok := b.Column(i).(*array.String)
		if !ok {
			return nil, fmt.Errorf("column %s is %s, want string", failureFields[i].Name, b.Column(i).DataType())
		}
		cols[i] = c
	}
	ts, ok := b.Column(4).(*array.Timestamp)
	if !ok {
		return nil, fmt.Errorf("column time is %s, want timestamp", b.Column(4).DataType())
	}
	out := make([]Failure, 0, b.NumRows())
	for i := 0; i < int(b.NumRows()); i++ {
		out = append(out, Failure{Stage: cols[0].Value(i), ItemID: cols[1].Value(i), ErrorClass: cols[2].Value(i),
			Message: cols[3].Value(i), Time: time.UnixMicro(int64(ts.Value(i))).UTC()})
	}
	return out, nil
}
