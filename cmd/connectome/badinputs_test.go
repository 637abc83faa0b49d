package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"connectome/internal/arrowfile"
	"connectome/internal/dicomio/dicomsynth"
	"connectome/internal/tables"
	"connectome/internal/testenv"
)

// TestBadInputs runs the built binary on every case of testdata/bad-inputs (issue 20): each
// folder holds its inputs, case.txt (args, exit, message, optional ulimit) and a one-line
// README. The case folder is copied to a temp dir D first: $D in args is that copy, $RUN is
// $D/run. series.txt, when there, describes DICOM series written under $D/dicom (see
// writeSeriesSpec), embeddings.txt embeddings files written under $D (writeEmbeddingsSpec). The expected message is looked for in stderr and, when the run recorded
// item failures, in `connectome failures`. No case may write outside $D/run, nor leave a
// panic trace; cases marked ulimit run under a 4 GB address-space limit.
func TestBadInputs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "connectome")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	root := testenv.File(t, "testdata/bad-inputs")
	cases, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range cases {
		if !c.IsDir() {
			continue
		}
		n++
		t.Run(c.Name(), func(t *testing.T) { runBadInput(t, bin, filepath.Join(root, c.Name())) })
	}
	if n < 10 {
		t.Fatalf("only %d cases under %s", n, root)
	}
}

type badCase struct {
	args    []string
	exit    int
	message string
	ulimit  bool
}

func readBadCase(t *testing.T, dir string) badCase {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "case.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "README")); err != nil {
		t.Errorf("case without README: %v", err)
	}
	var c badCase
	c.exit = -1
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "args":
			c.args = strings.Fields(v)
		case "exit":
			c.exit, err = strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
		case "message":
			c.message = v
		case "ulimit":
			c.ulimit = v == "true"
		}
	}
	if len(c.args) == 0 || c.exit < 0 || c.message == "" {
		t.Fatalf("case.txt needs args, exit and message: %+v", c)
	}
	return c
}

func runBadInput(t *testing.T, bin, src string) {
	c := readBadCase(t, src)
	top := t.TempDir()
	d := filepath.Join(top, "case")
	if err := os.CopyFS(d, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	if err := writeSeriesSpec(d); err != nil {
		t.Fatal(err)
	}
	if err := writeEmbeddingsSpec(d); err != nil {
		t.Fatal(err)
	}
	before := listFiles(t, top)
	run := filepath.Join(d, "run")
	args := make([]string, len(c.args))
	for i, a := range c.args {
		args[i] = strings.NewReplacer("$RUN", run, "$D", d).Replace(a)
	}
	var cmd *exec.Cmd
	if c.ulimit {
		cmd = exec.Command("sh", append([]string{"-c", `ulimit -v 4000000; exec "$@"`, "sh", bin}, args...)...)
	} else {
		cmd = exec.Command(bin, args...)
	}
	cmd.Dir = top
	cmd.Env = append(os.Environ(), "GOOGLE_CLOUD_PROJECT=", "GOOGLE_APPLICATION_CREDENTIALS="+filepath.Join(top, "no-credentials.json"), "HOME="+top)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	err := cmd.Run()
	code := cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	out := stderr.String()
	if code == 3 {
		fo, _ := exec.Command(bin, "failures", "--run-dir", run).CombinedOutput()
		out += "\n" + string(fo)
	}
	if testing.Verbose() {
		t.Logf("exit %d; %s", code, lastLines(out, 3))
	}
	if code != c.exit || !strings.Contains(out, c.message) {
		t.Errorf("exit %d, want %d with %q:\n%s", code, c.exit, c.message, out)
	}
	if strings.Contains(out, "panic:") || strings.Contains(out, "goroutine ") {
		t.Errorf("panic:\n%s", out)
	}
	for p := range listFiles(t, top) {
		if !before[p] && !strings.HasPrefix(p, "case/run/") && p != "case/run" {
			t.Errorf("written outside the run directory: %s", p)
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// listFiles lists every path under dir, relative to it.
func listFiles(t *testing.T, dir string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// writeSeriesSpec writes the DICOM files that d/series.txt describes under d/dicom, one line
// per series: SUBDIR SERIES_UID [modality=MR] [truncate=K] [empty=K] [spacing=MM] [prefix=P: files named
// P-IM…, beside another series of SUBDIR], or
// SUBDIR nested=LEVELS for a crafted file of LEVELS nested undefined-length sequences.
// Binary inputs are generated rather than committed: they are large (the nested file) or
// synthetic anyway.
func writeSeriesSpec(d string) error {
	f, err := os.Open(filepath.Join(d, "series.txt"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		dir := filepath.Join(d, "dicom", fields[0])
		opt := map[string]string{}
		for _, kv := range fields[1:] {
			k, v, _ := strings.Cut(kv, "=")
			opt[k] = v
		}
		if lv, ok := opt["nested"]; ok {
			n, err := strconv.Atoi(lv)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, "nested.dcm"), nestedSequences(n), 0o644); err != nil {
				return err
			}
			continue
		}
		if err := writeSynthSeries(dir, fields[1], opt); err != nil {
			return err
		}
	}
	return sc.Err()
}

func writeSynthSeries(dir, uid string, opt map[string]string) error {
	ps := 0.8
	if v, ok := opt["spacing"]; ok {
		ps, _ = strconv.ParseFloat(v, 64)
	}
	s := dicomsynth.Series{Rows: 16, Columns: 16, Slices: 6, PixelSpacing: [2]float64{ps, ps}, SliceSpacing: 2.5,
		Origin: [3]float64{-10, -10, -50}, HU: func(i, j, k int) float64 { return float64(i + j + k) }, PatientID: "P" + uid, SeriesUID: uid}
	if m, ok := opt["modality"]; ok {
		s.Edit = func(_ int, e []*dicom.Element) []*dicom.Element {
			for i, x := range e {
				if x.Tag == tag.Modality {
					if el, err := dicom.NewElement(tag.Modality, []string{m}); err == nil {
						e[i] = el
					}
				}
			}
			return e
		}
	}
	out := dir
	if p, ok := opt["prefix"]; ok {
		out = filepath.Join(dir, ".tmp-"+p) // then moved beside the other series' files
	}
	files, err := s.Write(out)
	if err != nil {
		return err
	}
	if p, ok := opt["prefix"]; ok {
		for i, f := range files {
			files[i] = filepath.Join(dir, p+"-"+filepath.Base(f))
			if err := os.Rename(f, files[i]); err != nil {
				return err
			}
		}
		if err := os.Remove(out); err != nil {
			return err
		}
	}
	if k, ok := opt["truncate"]; ok {
		i, _ := strconv.Atoi(k)
		if err := os.Truncate(files[i], 300); err != nil {
			return err
		}
	}
	if k, ok := opt["empty"]; ok {
		i, _ := strconv.Atoi(k)
		if err := os.Truncate(files[i], 0); err != nil {
			return err
		}
	}
	return nil
}

// writeEmbeddingsSpec writes the Arrow IPC embeddings files that d/embeddings.txt describes
// under d, one line per row: FILE MODEL LESION_ID V1,V2,… (patient P<LESION_ID>). A line
// FILE alone makes a file with no rows; FILE float64 stores that file's values as float64
// (as other tools write them) rather than float32, so that a value beyond float32 stays finite
// in the file. Generated for the same reason as the DICOM series: binary and synthetic.
func writeEmbeddingsSpec(d string) error {
	b, err := os.ReadFile(filepath.Join(d, "embeddings.txt"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	type row struct {
		LesionID  string    `json:"lesion_id"`
		PatientID string    `json:"patient_id"`
		Model     string    `json:"model"`
		Vector    []float64 `json:"embedding"`
	}
	type spec struct {
		rows []row
		f64  bool
		dim  int
	}
	files := map[string]*spec{}
	var order []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		s := files[f[0]]
		if s == nil {
			s = &spec{dim: 1}
			files[f[0]] = s
			order = append(order, f[0])
		}
		switch {
		case len(f) == 2 && f[1] == "float64":
			s.f64 = true
		case len(f) == 4:
			r := row{LesionID: f[2], PatientID: "P" + f[2], Model: f[1]}
			for _, v := range strings.Split(f[3], ",") {
				x, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return fmt.Errorf("embeddings.txt: %q: %w", line, err)
				}
				r.Vector = append(r.Vector, x)
			}
			s.rows, s.dim = append(s.rows, r), len(r.Vector)
		case len(f) != 1:
			return fmt.Errorf("embeddings.txt: %q: want FILE MODEL LESION_ID VALUES, FILE float64 or FILE", line)
		}
	}
	for _, name := range order {
		s, path := files[name], filepath.Join(d, name)
		if !s.f64 {
			rows := make([]tables.Embedding, len(s.rows))
			for i, r := range s.rows {
				rows[i] = tables.Embedding{LesionID: r.LesionID, PatientID: r.PatientID, Model: r.Model, Vector: make([]float32, len(r.Vector))}
				for k, x := range r.Vector {
					rows[i].Vector[k] = float32(x)
				}
			}
			if err := tables.WriteEmbeddings(memory.DefaultAllocator, path, rows, s.dim, arrow.Metadata{}); err != nil {
				return err
			}
			continue
		}
		// The project's schema and IPC writer, with float64 values.
		fields := tables.EmbeddingsSchema(s.dim, arrow.Metadata{}).Fields()
		fields[3].Type = arrow.FixedSizeListOf(int32(s.dim), arrow.PrimitiveTypes.Float64)
		schema := arrow.NewSchema(fields, nil)
		js, err := json.Marshal(s.rows)
		if err != nil {
			return err
		}
		rec, _, err := array.RecordFromJSON(memory.DefaultAllocator, schema, bytes.NewReader(js))
		if err != nil {
			return fmt.Errorf("embeddings.txt: %s: %w", name, err)
		}
		err = arrowfile.WriteFile(path, schema, rec)
		rec.Release()
		if err != nil {
			return err
		}
	}
	return nil
}

// nestedSequences is a DICOM file (Explicit VR Little Endian) whose first element opens
// levels nested undefined-length sequences, each with one undefined-length item.
func nestedSequences(levels int) []byte {
	var b bytes.Buffer
	b.Write(make([]byte, 128))
	b.WriteString("DICM")
	var meta bytes.Buffer
	explicit := func(w *bytes.Buffer, g, e uint16, vr string, val []byte) {
		w.Write(binary.LittleEndian.AppendUint16(binary.LittleEndian.AppendUint16(nil, g), e))
		w.WriteString(vr)
		if vr == "OB" || vr == "SQ" {
			w.Write([]byte{0, 0})
			w.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(val))))
		} else {
			w.Write(binary.LittleEndian.AppendUint16(nil, uint16(len(val))))
		}
		w.Write(val)
	}
	explicit(&meta, 0x0002, 0x0001, "OB", []byte{0, 1})
	explicit(&meta, 0x0002, 0x0002, "UI", []byte("1.2.840.10008.5.1.4.1.1.2\x00"))
	explicit(&meta, 0x0002, 0x0010, "UI", []byte("1.2.840.10008.1.2.1\x00"))
	explicit(&b, 0x0002, 0x0000, "UL", binary.LittleEndian.AppendUint32(nil, uint32(meta.Len())))
	b.Write(meta.Bytes())
	sq := []byte{0x08, 0x00, 0x15, 0x11, 'S', 'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF} // (0008,1115)
	item := []byte{0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF}
	for range levels {
		b.Write(sq)
		b.Write(item)
	}
	return b.Bytes()
}
