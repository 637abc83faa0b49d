package encoders

import (
	"connectome/models/onnx"

	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"connectome/models"
)

// Tensor names of the encoders built here (and of the published exports).
const (
	InputName  = "input"
	OutputName = "embedding"
)

// builder accumulates a graph with generated value names and seeded random weights.
type builder struct {
	g   onnx.Graph
	n   int
	rng *rand.Rand
}

func newBuilder(name string, seed int64) *builder {
	return &builder{g: onnx.Graph{Name: name}, rng: rand.New(rand.NewPCG(uint64(seed), 0x636f6e6e6563746f))}
}

func (b *builder) init(prefix string, data []float32, dims ...int64) string {
	b.n++
	name := fmt.Sprintf("%s_%d", prefix, b.n)
	b.g.Initializers = append(b.g.Initializers, onnx.Tensor{Name: name, Dims: dims, Float: data})
	return name
}

func (b *builder) op(op string, inputs []string, attrs ...onnx.Attr) string {
	b.n++
	out := fmt.Sprintf("%s_%d", strings.ToLower(op), b.n)
	b.g.Nodes = append(b.g.Nodes, onnx.Node{Op: op, Name: fmt.Sprintf("n%d_%s", b.n, op), Inputs: inputs, Outputs: []string{out}, Attrs: attrs})
	return out
}

// gauss returns n normal samples with the given standard deviation.
func (b *builder) gauss(n int, std float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(b.rng.NormFloat64() * std)
	}
	return out
}

// conv adds a 3-D convolution with He-initialised random weights (k³, stride 1).
func (b *builder) conv(x string, cin, cout, k int, pad bool) string {
	std := math.Sqrt(2 / float64(cin*k*k*k))
	w := b.init("conv_w", b.gauss(cout*cin*k*k*k, std), int64(cout), int64(cin), int64(k), int64(k), int64(k))
	bias := b.init("conv_b", b.gauss(cout, 0.01), int64(cout))
	p := int64(0)
	if pad {
		p = int64(k / 2)
	}
	return b.op("Conv", []string{x, w, bias}, onnx.Ints("kernel_shape", int64(k), int64(k), int64(k)),
		onnx.Ints("pads", p, p, p, p, p, p), onnx.Ints("strides", 1, 1, 1))
}

func (b *builder) instanceNorm(x string, c int, scale float32) string {
	s := make([]float32, c)
	bias := make([]float32, c)
	for i := range s {
		s[i] = scale * (1 + float32(b.rng.NormFloat64()*0.1))
		bias[i] = float32(b.rng.NormFloat64() * 0.1 * float64(scale))
	}
	return b.op("InstanceNormalization", []string{x, b.init("in_scale", s, int64(c)), b.init("in_bias", bias, int64(c))},
		onnx.Float("epsilon", 1e-5))
}

func (b *builder) pool(op, x string, k int) string {
	kk := int64(k)
	return b.op(op, []string{x}, onnx.Ints("kernel_shape", kk, kk, kk), onnx.Ints("strides", kk, kk, kk))
}

func (b *builder) model(in [5]int64, out string, dim int, doc string) *onnx.Model {
	b.g.Inputs = []onnx.ValueInfo{{Name: InputName, Dims: onnx.Shape(in[:]...)}}
	b.g.Outputs = []onnx.ValueInfo{{Name: OutputName, Dims: onnx.Shape(in[0], int64(dim))}}
	// The output must carry the declared name: rename the last node's output.
	last := &b.g.Nodes[len(b.g.Nodes)-1]
	if last.Outputs[0] != out {
		panic("onnx builder: output is not the last node")
	}
	last.Outputs[0] = OutputName
	return &onnx.Model{Graph: b.g, Doc: doc}
}

// TestEncoder is a small random-weight 3-D CNN for tests: Conv → InstanceNorm → Relu → MaxPool
// → Conv → Relu → AveragePool → GlobalAveragePool → Flatten → MatMul → Add → L2 normalisation.
// inputShape is (N, 1, D, H, W) with N ≤ 0 for a symbolic batch; D, H, W must be multiples of 4.
func TestEncoder(name string, inputShape [5]int64, dim int, seed int64) *onnx.Model {
	b := newBuilder(name, seed)
	h := b.conv(InputName, 1, 4, 3, true)
	h = b.instanceNorm(h, 4, 1)
	h = b.op("Relu", []string{h})
	h = b.pool("MaxPool", h, 2)
	h = b.conv(h, 4, 8, 3, true)
	h = b.op("Relu", []string{h})
	h = b.pool("AveragePool", h, 2)
	h = b.op("GlobalAveragePool", []string{h})
	h = b.op("Flatten", []string{h}, onnx.Int("axis", 1))
	h = b.op("MatMul", []string{h, b.init("fc_w", b.gauss(8*dim, 1/math.Sqrt(8)), 8, int64(dim))})
	h = b.op("Add", []string{h, b.init("fc_b", b.gauss(dim, 0.1), int64(dim))})
	h = b.op("LpNormalization", []string{h}, onnx.Int("axis", -1), onnx.Int("p", 2))
	return b.model(inputShape, h, dim, "test encoder "+name+" (random weights; not a published model)")
}

// Thresholds of the demo encoder's density channels, in units of the [0, 1] intensity scale
// of the published 48³ models (HU −1024..2048): about −650 HU (ground glass and denser),
// −350 HU and −100 HU (solid tissue).
var demoThresholds = []float32{0.12, 0.22, 0.30}

// demoBackground is the intensity of aerated lung (about −850 HU) on that scale; features are
// centred on those of a uniform lung patch so that cosine compares departures from lung.
const demoBackground = 0.06

// DemoEncoder is the encoder of the offline demo: a deterministic 3-D CNN whose first layer is
// a bank of fixed filters (intensity, density thresholds, ±Laplacian, ±gradients along each axis)
// plus a few random ones, followed by multi-scale pooled statistics (global mean, global max, and
// the max of local means over 4³, 8³ and 16³ blocks, which respond to a lesion's density and
// size), a random Conv → InstanceNorm → Relu branch, centring on a plain-lung patch, a fixed
// random projection to dim (orthonormal when dim ≥ the feature count, so cosines are kept) and
// L2 normalisation. It is not a published model and must not be named as one.
// inputShape is (N, 1, D, H, W) with N ≤ 0 for a symbolic batch; the spatial sizes must be ≥ 18.
func DemoEncoder(name string, inputShape [5]int64, dim int, seed int64) (*onnx.Model, error) {
	for _, s := range inputShape[2:] {
		if s < 18 {
			return nil, fmt.Errorf("demo encoder %s: spatial size %d < 18", name, s)
		}
	}
	b := newBuilder(name, seed)
	const nRand = 4
	fixed := demoFilters()
	c1 := len(fixed) + nRand
	w := make([]float32, 0, c1*27)
	bias := make([]float32, 0, c1)
	for _, f := range fixed {
		w = append(w, f.w[:]...)
		bias = append(bias, f.bias)
	}
	for i := 0; i < nRand; i++ {
		r := b.gauss(27, 1/math.Sqrt(27))
		var mean float32
		for _, v := range r {
			mean += v / 27
		}
		for j := range r {
			r[j] -= mean // zero-mean: a texture detector, not another intensity channel
		}
		w = append(w, r...)
		bias = append(bias, 0)
	}
	h1 := b.op("Conv", []string{InputName, b.init("bank_w", w, int64(c1), 1, 3, 3, 3), b.init("bank_b", bias, int64(c1))},
		onnx.Ints("kernel_shape", 3, 3, 3), onnx.Ints("pads", 0, 0, 0, 0, 0, 0), onnx.Ints("strides", 1, 1, 1))
	h1 = b.op("Relu", []string{h1})
	flat := func(x string) string { return b.op("Flatten", []string{x}, onnx.Int("axis", 1)) }
	feats := []string{
		flat(b.op("GlobalAveragePool", []string{h1})),
		flat(b.op("GlobalMaxPool", []string{h1})),
	}
	minSide := inputShape[2] - 2
	for _, s := range inputShape[3:] {
		minSide = min(minSide, s-2)
	}
	var p4 string
	for _, s := range []int{4, 8, 16} {
		if int64(s) > minSide {
			break
		}
		p := b.pool("AveragePool", h1, s)
		if s == 4 {
			p4 = p
		}
		feats = append(feats, flat(b.op("GlobalMaxPool", []string{p})))
	}
	h2 := b.conv(p4, c1, 16, 3, true)
	h2 = b.instanceNorm(h2, 16, 0.25)
	h2 = b.op("Relu", []string{h2})
	feats = append(feats, flat(b.op("GlobalAveragePool", []string{h2})))
	f := b.op("Concat", feats, onnx.Int("axis", 1))
	nf := c1*(len(feats)-1) + 16

	// Centre on the features of a uniform lung patch, computed with the reference interpreter.
	probe := b.g
	probe.Inputs = []onnx.ValueInfo{{Name: InputName}}
	probe.Outputs = []onnx.ValueInfo{{Name: f}}
	bg := NewArray(1, 1, int(inputShape[2]), int(inputShape[3]), int(inputShape[4]))
	for i := range bg.Data {
		bg.Data[i] = demoBackground
	}
	res, err := Eval(&probe, map[string]*Array{InputName: bg})
	if err != nil {
		return nil, fmt.Errorf("demo encoder %s: background features: %w", name, err)
	}
	centre := make([]float32, nf)
	for i, v := range res[f].Data {
		centre[i] = -v
	}
	f = b.op("Add", []string{f, b.init("centre", centre, int64(nf))})
	proj := b.projection(nf, dim)
	f = b.op("MatMul", []string{f, b.init("proj", proj, int64(nf), int64(dim))})
	f = b.op("LpNormalization", []string{f}, onnx.Int("axis", -1), onnx.Int("p", 2))
	return b.model(inputShape, f, dim, "demo encoder "+name+" (fixed filters and random weights; not a published model)"), nil
}

type filter struct {
	w    [27]float32
	bias float32
}

// demoFilters is the fixed 3×3×3 filter bank (index (z*3+y)*3+x; centre 13).
func demoFilters() []filter {
	var out []filter
	at := func(dz, dy, dx int) int { return ((dz+1)*3+dy+1)*3 + dx + 1 }
	id := filter{}
	id.w[13] = 1
	out = append(out, id)
	for _, t := range demoThresholds {
		f := id
		f.bias = -t
		out = append(out, f)
	}
	var lap filter
	lap.w[13] = 6
	for _, d := range [][3]int{{1, 0, 0}, {-1, 0, 0}, {0, 1, 0}, {0, -1, 0}, {0, 0, 1}, {0, 0, -1}} {
		lap.w[at(d[0], d[1], d[2])] = -1
	}
	for _, s := range []float32{2, -2} {
		f := filter{}
		for i, v := range lap.w {
			f.w[i] = s * v
		}
		out = append(out, f)
	}
	for _, d := range [][3]int{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}} {
		for _, s := range []float32{2, -2} {
			f := filter{}
			f.w[at(d[0], d[1], d[2])] = s
			f.w[at(-d[0], -d[1], -d[2])] = -s
			out = append(out, f)
		}
	}
	return out
}

// projection is an nf×dim matrix: rows orthonormal when dim ≥ nf (cosines are preserved
// exactly), else Gaussian scaled by 1/√dim (Johnson–Lindenstrauss).
func (b *builder) projection(nf, dim int) []float32 {
	m := make([][]float64, nf)
	for i := range m {
		m[i] = make([]float64, dim)
		for j := range m[i] {
			m[i][j] = b.rng.NormFloat64()
		}
	}
	if dim >= nf { // Gram–Schmidt on the rows
		for i := range m {
			for k := 0; k < i; k++ {
				var dot float64
				for j := range m[i] {
					dot += float64(m[i][j] * m[k][j])
				}
				for j := range m[i] {
					m[i][j] -= float64(dot * m[k][j])
				}
			}
			var ss float64
			for _, v := range m[i] {
				ss += float64(v * v)
			}
			for j := range m[i] {
				m[i][j] /= math.Sqrt(ss)
			}
		}
	} else {
		for i := range m {
			for j := range m[i] {
				m[i][j] /= math.Sqrt(float64(dim))
			}
		}
	}
	out := make([]float32, 0, nf*dim)
	for i := range m {
		for _, v := range m[i] {
			out = append(out, float32(v))
		}
	}
	return out
}

// Seed derives an encoder's weight seed from its name, so the same name always gives the
// same bytes.
func Seed(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return int64(h.Sum64() >> 1)
}

// DemoModelFor builds the demo (or test) encoder that a models-file entry describes: names
// starting "demo-" get DemoEncoder, "test-" TestEncoder. Any other name is refused, so that a
// stand-in can never pose as one of the published models.
func DemoModelFor(s *models.Spec) (*onnx.Model, error) {
	if s.Input != InputName || s.Output != OutputName {
		return nil, fmt.Errorf("model %s: demo encoders use input %q and output %q, the models file says %q and %q",
			s.Name, InputName, OutputName, s.Input, s.Output)
	}
	shape := s.InputShape(0)
	in := [5]int64{0, shape[1], shape[2], shape[3], shape[4]}
	switch {
	case strings.HasPrefix(s.Name, "demo-"):
		m, err := DemoEncoder(s.Name, in, s.EmbeddingDim, Seed(s.Name))
		if err != nil {
			return nil, err
		}
		return m, nil
	case strings.HasPrefix(s.Name, "test-"):
		return TestEncoder(s.Name, in, s.EmbeddingDim, Seed(s.Name)), nil
	}
	return nil, fmt.Errorf("model %s: only models named demo-* or test-* can be generated; the published models come from scripts/export_models.py", s.Name)
}

// WriteDemoModels writes the ONNX file of every model in reg (all must be demo-* or test-*) to
// dir/<onnx>, skipping files already present with the right content. When the models file
// records a sha256, the generated bytes must match it (the builders are deterministic), so a
// changed builder cannot silently change the demo. It returns the paths written or kept.
func WriteDemoModels(dir string, reg *models.Registry) ([]string, error) {
	var paths []string
	for i := range reg.Models {
		s := &reg.Models[i]
		m, err := DemoModelFor(s)
		if err != nil {
			return paths, err
		}
		data := m.Marshal()
		sum := sha256.Sum256(data)
		got := hex.EncodeToString(sum[:])
		if s.SHA256 != "" && !strings.EqualFold(s.SHA256, got) {
			return paths, fmt.Errorf("model %s: generated ONNX has sha256 %s but %s records %s (update the models file if the builder changed on purpose)",
				s.Name, got, reg.Path, s.SHA256)
		}
		path := filepath.Join(dir, s.ONNX)
		if old, err := os.ReadFile(path); err == nil && sha256.Sum256(old) == sum {
			paths = append(paths, path)
			continue
		}
		if err := m.WriteFile(path); err != nil {
			return paths, fmt.Errorf("write demo model %s: %w", s.Name, err)
		}
		paths = append(paths, path)
	}
	return paths, nil
}
