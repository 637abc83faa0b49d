package fetch

import (
	"context"
	"encoding/csv"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"connectome/internal/gcp"
	"connectome/internal/tables"
	"connectome/internal/testenv"
	"connectome/models"
	"connectome/stages/cohort"
)

// IDC's own series index (the PyPI package idc-index-data, pinned in
// testdata/idc-index/requirements.txt and unpacked by `make idc-index`) against what the
// cohort and fetch stages assume. It is the one real IDC metadata a machine without cloud
// credentials can read; docs/idc-index.md holds the figures this test prints.
const idcIndexEnv = "CONNECTOME_IDC_INDEX_DIR"

// indexSeries is one row of idc_index.parquet, the columns this test reads.
type indexSeries struct {
	collection, analysisResult, patient, series, modality, sopClass string
	description, transferSyntax, bucket, crdcSeries, awsURL         string
	instances                                                       int64
	sizeMB                                                          float64
}

func idcIndexDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(idcIndexEnv)
	if dir == "" {
		testenv.Missing(t, "%s is not set: `make idc-index` downloads IDC's series index", idcIndexEnv)
	}
	return dir
}

// readIDCIndex reads the NLST rows of idc_index.parquet.
func readIDCIndex(t *testing.T, path string) []indexSeries {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	pf, err := file.OpenParquetFile(path, false)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, mem)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"collection_id", "analysis_result_id", "PatientID", "SeriesInstanceUID", "Modality", "SOPClassUID",
		"SeriesDescription", "TransferSyntaxUID", "aws_bucket", "crdc_series_uuid", "series_aws_url", "instanceCount", "series_size_MB"}
	var cols []int
	for _, n := range names {
		c := pf.MetaData().Schema.ColumnIndexByName(n)
		if c < 0 {
			t.Fatalf("%s: column %s not found (the index's schema changed?)", path, n)
		}
		cols = append(cols, c)
	}
	tr, err := fr.GetRecordReader(context.Background(), cols, nil)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	defer tr.Release()
	var out []indexSeries
	for tr.Next() {
		rec := tr.RecordBatch()
		str := func(c int) array.StringLike { return rec.Column(c).(array.StringLike) }
		for i := range int(rec.NumRows()) {
			if str(0).Value(i) != "nlst" {
				continue
			}
			s := indexSeries{collection: "nlst"}
			for c, dst := range []*string{nil, &s.analysisResult, &s.patient, &s.series, &s.modality, &s.sopClass,
				&s.description, &s.transferSyntax, &s.bucket, &s.crdcSeries, &s.awsURL} {
				if dst != nil && rec.Column(c).IsValid(i) {
					*dst = str(c).Value(i)
				}
			}
			s.instances = rec.Column(11).(*array.Int64).Value(i)
			s.sizeMB = rec.Column(12).(*array.Float64).Value(i)
			out = append(out, s)
		}
	}
	if err := tr.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// publishedLesion is a row of the published export (../shared/reference).
type publishedLesion struct {
	patient, series string
	seed            [3]float64
}

func readPublishedLesions(t *testing.T) []publishedLesion {
	t.Helper()
	path := testenv.Shared(t, "reference", "nlst-sybil-embeddings", "lesions.csv")
	f, err := os.Open(path)
	if err != nil {
		testenv.Missing(t, "reference data missing: %v", err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil || len(recs) < 2 {
		t.Fatalf("read %s: %v", path, err)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	var out []publishedLesion
	for _, r := range recs[1:] {
		l := publishedLesion{patient: r[col["patient_id"]], series: r[col["series_instance_uid"]]}
		for a, h := range []string{"center_x_mm", "center_y_mm", "center_z_mm"} {
			if l.seed[a], err = strconv.ParseFloat(r[col[h]], 64); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
		}
		out = append(out, l)
	}
	return out
}

// TestIDCIndexMatchesAssumptions checks, on IDC's own index of the pinned release, that the
// cohort's default SR selection finds the NLST-Sybil SRs and only them, that every CT series
// of the published cohort is in IDC with the object layout the fetch stage reads
// (<bucket>/<crdc_series_uuid>/<crdc_instance_uuid>.dcm) and in a transfer syntax dicomio
// decodes, and estimates the real download of the published cohort with the fetch stage's
// own planner.
func TestIDCIndexMatchesAssumptions(t *testing.T) {
	dir := idcIndexDir(t)
	published := readPublishedLesions(t)
	nlst := readIDCIndex(t, filepath.Join(dir, "idc_index.parquet"))
	if len(nlst) == 0 {
		t.Fatal("no NLST series in the index")
	}

	t.Run("sr-selection", func(t *testing.T) {
		ids := cohort.DefaultSettings().AnalysisResultIDs
		srs, patients := 0, map[string]bool{}
		for _, s := range nlst {
			selected := slices.Contains(ids, s.analysisResult)
			sybilBox := s.modality == "SR" && s.description == "Sybil lesion bounding box"
			if selected != sybilBox {
				t.Fatalf("series %s (%s, %q, analysis_result_id %q): selected by %v is %v, a Sybil box SR is %v",
					s.series, s.modality, s.description, s.analysisResult, ids, selected, sybilBox)
			}
			if !selected {
				continue
			}
			if s.sopClass != "1.2.840.10008.5.1.4.1.1.88.34" { // Comprehensive 3D SR, what the SR walker reads
				t.Errorf("SR series %s has SOP class %s", s.series, s.sopClass)
			}
			srs++
			patients[s.patient] = true
		}
		// The counts IDC publishes for NLST-Sybil (analysis_results_index: 581 subjects).
		if srs != 970 || len(patients) != 581 {
			t.Errorf("%d SR series of %d patients selected, want 970 of 581", srs, len(patients))
		}
		t.Logf("analysis_result_id %v selects %d SR series of %d patients", ids, srs, len(patients))
	})

	bySeries := map[string]indexSeries{}
	for _, s := range nlst {
		bySeries[s.series] = s
	}
	t.Run("published-series", func(t *testing.T) {
		syntaxes := map[string]int{}
		patients := map[string]bool{}
		for _, l := range published {
			s, ok := bySeries[l.series]
			if !ok {
				t.Errorf("series %s of patient %s is not in the index", l.series, l.patient)
				continue
			}
			patients[l.patient] = true
			if s.patient != l.patient || s.modality != "CT" {
				t.Errorf("series %s: patient %s modality %s, want patient %s CT", l.series, s.patient, s.modality, l.patient)
			}
			// The fetch stage reads gcs_url and accepts only <bucket>/<series uuid>/<instance
			// uuid>.dcm; the index's own URL is the same layout in the bucket's S3 mirror.
			if !gcp.ValidUUID(s.crdcSeries) || s.awsURL != "s3://"+s.bucket+"/"+s.crdcSeries+"/*" {
				t.Errorf("series %s: crdc_series_uuid %q, series_aws_url %q: not <bucket>/<uuid>/*", l.series, s.crdcSeries, s.awsURL)
			}
			syntaxes[s.transferSyntax]++
		}
		for ts := range syntaxes {
			for _, one := range strings.Split(ts, ",") {
				if one != "1.2.840.10008.1.2" && one != "1.2.840.10008.1.2.1" {
					t.Errorf("published series in transfer syntax %s, which dicomio does not decode", one)
				}
			}
		}
		if len(patients) != 464 {
			t.Errorf("%d of the 464 published patients found", len(patients))
		}
		t.Logf("published cohort: %d lesion rows, %d patients, transfer syntaxes %v", len(published), len(patients), syntaxes)

		all := map[string]int{}
		for _, s := range nlst {
			if s.modality == "CT" {
				all[s.transferSyntax]++
			}
		}
		t.Logf("all NLST CT series by transfer syntax: %v", all)
	})

	t.Run("download-estimate", func(t *testing.T) {
		reg, err := models.Load("")
		if err != nil {
			t.Fatal(err)
		}
		specs, err := reg.Select(nil)
		if err != nil {
			t.Fatal(err)
		}
		crops := cropsOf(specs, nil)
		seeds := map[string][][3]float64{}
		for _, l := range published {
			seeds[l.series] = append(seeds[l.series], l.seed)
		}
		var uids []string
		for u := range seeds {
			uids = append(uids, u)
		}
		sort.Strings(uids)
		// The index holds no slice positions: each series is laid out as its real slice
		// count at an assumed spacing, centred on its lesions. NLST reconstructions are 1 to
		// 2.5 mm apart, and 160 slices (the median) span a chest only from about 2 mm.
		var wholeBytes float64
		var wholeSlices int64
		for _, u := range uids {
			wholeBytes += bySeries[u].sizeMB * 1e6
			wholeSlices += bySeries[u].instances
		}
		t.Logf("whole series: %d series, %d slices, %.1f GB", len(uids), wholeSlices, wholeBytes/1e9)
		for _, spacing := range []float64{1.0, 1.25, 2.0, 2.5} {
			var roiBytes float64
			var roiSlices int
			for _, u := range uids {
				s := bySeries[u]
				series := centredSeries(int(s.instances), spacing, seeds[u])
				need := map[string]bool{}
				for i, seed := range seeds[u] {
					sops, _, err := planSlices(PatchPlanner{}, series, tables.Lesion{LesionID: fmt.Sprint(u, "#", i), CenterMM: seed}, crops)
					if err != nil {
						t.Fatalf("series %s, lesion %d: %v", u, i, err)
					}
					for k := range sops {
						need[k] = true
					}
				}
				roiSlices += len(need)
				roiBytes += float64(len(need)) * s.sizeMB * 1e6 / float64(s.instances)
			}
			if roiBytes <= 0 || roiBytes >= wholeBytes {
				t.Errorf("spacing %.2f mm: ROI %.0f bytes against whole %.0f", spacing, roiBytes, wholeBytes)
			}
			t.Logf("assumed spacing %.2f mm: ROI-only fetch %d slices, %.1f GB (%.1f %% of the whole series)",
				spacing, roiSlices, roiBytes/1e9, 100*roiBytes/wholeBytes)
		}
	})
}

// centredSeries is n axial slices at spacing mm, 512² at 0.68 mm in plane, centred on the
// mean of seeds. Only the slice positions decide what is fetched: the in-plane placement
// just keeps the seeds inside.
func centredSeries(n int, spacing float64, seeds [][3]float64) []tables.Instance {
	var mean [3]float64
	for _, s := range seeds {
		for a := range mean {
			mean[a] += s[a] / float64(len(seeds))
		}
	}
	series := axialSeries(rand.New(rand.NewPCG(1, 2)), n, spacing, mean[2]-float64(n-1)*spacing/2, false)
	for i := range series {
		ipp := &series[i].ImagePositionPatient
		ipp[0] = mean[0] - 256*series[i].PixelSpacing[1]
		ipp[1] = mean[1] - 256*series[i].PixelSpacing[0]
	}
	return series
}
