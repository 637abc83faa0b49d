// Package onnx writes small ONNX models (ModelProto with raw-data initializers) without generated
// protobuf code, evaluates them with a plain Go reference interpreter, reads the input/output
// signature of any ONNX file, and builds the test and demo encoders used in place of the 9
// published models when those are not available.
//
// Field numbers are those of onnx/onnx.proto (proto2). Repeated scalars are written unpacked,
// as proto2 declares them; every parser accepts that.
package onnx

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"sort"

	"connectome/internal/atomicfile"

	"google.golang.org/protobuf/encoding/protowire"
)

// Element types (TensorProto.DataType).
const (
	Float32 int32 = 1
	Int64   int32 = 7
)

// Versions written by this package: opset 17 needs IR version 8.
const (
	Opset     = 17
	IRVersion = 8
)

// Tensor is an initializer (a constant of the graph).
type Tensor struct {
	Name  string
	Dims  []int64
	Float []float32 // for Float32 tensors
	Int   []int64   // for Int64 tensors (set exactly one of Float and Int)
}

func (t *Tensor) dtype() int32 {
	if t.Int != nil {
		return Int64
	}
	return Float32
}

// Attr is a node attribute. Exactly one value field is meaningful, chosen by Kind.
type Attr struct {
	Name  string
	Kind  AttrKind
	Int   int64
	Float float32
	Ints  []int64
	Str   string
}

// AttrKind is AttributeProto.AttributeType.
type AttrKind int32

// Attribute types used here.
const (
	AttrFloat  AttrKind = 1
	AttrInt    AttrKind = 2
	AttrString AttrKind = 3
	AttrInts   AttrKind = 7
)

// Int, Ints and Float build attributes.
func Int(name string, v int64) Attr     { return Attr{Name: name, Kind: AttrInt, Int: v} }
func Ints(name string, v ...int64) Attr { return Attr{Name: name, Kind: AttrInts, Ints: v} }
func Float(name string, v float32) Attr { return Attr{Name: name, Kind: AttrFloat, Float: v} }

// Node is one operator application.
type Node struct {
	Op      string
	Name    string
	Inputs  []string
	Outputs []string
	Attrs   []Attr
}

// Dim is one dimension of a declared shape: a fixed size, or a symbolic name when Param is set.
type Dim struct {
	Value int64
	Param string
}

// ValueInfo declares a graph input or output: a float32 tensor of the given shape.
type ValueInfo struct {
	Name string
	Elem int32 // element type; 0 means Float32
	Dims []Dim
}

// Graph is the computation: nodes in topological order.
type Graph struct {
	Name         string
	Nodes        []Node
	Initializers []Tensor
	Inputs       []ValueInfo
	Outputs      []ValueInfo
}

// Model is an ONNX model of the default domain at Opset.
type Model struct {
	Graph    Graph
	Producer string
	Doc      string
	Metadata map[string]string // metadata_props, written sorted by key
}

// Marshal encodes the model as ONNX protobuf bytes. The encoding is deterministic.
func (m *Model) Marshal() []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType) // ir_version
	b = protowire.AppendVarint(b, IRVersion)
	producer := m.Producer
	if producer == "" {
		producer = "connectome"
	}
	b = appendString(b, 2, producer) // producer_name
	if m.Doc != "" {
		b = appendString(b, 6, m.Doc) // doc_string
	}
	b = appendBytes(b, 7, m.Graph.marshal()) // graph
	var opset []byte
	opset = appendString(opset, 1, "") // domain: the default ONNX domain
	opset = protowire.AppendTag(opset, 2, protowire.VarintType)
	opset = protowire.AppendVarint(opset, Opset)
	b = appendBytes(b, 8, opset) // opset_import
	keys := make([]string, 0, len(m.Metadata))
	for k := range m.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var e []byte
		e = appendString(e, 1, k)
		e = appendString(e, 2, m.Metadata[k])
		b = appendBytes(b, 14, e) // metadata_props
	}
	return b
}

// WriteFile writes the model to path atomically.
func (m *Model) WriteFile(path string) error {
	data := m.Marshal()
	return atomicfile.Write(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

func (g *Graph) marshal() []byte {
	var b []byte
	for i := range g.Nodes {
		b = appendBytes(b, 1, g.Nodes[i].marshal()) // node
	}
	b = appendString(b, 2, g.Name) // name
	for i := range g.Initializers {
		b = appendBytes(b, 5, g.Initializers[i].marshal()) // initializer
	}
	for i := range g.Inputs {
		b = appendBytes(b, 11, g.Inputs[i].marshal()) // input
	}
	for i := range g.Outputs {
		b = appendBytes(b, 12, g.Outputs[i].marshal()) // output
	}
	return b
}

func (n *Node) marshal() []byte {
	var b []byte
	for _, in := range n.Inputs {
		b = appendString(b, 1, in)
	}
	for _, out := range n.Outputs {
		b = appendString(b, 2, out)
	}
	if n.Name != "" {
		b = appendString(b, 3, n.Name)
	}
	b = appendString(b, 4, n.Op)
	for _, a := range n.Attrs {
		b = appendBytes(b, 5, a.marshal())
	}
	return b
}

func (a *Attr) marshal() []byte {
	var b []byte
	b = appendString(b, 1, a.Name)
	switch a.Kind {
	case AttrFloat:
		b = protowire.AppendTag(b, 2, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(a.Float))
	case AttrInt:
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(a.Int))
	case AttrString:
		b = appendString(b, 4, a.Str)
	case AttrInts:
		for _, v := range a.Ints {
			b = protowire.AppendTag(b, 8, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(v))
		}
	}
	b = protowire.AppendTag(b, 20, protowire.VarintType) // type
	b = protowire.AppendVarint(b, uint64(a.Kind))
	return b
}

func (t *Tensor) marshal() []byte {
	var b []byte
	for _, d := range t.Dims {
		b = protowire.AppendTag(b, 1, protowire.VarintType) // dims
		b = protowire.AppendVarint(b, uint64(d))
	}
	b = protowire.AppendTag(b, 2, protowire.VarintType) // data_type
	b = protowire.AppendVarint(b, uint64(t.dtype()))
	b = appendString(b, 8, t.Name) // name
	var raw []byte
	if t.Int != nil {
		raw = make([]byte, 8*len(t.Int))
		for i, v := range t.Int {
			binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
		}
	} else {
		raw = make([]byte, 4*len(t.Float))
		for i, v := range t.Float {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
		}
	}
	b = appendBytes(b, 9, raw) // raw_data (little endian, as the spec requires)
	return b
}

func (v *ValueInfo) marshal() []byte {
	elem := v.Elem
	if elem == 0 {
		elem = Float32
	}
	var shape []byte
	for _, d := range v.Dims {
		var dim []byte
		if d.Param != "" {
			dim = appendString(dim, 2, d.Param) // dim_param
		} else {
			dim = protowire.AppendTag(dim, 1, protowire.VarintType) // dim_value
			dim = protowire.AppendVarint(dim, uint64(d.Value))
		}
		shape = appendBytes(shape, 1, dim)
	}
	var tensor []byte
	tensor = protowire.AppendTag(tensor, 1, protowire.VarintType) // elem_type
	tensor = protowire.AppendVarint(tensor, uint64(elem))
	tensor = appendBytes(tensor, 2, shape) // shape
	var typ []byte
	typ = appendBytes(typ, 1, tensor) // TypeProto.tensor_type
	var b []byte
	b = appendString(b, 1, v.Name)
	b = appendBytes(b, 2, typ)
	return b
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// Shape turns sizes into fixed dims; a size of 0 or less becomes the symbolic dim "N".
func Shape(sizes ...int64) []Dim {
	out := make([]Dim, len(sizes))
	for i, s := range sizes {
		if s <= 0 {
			out[i] = Dim{Param: "N"}
		} else {
			out[i] = Dim{Value: s}
		}
	}
	return out
}

// String formats dims like (N, 1, 48, 48, 48).
func (v ValueInfo) String() string {
	s := v.Name + " ("
	for i, d := range v.Dims {
		if i > 0 {
			s += ", "
		}
		if d.Param != "" {
			s += d.Param
		} else {
			s += fmt.Sprint(d.Value)
		}
	}
	return s + ")"
}
