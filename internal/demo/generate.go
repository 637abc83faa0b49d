// Package demo generates the offline demo's synthetic NLST-like cohort, deterministically
// from a seed: per patient a low-dose chest CT series written as real DICOM files (lung-field
// phantom with one or two tumours of known kind), an NLST-Sybil-style DICOM SR with one
// bounding box per annotated slice, and NLST clinical rows (nlst_prsn, nlst_ctab). What the
// pipeline may see (the DICOM objects and the clinical rows) is kept apart from the ground
// truth (each tumour's generating kind), which only tests read.
package demo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"connectome/internal/atomicfile"

	"golang.org/x/sync/errgroup"
)

// Version changes whenever the generator's output for the same options changes; a cache
// made by another version is regenerated.
const Version = "3"

// DefaultPatients is the size of the default demo cohort; DefaultSeed its seed.
const (
	DefaultPatients = 60
	DefaultSeed     = 20240601
)

// Bucket is the bucket name the objects are served from, as IDC's.
const Bucket = "idc-open-data"

// File names inside a cohort directory.
const (
	ManifestFile = "manifest.json" // written last: its presence means the cohort is complete
	ClinicalFile = "clinical.json"
	TruthFile    = "truth.json" // ground truth: never given to the pipeline
	ObjectsDir   = "objects"    // objects/<crdc_series_uuid>/<crdc_instance_uuid>.dcm
)

// Options choose the cohort. The same Seed and Patients give the same bytes.
type Options struct {
	Seed     int64
	Patients int
	// Workers is the number of patients generated at once (0: the number of CPUs); it does
	// not change the output.
	Workers int
	// Progress, when set, is called (serially) as slices are written, with the number of
	// files done and the total.
	Progress func(done, total int)
}

func (o Options) withDefaults() Options {
	if o.Seed == 0 {
		o.Seed = DefaultSeed
	}
	if o.Patients <= 0 {
		o.Patients = DefaultPatients
	}
	if o.Workers <= 0 {
		o.Workers = runtime.NumCPU()
	}
	return o
}

// Manifest lists a generated cohort's DICOM objects.
type Manifest struct {
	Generator string   `json:"generator"`
	Seed      int64    `json:"seed"`
	Patients  int      `json:"patients"`
	Bucket    string   `json:"bucket"`
	Objects   []Object `json:"objects"`
	// Dir is the cohort directory the manifest was read from (not stored).
	Dir string `json:"-"`
}

// Object is one DICOM file of the cohort, stored at Dir/objects/<Key> and served from
// gs://<bucket>/<Key> (IDC's layout: <crdc_series_uuid>/<crdc_instance_uuid>.dcm).
type Object struct {
	Key               string `json:"key"`
	Size              int64  `json:"size"`
	SHA256            string `json:"sha256"`
	Modality          string `json:"modality"` // CT or SR
	PatientID         string `json:"patient_id"`
	StudyInstanceUID  string `json:"study_instance_uid"`
	SeriesInstanceUID string `json:"series_instance_uid"`
	SOPInstanceUID    string `json:"sop_instance_uid"`
	CRDCStudyUUID     string `json:"crdc_study_uuid"`
	CRDCSeriesUUID    string `json:"crdc_series_uuid"`
	CRDCInstanceUUID  string `json:"crdc_instance_uuid"`
}

// Path is where the object's file is.
func (m *Manifest) Path(o Object) string {
	return filepath.Join(m.Dir, ObjectsDir, filepath.FromSlash(o.Key))
}

// GCSURL is the object's gs:// URL.
func (m *Manifest) GCSURL(o Object) string { return "gs://" + m.Bucket + "/" + o.Key }

// Generate writes the cohort to dir, or returns the one already there when it is complete
// and was made with the same generator version, seed and size.
func Generate(ctx context.Context, dir string, o Options) (*Manifest, error) {
	o = o.withDefaults()
	if m, err := Open(dir); err == nil && m.Seed == o.Seed && m.Patients == o.Patients {
		return m, nil
	}
	// Whatever is there is incomplete or another cohort: start over (only our own files).
	_ = os.Remove(filepath.Join(dir, ManifestFile))
	if err := os.RemoveAll(filepath.Join(dir, ObjectsDir)); err != nil {
		return nil, fmt.Errorf("clear %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}

	patients, err := plan(o)
	if err != nil {
		return nil, err
	}
	total := 0
	for _, p := range patients {
		total += len(p.CT.Instances) + 1
	}
	var mu sync.Mutex
	done := 0
	tick := func() {
		if o.Progress == nil {
			return
		}
		mu.Lock()
		done++
		o.Progress(done, total)
		mu.Unlock()
	}

	objects := make([][]Object, len(patients))
	truths := make([][]Tumour, len(patients))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Workers)
	for i, p := range patients {
		g.Go(func() error {
			objs, tr, err := p.generate(gctx, o.Seed, dir, tick)
			if err != nil {
				return fmt.Errorf("patient %s: %w", p.PatientID, err)
			}
			objects[i], truths[i] = objs, tr
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	m := &Manifest{Generator: Version, Seed: o.Seed, Patients: o.Patients, Bucket: Bucket, Dir: dir}
	var truth []Tumour
	for i := range patients {
		m.Objects = append(m.Objects, objects[i]...)
		truth = append(truth, truths[i]...)
	}
	if err := writeJSON(filepath.Join(dir, TruthFile), truth); err != nil {
		return nil, err
	}
	if err := writeJSON(filepath.Join(dir, ClinicalFile), clinicalRows(patients)); err != nil {
		return nil, err
	}
	// The manifest goes last: its presence marks the cohort complete.
	if err := writeJSON(filepath.Join(dir, ManifestFile), m); err != nil {
		return nil, err
	}
	return m, nil
}

// generate writes one patient's CT slices and SR and returns their objects and the ground truth.
func (p *patient) generate(ctx context.Context, seed int64, dir string, tick func()) ([]Object, []Tumour, error) {
	s := &p.CT
	hu := make([]int16, s.Rows*s.Cols)
	var buf bytes.Buffer
	var objects []Object
	var boxes []srBox
	for k := range s.Instances {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		for _, b := range p.renderSlice(k, hu) {
			boxes = append(boxes, srBox{Slice: k, Box: b})
		}
		buf.Reset()
		if err := p.writeCTSlice(&buf, k, hu); err != nil {
			return nil, nil, fmt.Errorf("write CT slice %d: %w", k, err)
		}
		in := &s.Instances[k]
		o, err := p.store(dir, &buf, "CT", s.UID, in.SOPUID, s.CRDCSeries, in.CRDCInstance)
		if err != nil {
			return nil, nil, err
		}
		objects = append(objects, o)
		tick()
	}
	boxes = p.numberBoxes(seed, boxes)
	buf.Reset()
	if err := p.writeSR(&buf, boxes); err != nil {
		return nil, nil, fmt.Errorf("write SR: %w", err)
	}
	o, err := p.store(dir, &buf, "SR", p.SR.SeriesUID, p.SR.SOPUID, p.SR.CRDCSeries, p.SR.CRDCInstance)
	if err != nil {
		return nil, nil, err
	}
	objects = append(objects, o)
	tick()
	return objects, p.truth(boxes), nil
}

func (p *patient) store(dir string, buf *bytes.Buffer, modality, series, sop, crdcSeries, crdcInstance string) (Object, error) {
	key := crdcSeries + "/" + crdcInstance + ".dcm"
	path := filepath.Join(dir, ObjectsDir, crdcSeries, crdcInstance+".dcm")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return Object{}, err
	}
	if err := atomicfile.WriteBytes(path, buf.Bytes()); err != nil {
		return Object{}, fmt.Errorf("write %s: %w", key, err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return Object{
		Key: key, Size: int64(buf.Len()), SHA256: hex.EncodeToString(sum[:]), Modality: modality,
		PatientID: p.PatientID, StudyInstanceUID: p.StudyUID, SeriesInstanceUID: series, SOPInstanceUID: sop,
		CRDCStudyUUID: p.CRDCStudy, CRDCSeriesUUID: crdcSeries, CRDCInstanceUUID: crdcInstance,
	}, nil
}

// Open reads the manifest of a complete cohort in dir and checks that every object file is
// there with its recorded size (Verify also checks the content).
func Open(dir string) (*Manifest, error) {
	var m Manifest
	if err := readJSON(filepath.Join(dir, ManifestFile), &m); err != nil {
		return nil, err
	}
	m.Dir = dir
	if m.Generator != Version {
		return nil, fmt.Errorf("%s: made by generator version %q, this is %q", dir, m.Generator, Version)
	}
	for _, f := range []string{ClinicalFile, TruthFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return nil, fmt.Errorf("incomplete cohort: %w", err)
		}
	}
	for _, o := range m.Objects {
		st, err := os.Stat(m.Path(o))
		if err != nil {
			return nil, fmt.Errorf("incomplete cohort: %w", err)
		}
		if st.Size() != o.Size {
			return nil, fmt.Errorf("incomplete cohort: %s has %d bytes, want %d", o.Key, st.Size(), o.Size)
		}
	}
	return &m, nil
}

// Verify checks every object's SHA-256 against the manifest.
func (m *Manifest) Verify() error {
	for _, o := range m.Objects {
		b, err := os.ReadFile(m.Path(o))
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != o.SHA256 {
			return fmt.Errorf("object %s: sha256 differs from the manifest", o.Key)
		}
	}
	return nil
}

// Clinical reads the cohort's clinical rows.
func (m *Manifest) Clinical() (*Clinical, error) {
	var c Clinical
	return &c, readJSON(filepath.Join(m.Dir, ClinicalFile), &c)
}

// Truth reads the cohort's ground truth. Only tests and the demo's own summary use it; the
// pipeline never sees it.
func (m *Manifest) Truth() ([]Tumour, error) {
	var t []Tumour
	return t, readJSON(filepath.Join(m.Dir, TruthFile), &t)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	if err := atomicfile.WriteBytes(path, append(b, '\n')); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no cohort at %s: %w", filepath.Dir(path), err)
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}
