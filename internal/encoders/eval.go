package encoders

import (
	"connectome/models/onnx"

	"fmt"
	"math"
)

// Products are wrapped in explicit float64 conversions throughout: that forbids the compiler
// to fuse multiply-adds (Go spec, "Arithmetic operators"), so the demo encoders, whose
// constants come from this interpreter, have the same bytes on every architecture.

// Array is a dense float32 tensor in C order, the value type of the reference interpreter.
type Array struct {
	Shape []int
	Data  []float32
}

// NewArray allocates a zero array.
func NewArray(shape ...int) *Array {
	n := 1
	for _, s := range shape {
		n *= s
	}
	return &Array{Shape: append([]int(nil), shape...), Data: make([]float32, n)}
}

// Eval runs the graph on the given inputs with a direct Go implementation of each operator and
// returns every graph output by name. It is the reference the ONNX Runtime results are checked
// against in tests: plain loops with float64 accumulation, written from the ONNX operator
// definitions, no shared code with any runtime. It supports the operators this package writes
// (3-D Conv/pooling, InstanceNormalization, Relu, Flatten, MatMul, Add, Mul, Concat,
// LpNormalization, ReduceL2, Div) for float32 tensors.
func Eval(g *onnx.Graph, inputs map[string]*Array) (map[string]*Array, error) {
	vals := map[string]*Array{}
	for _, t := range g.Initializers {
		if t.Int != nil {
			continue
		}
		a := &Array{Data: t.Float}
		for _, d := range t.Dims {
			a.Shape = append(a.Shape, int(d))
		}
		vals[t.Name] = a
	}
	for _, in := range g.Inputs {
		a, ok := inputs[in.Name]
		if !ok {
			return nil, fmt.Errorf("input %q not given", in.Name)
		}
		vals[in.Name] = a
	}
	for i := range g.Nodes {
		n := &g.Nodes[i]
		args := make([]*Array, len(n.Inputs))
		for k, name := range n.Inputs {
			if name == "" {
				continue
			}
			a, ok := vals[name]
			if !ok {
				return nil, fmt.Errorf("node %s (%s): input %q undefined", n.Name, n.Op, name)
			}
			args[k] = a
		}
		out, err := evalNode(n, args)
		if err != nil {
			return nil, fmt.Errorf("node %s (%s): %w", n.Name, n.Op, err)
		}
		vals[n.Outputs[0]] = out
	}
	res := map[string]*Array{}
	for _, o := range g.Outputs {
		a, ok := vals[o.Name]
		if !ok {
			return nil, fmt.Errorf("output %q not computed", o.Name)
		}
		res[o.Name] = a
	}
	return res, nil
}

// evalNode applies one operator to its arguments.
func evalNode(n *onnx.Node, args []*Array) (*Array, error) {
	switch n.Op {
	case "Conv":
		return evalConv(n, args)
	case "InstanceNormalization":
		return evalInstanceNorm(n, args), nil
	case "Relu":
		return relu(args[0]), nil
	case "MaxPool", "AveragePool":
		return evalPool(n, args)
	case "GlobalAveragePool", "GlobalMaxPool":
		return globalPool(args[0], n.Op == "GlobalMaxPool"), nil
	case "Flatten":
		return evalFlatten(n, args)
	case "MatMul":
		return matmul(args[0], args[1])
	case "Add", "Mul", "Div":
		return broadcast(n.Op, args[0], args[1])
	case "Concat":
		return evalConcat(n, args)
	case "LpNormalization":
		return evalLpNorm(n, args)
	case "ReduceL2":
		return evalReduceL2(n, args)
	}
	return nil, fmt.Errorf("operator %s is not implemented by the reference", n.Op)
}

// ints returns the node's integer-list attribute name, or def when it is absent.
func ints(n *onnx.Node, name string, def ...int64) []int64 {
	if a, ok := attr(n, name); ok {
		return a.Ints
	}
	return def
}

func evalConv(n *onnx.Node, args []*Array) (*Array, error) {
	var bias *Array
	if len(args) > 2 {
		bias = args[2]
	}
	if g, ok := attr(n, "group"); ok && g.Int != 1 {
		return nil, fmt.Errorf("group %d unsupported", g.Int)
	}
	return conv3d(args[0], args[1], bias, ints(n, "strides", 1, 1, 1), ints(n, "pads", 0, 0, 0, 0, 0, 0))
}

func evalInstanceNorm(n *onnx.Node, args []*Array) *Array {
	eps := float32(1e-5)
	if a, ok := attr(n, "epsilon"); ok {
		eps = a.Float
	}
	return instanceNorm(args[0], args[1], args[2], float64(eps))
}

func relu(x *Array) *Array {
	out := NewArray(x.Shape...)
	for i, v := range x.Data {
		if v > 0 {
			out.Data[i] = v
		}
	}
	return out
}

func evalPool(n *onnx.Node, args []*Array) (*Array, error) {
	k := ints(n, "kernel_shape")
	s := ints(n, "strides", 1, 1, 1)
	if p := ints(n, "pads", 0, 0, 0, 0, 0, 0); p[0]|p[1]|p[2]|p[3]|p[4]|p[5] != 0 {
		return nil, fmt.Errorf("padded pooling unsupported")
	}
	return pool3d(args[0], k, s, n.Op == "MaxPool")
}

func evalFlatten(n *onnx.Node, args []*Array) (*Array, error) {
	if a, ok := attr(n, "axis"); ok && a.Int != 1 {
		return nil, fmt.Errorf("axis %d unsupported", a.Int)
	}
	x := args[0]
	return &Array{Shape: []int{x.Shape[0], len(x.Data) / x.Shape[0]}, Data: x.Data}, nil
}

func evalConcat(n *onnx.Node, args []*Array) (*Array, error) {
	if a, ok := attr(n, "axis"); !ok || a.Int != 1 {
		return nil, fmt.Errorf("only axis 1 supported")
	}
	return concat1(args)
}

func evalLpNorm(n *onnx.Node, args []*Array) (*Array, error) {
	if a, ok := attr(n, "p"); ok && a.Int != 2 {
		return nil, fmt.Errorf("p %d unsupported", a.Int)
	}
	return l2rows(args[0], false), nil
}

// evalReduceL2 supports the last axis with keepdims: y = ||x|| per row.
func evalReduceL2(n *onnx.Node, args []*Array) (*Array, error) {
	if a := ints(n, "axes"); len(a) != 1 || (a[0] != -1 && int(a[0]) != len(args[0].Shape)-1) {
		return nil, fmt.Errorf("ReduceL2 only over the last axis")
	}
	if a, ok := attr(n, "keepdims"); ok && a.Int != 1 {
		return nil, fmt.Errorf("ReduceL2 keepdims=0 unsupported")
	}
	return l2rows(args[0], true), nil
}

func conv3d(x, w, b *Array, strides, pads []int64) (*Array, error) {
	if len(x.Shape) != 5 || len(w.Shape) != 5 || w.Shape[1] != x.Shape[1] {
		return nil, fmt.Errorf("conv shapes %v * %v", x.Shape, w.Shape)
	}
	N, C, D, H, W := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3], x.Shape[4]
	M, kd, kh, kw := w.Shape[0], w.Shape[2], w.Shape[3], w.Shape[4]
	sd, sh, sw := int(strides[0]), int(strides[1]), int(strides[2])
	pd, ph, pw := int(pads[0]), int(pads[1]), int(pads[2])
	od := (D+pd+int(pads[3])-kd)/sd + 1
	oh := (H+ph+int(pads[4])-kh)/sh + 1
	ow := (W+pw+int(pads[5])-kw)/sw + 1
	out := NewArray(N, M, od, oh, ow)
	for n := 0; n < N; n++ {
		for m := 0; m < M; m++ {
			var bias float64
			if b != nil {
				bias = float64(b.Data[m])
			}
			for z := 0; z < od; z++ {
				for y := 0; y < oh; y++ {
					for xx := 0; xx < ow; xx++ {
						acc := bias
						for c := 0; c < C; c++ {
							for i := 0; i < kd; i++ {
								iz := z*sd - pd + i
								if iz < 0 || iz >= D {
									continue
								}
								for j := 0; j < kh; j++ {
									iy := y*sh - ph + j
									if iy < 0 || iy >= H {
										continue
									}
									xrow := (((n*C+c)*D+iz)*H + iy) * W
									wrow := (((m*C+c)*kd+i)*kh + j) * kw
									for k := 0; k < kw; k++ {
										ix := xx*sw - pw + k
										if ix < 0 || ix >= W {
											continue
										}
										acc += float64(float64(x.Data[xrow+ix]) * float64(w.Data[wrow+k]))
									}
								}
							}
						}
						out.Data[(((n*M+m)*od+z)*oh+y)*ow+xx] = float32(acc)
					}
				}
			}
		}
	}
	return out, nil
}

func instanceNorm(x, scale, bias *Array, eps float64) *Array {
	N, C := x.Shape[0], x.Shape[1]
	sp := len(x.Data) / (N * C)
	out := NewArray(x.Shape...)
	for n := 0; n < N; n++ {
		for c := 0; c < C; c++ {
			seg := x.Data[(n*C+c)*sp : (n*C+c+1)*sp]
			var mean float64
			for _, v := range seg {
				mean += float64(v)
			}
			mean /= float64(sp)
			var vr float64
			for _, v := range seg {
				d := float64(v) - mean
				vr += float64(d * d)
			}
			vr /= float64(sp)
			inv := 1 / math.Sqrt(vr+eps)
			dst := out.Data[(n*C+c)*sp : (n*C+c+1)*sp]
			for i, v := range seg {
				dst[i] = float32(float64((float64(v)-mean)*inv*float64(scale.Data[c])) + float64(bias.Data[c]))
			}
		}
	}
	return out
}

func pool3d(x *Array, k, s []int64, max bool) (*Array, error) {
	N, C, D, H, W := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3], x.Shape[4]
	kd, kh, kw := int(k[0]), int(k[1]), int(k[2])
	sd, sh, sw := int(s[0]), int(s[1]), int(s[2])
	od, oh, ow := (D-kd)/sd+1, (H-kh)/sh+1, (W-kw)/sw+1
	if od <= 0 || oh <= 0 || ow <= 0 {
		return nil, fmt.Errorf("pool kernel %v larger than input %v", k, x.Shape)
	}
	out := NewArray(N, C, od, oh, ow)
	for nc := 0; nc < N*C; nc++ {
		base := nc * D * H * W
		for z := 0; z < od; z++ {
			for y := 0; y < oh; y++ {
				for xx := 0; xx < ow; xx++ {
					acc := math.Inf(-1)
					if !max {
						acc = 0
					}
					for i := 0; i < kd; i++ {
						for j := 0; j < kh; j++ {
							for l := 0; l < kw; l++ {
								v := float64(x.Data[base+((z*sd+i)*H+y*sh+j)*W+xx*sw+l])
								if max {
									acc = math.Max(acc, v)
								} else {
									acc += v
								}
							}
						}
					}
					if !max {
						acc /= float64(kd * kh * kw)
					}
					out.Data[((nc*od+z)*oh+y)*ow+xx] = float32(acc)
				}
			}
		}
	}
	return out, nil
}

func globalPool(x *Array, max bool) *Array {
	N, C := x.Shape[0], x.Shape[1]
	sp := len(x.Data) / (N * C)
	shape := append([]int{N, C}, make([]int, len(x.Shape)-2)...)
	for i := 2; i < len(shape); i++ {
		shape[i] = 1
	}
	out := NewArray(shape...)
	for nc := 0; nc < N*C; nc++ {
		seg := x.Data[nc*sp : (nc+1)*sp]
		acc := math.Inf(-1)
		if !max {
			acc = 0
		}
		for _, v := range seg {
			if max {
				acc = math.Max(acc, float64(v))
			} else {
				acc += float64(v)
			}
		}
		if !max {
			acc /= float64(sp)
		}
		out.Data[nc] = float32(acc)
	}
	return out
}

func matmul(a, b *Array) (*Array, error) {
	if len(a.Shape) != 2 || len(b.Shape) != 2 || a.Shape[1] != b.Shape[0] {
		return nil, fmt.Errorf("matmul shapes %v x %v", a.Shape, b.Shape)
	}
	n, k, m := a.Shape[0], a.Shape[1], b.Shape[1]
	out := NewArray(n, m)
	for i := 0; i < n; i++ {
		for j := 0; j < m; j++ {
			var acc float64
			for l := 0; l < k; l++ {
				acc += float64(float64(a.Data[i*k+l]) * float64(b.Data[l*m+j]))
			}
			out.Data[i*m+j] = float32(acc)
		}
	}
	return out, nil
}

// broadcast applies op with b broadcast over a's trailing axes (b's shape is a suffix of a's,
// or b is a scalar, or b has a's shape with ones: [N,1] against [N,D]).
func broadcast(op string, a, b *Array) (*Array, error) {
	out := NewArray(a.Shape...)
	idx := func(i int) (int, error) {
		switch {
		case len(b.Data) == 1:
			return 0, nil
		case len(b.Data) == len(a.Data):
			return i, nil
		case len(a.Data)%len(b.Data) == 0 && b.Shape[len(b.Shape)-1] == a.Shape[len(a.Shape)-1]:
			return i % len(b.Data), nil // trailing suffix, e.g. [D] over [N,D]
		case len(b.Shape) == len(a.Shape) && b.Shape[len(b.Shape)-1] == 1:
			return i / a.Shape[len(a.Shape)-1], nil // [N,1] over [N,D]
		}
		return 0, fmt.Errorf("cannot broadcast %v to %v", b.Shape, a.Shape)
	}
	for i, v := range a.Data {
		j, err := idx(i)
		if err != nil {
			return nil, err
		}
		w := b.Data[j]
		switch op {
		case "Add":
			out.Data[i] = v + w
		case "Mul":
			out.Data[i] = v * w
		case "Div":
			out.Data[i] = v / w
		}
	}
	return out, nil
}

func concat1(args []*Array) (*Array, error) {
	N := args[0].Shape[0]
	total := 0
	rest := args[0].Shape[2:]
	for _, a := range args {
		if a.Shape[0] != N {
			return nil, fmt.Errorf("concat batch %d vs %d", a.Shape[0], N)
		}
		total += a.Shape[1]
	}
	out := NewArray(append([]int{N, total}, rest...)...)
	sp := 1
	for _, r := range rest {
		sp *= r
	}
	off := 0
	for n := 0; n < N; n++ {
		for _, a := range args {
			seg := a.Data[n*a.Shape[1]*sp : (n+1)*a.Shape[1]*sp]
			copy(out.Data[off:], seg)
			off += len(seg)
		}
	}
	return out, nil
}

// l2rows normalises (or, with norm, reduces to the L2 norm of) each row over the last axis.
func l2rows(x *Array, norm bool) *Array {
	d := x.Shape[len(x.Shape)-1]
	rows := len(x.Data) / d
	var out *Array
	if norm {
		shape := append([]int(nil), x.Shape...)
		shape[len(shape)-1] = 1
		out = NewArray(shape...)
	} else {
		out = NewArray(x.Shape...)
	}
	for r := 0; r < rows; r++ {
		seg := x.Data[r*d : (r+1)*d]
		var ss float64
		for _, v := range seg {
			ss += float64(float64(v) * float64(v))
		}
		l := math.Sqrt(ss)
		if norm {
			out.Data[r] = float32(l)
			continue
		}
		for i, v := range seg {
			if l > 0 {
				out.Data[r*d+i] = float32(float64(v) / l)
			} else {
				out.Data[r*d+i] = v
			}
		}
	}
	return out
}

// attr finds the attribute name of node n.
func attr(n *onnx.Node, name string) (onnx.Attr, bool) {
	for _, a := range n.Attrs {
		if a.Name == name {
			return a, true
		}
	}
	return onnx.Attr{}, false
}
