package report

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
)

// ringOfCliques is a graph of c cliques of size s joined in a ring by one edge each.
func ringOfCliques(c, s int) (int, [][2]int32) {
	var edges [][2]int32
	for k := range c {
		for i := range s {
			for j := i + 1; j < s; j++ {
				edges = append(edges, [2]int32{int32(k*s + i), int32(k*s + j)})
			}
		}
		edges = append(edges, [2]int32{int32(k * s), int32(((k + 1) % c) * s)})
	}
	return c * s, edges
}

func TestForceLayoutDeterministic(t *testing.T) {
	n, edges := ringOfCliques(8, 6)
	a := forceLayout(n, edges, nil, defaultLayoutOptions(n))
	b := forceLayout(n, edges, nil, defaultLayoutOptions(n))
	if !slices.Equal(a, b) {
		t.Fatal("same seed, different layouts")
	}
	opt := defaultLayoutOptions(n)
	opt.Seed = 2
	if c := forceLayout(n, edges, nil, opt); slices.Equal(a, c) {
		t.Error("different seeds gave the same layout")
	}
	for _, v := range a {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Fatal("non-finite coordinate")
		}
	}
}

// TestForceLayoutClusters checks what a force layout is for: nodes of one clique end up
// much closer to each other than to the other cliques.
func TestForceLayoutClusters(t *testing.T) {
	const c, s = 10, 8
	n, edges := ringOfCliques(c, s)
	pos := forceLayout(n, edges, nil, defaultLayoutOptions(n))
	dist := func(i, j int) float64 { return math.Hypot(pos[2*i]-pos[2*j], pos[2*i+1]-pos[2*j+1]) }
	var in, out float64
	var nin, nout int
	for i := range n {
		for j := i + 1; j < n; j++ {
			if i/s == j/s {
				in += dist(i, j)
				nin++
			} else {
				out += dist(i, j)
				nout++
			}
		}
	}
	in, out = in/float64(nin), out/float64(nout)
	if in*3 > out {
		t.Errorf("mean distance within cliques %.2f, between %.2f: want ≥ 3× apart", in, out)
	}
}

// TestForceLayoutCoincident: points that start on top of each other are pushed apart and
// the tree survives them (no infinite split).
func TestForceLayoutCoincident(t *testing.T) {
	n := 50
	init := make([]float64, 2*n) // all at the origin
	pos := forceLayout(n, nil, init, defaultLayoutOptions(n))
	q := quantize(pos)
	seen := map[[2]int32]bool{}
	for i := range n {
		seen[[2]int32{q[2*i], q[2*i+1]}] = true
	}
	if len(seen) < n*9/10 {
		t.Errorf("only %d distinct positions of %d", len(seen), n)
	}
}

func TestQuantize(t *testing.T) {
	q := quantize([]float64{10, 10, 12, 10, 10, 14})
	for _, v := range q {
		if v < -1000 || v > 1000 {
			t.Fatalf("out of range: %v", q)
		}
	}
	if slices.Max(q) != 1000 && slices.Min(q) != -1000 {
		t.Errorf("not scaled to the full range: %v", q)
	}
}

func BenchmarkForceLayout(b *testing.B) {
	for _, n := range []int{289, 5000} {
		rng := rand.New(rand.NewPCG(1, 2))
		var edges [][2]int32
		for i := range n {
			for range 5 {
				edges = append(edges, [2]int32{int32(i), int32(rng.IntN(n))})
			}
		}
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for b.Loop() {
				forceLayout(n, edges, nil, defaultLayoutOptions(n))
			}
		})
	}
}
