package report

import (
	"math"
	"math/rand/v2"
)

// Force-directed layout (Fruchterman & Reingold 1991) with Barnes-Hut repulsion (θ = 1.2, as ForceAtlas2 uses)
// and a weak pull to the centre so that components stay in view. It runs once per view in
// Go, deterministically (seeded, single-threaded per layout), so the page draws fixed
// positions and the browser never simulates thousands of nodes.

// layoutOptions tune forceLayout; the zero value is not useful, use defaultLayoutOptions.
type layoutOptions struct {
	Iterations int
	Seed       uint64
	// StartTemp is the first step limit as a fraction of the layout's width (≈ √n).
	StartTemp float64
	Gravity   float64
	Theta     float64
}

func defaultLayoutOptions(n int) layoutOptions {
	it := 300
	if n > 2000 {
		it = 150
	}
	return layoutOptions{Iterations: it, Seed: 1, StartTemp: 0.1, Gravity: 0.02, Theta: 1.2}
}

// forceLayout places n nodes joined by edges (pairs of node indices; direction ignored,
// duplicates pull twice). init, when not nil, holds 2n starting coordinates. It returns 2n
// coordinates (x0, y0, x1, y1, ...).
func forceLayout(n int, edges [][2]int32, init []float64, opt layoutOptions) []float64 {
	pos := make([]float64, 2*n)
	if n == 0 {
		return pos
	}
	width := math.Sqrt(float64(n)) // with k = 1 the ideal area is n
	if init != nil {
		copy(pos, init)
	} else {
		rng := rand.New(rand.NewPCG(opt.Seed, 0x5eed))
		for i := range n {
			// Uniform on a disc of the target size.
			r := width / 2 * math.Sqrt(rng.Float64())
			a := 2 * math.Pi * rng.Float64()
			pos[2*i], pos[2*i+1] = r*math.Cos(a), r*math.Sin(a)
		}
	}
	disp := make([]float64, 2*n)
	var qt quadTree
	t0 := opt.StartTemp * width
	for it := 0; it < opt.Iterations; it++ {
		clear(disp)
		qt.build(pos)
		for i := range n {
			fx, fy := qt.repulse(i, pos[2*i], pos[2*i+1], opt.Theta)
			// Gravity grows with distance from the centre.
			fx -= opt.Gravity * pos[2*i]
			fy -= opt.Gravity * pos[2*i+1]
			disp[2*i] += fx
			disp[2*i+1] += fy
		}
		for _, e := range edges {
			a, b := int(e[0]), int(e[1])
			if a == b {
				continue
			}
			dx, dy := pos[2*a]-pos[2*b], pos[2*a+1]-pos[2*b+1]
			d := math.Hypot(dx, dy)
			// Attraction d²/k along the edge: (dx/d)·d² = dx·d.
			fx, fy := dx*d, dy*d
			disp[2*a] -= fx
			disp[2*a+1] -= fy
			disp[2*b] += fx
			disp[2*b+1] += fy
		}
		// Linear cooling to a small floor keeps late iterations refining, not shaking.
		t := t0 * (1 - float64(it)/float64(opt.Iterations))
		t = max(t, t0*0.005)
		for i := range n {
			dx, dy := disp[2*i], disp[2*i+1]
			d := math.Hypot(dx, dy)
			if d > t {
				dx, dy = dx/d*t, dy/d*t
			}
			pos[2*i] += dx
			pos[2*i+1] += dy
		}
	}
	return pos
}

// quadTree is a Barnes-Hut tree over points, rebuilt every iteration. Cells live in one
// slice; child index 0 means "none" (cell 0 is the root and never a child).
type quadTree struct {
	cells []qtCell
	pos   []float64
}

type qtCell struct {
	cx, cy, half float64 // square: centre and half side
	mx, my, mass float64 // centre of mass (sums until finish) and point count
	child        [4]int32
	body         int32 // the single point of a leaf, or -1
	leaf         bool
}

const qtMaxDepth = 40

func (q *quadTree) build(pos []float64) {
	q.pos = pos
	q.cells = q.cells[:0]
	n := len(pos) / 2
	minX, minY, maxX, maxY := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for i := range n {
		minX, maxX = min(minX, pos[2*i]), max(maxX, pos[2*i])
		minY, maxY = min(minY, pos[2*i+1]), max(maxY, pos[2*i+1])
	}
	half := max(maxX-minX, maxY-minY)/2 + 1e-9
	q.cells = append(q.cells, qtCell{cx: (minX + maxX) / 2, cy: (minY + maxY) / 2, half: half, body: -1, leaf: true})
	for i := range n {
		q.insert(0, int32(i), 0)
	}
	for c := range q.cells {
		if m := q.cells[c].mass; m > 0 {
			q.cells[c].mx /= m
			q.cells[c].my /= m
		}
	}
}

func (q *quadTree) insert(c int, i int32, depth int) {
	x, y := q.pos[2*i], q.pos[2*i+1]
	for {
		cell := &q.cells[c]
		if cell.leaf && cell.mass == 0 {
			cell.mx, cell.my, cell.mass, cell.body = x, y, 1, i
			return
		}
		if cell.leaf {
			if depth >= qtMaxDepth {
				// Coincident points share one leaf; its aggregate acts for all of them.
				cell.mx += x
				cell.my += y
				cell.mass++
				cell.body = -1
				return
			}
			// Split: the old body moves to a child; its sums stay counted in this cell.
			old := cell.body
			cell.leaf, cell.body = false, -1
			ox, oy := q.pos[2*old], q.pos[2*old+1]
			k := q.childFor(c, ox, oy)
			q.cells[k].mx, q.cells[k].my, q.cells[k].mass, q.cells[k].body = ox, oy, 1, old
		}
		q.cells[c].mx += x
		q.cells[c].my += y
		q.cells[c].mass++
		c = q.childFor(c, x, y)
		depth++
	}
}

// childFor returns (creating it if needed) the child of c whose quadrant holds (x, y).
func (q *quadTree) childFor(c int, x, y float64) int {
	cell := q.cells[c]
	k := 0
	if x >= cell.cx {
		k |= 1
	}
	if y >= cell.cy {
		k |= 2
	}
	if ch := cell.child[k]; ch != 0 {
		return int(ch)
	}
	h := cell.half / 2
	nx, ny := cell.cx-h, cell.cy-h
	if k&1 != 0 {
		nx = cell.cx + h
	}
	if k&2 != 0 {
		ny = cell.cy + h
	}
	q.cells = append(q.cells, qtCell{cx: nx, cy: ny, half: h, body: -1, leaf: true})
	id := len(q.cells) - 1
	q.cells[c].child[k] = int32(id)
	return id
}

// repulse sums the repulsive force k²/d (k = 1) on point i at (x, y).
func (q *quadTree) repulse(i int, x, y, theta float64) (fx, fy float64) {
	var stack [4 * qtMaxDepth * 2]int32
	sp := 0
	stack[sp] = 0
	sp++
	for sp > 0 {
		sp--
		cell := &q.cells[stack[sp]]
		if cell.mass == 0 || (cell.leaf && cell.body == int32(i)) {
			continue
		}
		dx, dy := x-cell.mx, y-cell.my
		d2 := dx*dx + dy*dy
		if cell.leaf || (2*cell.half)*(2*cell.half) < theta*theta*d2 {
			if d2 < 1e-12 {
				// Coincident: push apart along a fixed direction per point pair.
				a := float64(i) * 2.399963 // golden angle keeps directions distinct
				dx, dy, d2 = math.Cos(a)*1e-3, math.Sin(a)*1e-3, 1e-6
			}
			m := cell.mass
			if cell.leaf && cell.body < 0 && m > 1 {
				m-- // a coincident leaf may contain i itself
			}
			// Force magnitude m/d along (dx, dy)/d.
			fx += dx * m / d2
			fy += dy * m / d2
			continue
		}
		for _, ch := range cell.child {
			if ch != 0 {
				stack[sp] = ch
				sp++
			}
		}
	}
	return fx, fy
}
