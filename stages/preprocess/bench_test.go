package preprocess_test

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectome/internal/dicomio"
	"connectome/internal/dicomio/dicomsynth"
	"connectome/internal/patch"
	"connectome/internal/testenv"
	"connectome/models"
	"connectome/stages/preprocess"
)

// Benchmark geometry: a 512×512×300 chest CT at 0.703125 mm × 1.25 mm.
var benchSeries = dicomsynth.Series{
	Rows: 512, Columns: 512, Slices: 300, PixelSpacing: [2]float64{0.703125, 0.703125}, SliceSpacing: 1.25,
	Origin: [3]float64{-180, -180, -400}, Signed: true, Intercept: 0, HU: chestHU,
}

// chestHU is a cheap chest-like phantom: soft-tissue body ellipse, two lungs with texture,
// air outside, a few nodules.
func chestHU(i, j, k int) float64 {
	x, y := float64(i-256)/230, float64(j-256)/170
	if x*x+y*y > 1 {
		return -1000
	}
	h := uint32(i*73856093 ^ j*19349663 ^ k*83492791)
	noise := float64(h%41) - 20
	for _, c := range [2]float64{-0.45, 0.45} {
		lx, ly := (x-c)/0.33, y/0.75
		if lx*lx+ly*ly < 1 {
			nx, ny, nz := float64(i%64-32), float64(j%64-32), float64(k%48-24)*1.8
			if nx*nx+ny*ny+nz*nz < 60 {
				return 30 + noise
			}
			return -840 + noise
		}
	}
	return 40 + noise
}

// benchSeeds are lesion centres inside the lungs (LPS mm), deterministic.
func benchSeeds(n int) [][3]float64 {
	r := rand.New(rand.NewPCG(42, 4))
	var out [][3]float64
	for len(out) < n {
		i, j, k := r.IntN(512), r.IntN(512), 20+r.IntN(260)
		x, y := float64(i-256)/230, float64(j-256)/170
		lx, ly := (math.Abs(x)-0.45)/0.33, y/0.75
		if lx*lx+ly*ly > 0.8 {
			continue
		}
		out = append(out, [3]float64{-180 + float64(i)*0.703125, -180 + float64(j)*0.703125, -400 + float64(k)*1.25})
	}
	return out
}

func benchSpecs(tb testing.TB) []*models.Spec {
	reg, err := models.Load(testenv.File(tb, "configs", "models.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	specs, err := reg.Select(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return specs
}

// BenchmarkExtractInMemory is one lesion, all 9 configurations plus the QC patch, once the
// slices the crops need are in memory (no DICOM I/O): the ≥20 lesions/s/core target.
func BenchmarkExtractInMemory(b *testing.B) {
	specs := benchSpecs(b)
	g := patch.Geometry{Size: [3]int{512, 512, 300}, Spacing: [3]float64{0.703125, 0.703125, 1.25},
		Origin: [3]float64{-180, -180, -400}, Direction: [3][3]float64{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}}
	var preps []models.Preprocess
	for _, s := range specs {
		preps = append(preps, s.Preprocess)
	}
	seeds := benchSeeds(16)
	type job struct {
		pr  *patch.Planner
		vol *patch.Volume
	}
	var jobs []job
	for _, seed := range seeds {
		pr, err := patch.NewPlanner(g, seed, preps)
		if err != nil {
			b.Fatal(err)
		}
		lo, hi, _ := pr.InputBox()
		vol := patch.NewVolume(g.Size, lo, [3]int{hi[0] - lo[0] + 1, hi[1] - lo[1] + 1, hi[2] - lo[2] + 1})
		for k := 0; k < vol.Dim[2]; k++ {
			for j := 0; j < vol.Dim[1]; j++ {
				for i := 0; i < vol.Dim[0]; i++ {
					vol.Set(i, j, k, float32(chestHU(lo[0]+i, lo[1]+j, lo[2]+k)))
				}
			}
		}
		jobs = append(jobs, job{pr, vol})
	}
	var voxels int64
	b.ResetTimer()
	c0 := cpuTime()
	for i := 0; i < b.N; i++ {
		jb := jobs[i%len(jobs)]
		_, st, err := jb.pr.Extract(jb.vol)
		if err != nil {
			b.Fatal(err)
		}
		voxels += st.VoxelsSampled
	}
	b.ReportMetric(float64(voxels)/float64(b.N), "voxels/lesion")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lesions/s")
	b.ReportMetric(float64(b.N)/(cpuTime()-c0).Seconds(), "lesions/cpu-s")
}

// cpuTime is the process's user+system CPU time so far: on a shared machine, per-core
// throughput is work per CPU second, not per wall second.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// vmHWM is the process's peak resident memory in bytes (Linux), 0 if unknown.
func vmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			if v, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				return v << 10
			}
		}
	}
	return 0
}

// TestBenchDriver is the Go side of scripts/bench/preprocess.py, run as its own process:
// PREPROCESS_BENCH=gen|seeds|crop|whole, PREPROCESS_BENCH_DIR=series directory,
// PREPROCESS_BENCH_LESIONS=n. It prints one JSON line prefixed with "BENCH ".
func TestBenchDriver(t *testing.T) {
	mode := os.Getenv("PREPROCESS_BENCH")
	if mode == "" {
		t.Skip("benchmark driver (scripts/bench/preprocess.py)")
	}
	dir := os.Getenv("PREPROCESS_BENCH_DIR")
	n, _ := strconv.Atoi(os.Getenv("PREPROCESS_BENCH_LESIONS"))
	if n <= 0 {
		n = 20
	}
	out := map[string]any{"mode": mode}
	emit := func() {
		out["peak_rss_bytes"] = vmHWM()
		b, _ := json.Marshal(out)
		fmt.Println("BENCH " + string(b))
	}
	switch mode {
	case "gen":
		if _, err := benchSeries.Write(dir); err != nil {
			t.Fatal(err)
		}
		emit()
		return
	case "seeds":
		out["seeds"] = benchSeeds(n)
		emit()
		return
	}
	specs := benchSpecs(t)
	seeds := benchSeeds(n)
	t0 := time.Now()
	ser, headerBytes, err := dicomio.ReadSeriesDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out["header_pass_s"] = time.Since(t0).Seconds()
	out["header_bytes"] = headerBytes
	var seriesBytes int64
	for _, s := range ser.Slices {
		if fi, err := os.Stat(s.Path); err == nil {
			seriesBytes += fi.Size()
		}
	}
	out["series_bytes"] = seriesBytes
	var preps []models.Preprocess
	for _, s := range specs {
		preps = append(preps, s.Preprocess)
	}
	switch mode {
	case "crop":
		var files, bytes, voxels, allocMax int64
		var disk time.Duration
		var ms runtime.MemStats
		for _, seed := range seeds {
			runtime.ReadMemStats(&ms)
			a0 := ms.TotalAlloc
			t1 := time.Now()
			res, err := preprocess.Extract(ser, seed, specs)
			if err != nil {
				t.Fatal(err)
			}
			disk += time.Since(t1)
			runtime.ReadMemStats(&ms)
			allocMax = max(allocMax, int64(ms.TotalAlloc-a0))
			files += int64(res.Load.Files)
			bytes += res.Load.Bytes
			voxels += res.Stats.VoxelsSampled
		}
		// in memory: the union box of each lesion loaded first, then all 9 (+QC) on one core
		runtime.GOMAXPROCS(1)
		type job struct {
			pr  *patch.Planner
			vol *patch.Volume
		}
		var jobs []job
		for _, seed := range seeds {
			pr, err := patch.NewPlanner(ser.Geometry, seed, append(preps, preprocess.QCCrop()))
			if err != nil {
				t.Fatal(err)
			}
			lo, hi, _ := pr.InputBox()
			vol, _, err := ser.LoadBox(lo, hi)
			if err != nil {
				t.Fatal(err)
			}
			jobs = append(jobs, job{pr, vol})
		}
		reps := 3
		t2 := time.Now()
		c2 := cpuTime()
		for r := 0; r < reps; r++ {
			for _, jb := range jobs {
				if _, _, err := jb.pr.Extract(jb.vol); err != nil {
					t.Fatal(err)
				}
			}
		}
		mem := time.Since(t2)
		memCPU := cpuTime() - c2
		L := float64(len(seeds))
		out["lesions"] = len(seeds)
		out["files_per_lesion"] = float64(files) / L
		out["bytes_per_lesion"] = float64(bytes) / L
		out["voxels_per_lesion"] = float64(voxels) / L
		out["s_per_lesion_from_disk"] = disk.Seconds() / L
		out["alloc_bytes_per_lesion_max"] = allocMax
		out["lesions_per_s_in_memory_wall"] = float64(reps) * L / mem.Seconds()
		out["lesions_per_cpu_s_in_memory"] = float64(reps) * L / memCPU.Seconds()
	case "whole":
		g := ser.Geometry
		t1 := time.Now()
		full, ls, err := ser.LoadBox([3]int{}, [3]int{g.Size[0] - 1, g.Size[1] - 1, g.Size[2] - 1})
		if err != nil {
			t.Fatal(err)
		}
		load := time.Since(t1)
		seed := seeds[0]
		pr, err := patch.NewPlanner(g, seed, preps)
		if err != nil {
			t.Fatal(err)
		}
		t2 := time.Now()
		c2 := cpuTime()
		var voxels int64
		done := map[[3]float64]*patch.Sampled{}
		for _, pl := range pr.Plans {
			s, ok := done[pl.Prep.Pixdim]
			if !ok {
				if s, err = patch.SamplePerVoxel(pl.Grid, full, [3]int{}, pl.Grid.M); err != nil {
					t.Fatal(err)
				}
				done[pl.Prep.Pixdim] = s
				voxels += int64(len(s.Data))
			}
			if _, err := pl.Finish(s); err != nil {
				t.Fatal(err)
			}
		}
		out["lesions"] = 1
		out["files_per_lesion"] = ls.Files
		out["bytes_per_lesion"] = ls.Bytes
		out["voxels_per_lesion"] = voxels
		out["s_load"] = load.Seconds()
		out["s_resample_per_lesion"] = time.Since(t2).Seconds()
		out["s_per_lesion_from_disk"] = load.Seconds() + time.Since(t2).Seconds()
		out["cpu_s_resample_per_lesion"] = (cpuTime() - c2).Seconds()
	default:
		t.Fatalf("PREPROCESS_BENCH=%q: want gen, crop or whole", mode)
	}
	emit()
}
