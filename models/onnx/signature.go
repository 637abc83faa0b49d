package onnx

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"google.golang.org/protobuf/encoding/protowire"
)

// Signature is the declared inputs and outputs of a model's graph (initializers that older
// exporters also list as inputs are left out).
type Signature struct {
	Inputs  []ValueInfo
	Outputs []ValueInfo
}

// Input returns the named input.
func (s *Signature) Input(name string) (ValueInfo, bool) { return find(s.Inputs, name) }

// Output returns the named output.
func (s *Signature) Output(name string) (ValueInfo, bool) { return find(s.Outputs, name) }

func find(vs []ValueInfo, name string) (ValueInfo, bool) {
	for _, v := range vs {
		if v.Name == name {
			return v, true
		}
	}
	return ValueInfo{}, false
}

// ReadSignatureFile reads the signature of the ONNX file at path. It streams the file and skips
// the weights, so a multi-gigabyte model costs a sequential read, not its size in memory.
func ReadSignatureFile(path string) (*Signature, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sig, err := ReadSignature(f)
	if err != nil {
		return nil, fmt.Errorf("read onnx signature of %s: %w", path, err)
	}
	return sig, nil
}

// ReadSignature reads a ModelProto from r and returns its graph's signature.
func ReadSignature(r io.Reader) (*Signature, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	var sig *Signature
	err := eachField(br, func(num protowire.Number, typ protowire.Type, n uint64, br *bufio.Reader) (bool, error) {
		if num != 7 || typ != protowire.BytesType { // ModelProto.graph
			return false, nil
		}
		g, err := readGraphSignature(bufio.NewReaderSize(io.LimitReader(br, int64(n)), 1<<16))
		if err != nil {
			return true, err
		}
		sig = g
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	if sig == nil {
		return nil, errors.New("no graph in model (is this an ONNX file?)")
	}
	return sig, nil
}

func readGraphSignature(br *bufio.Reader) (*Signature, error) {
	sig := &Signature{}
	inits := map[string]bool{}
	err := eachField(br, func(num protowire.Number, typ protowire.Type, n uint64, br *bufio.Reader) (bool, error) {
		if typ != protowire.BytesType {
			return false, nil
		}
		switch num {
		case 5: // initializer: keep the name, skip the data
			name, err := readTensorName(bufio.NewReaderSize(io.LimitReader(br, int64(n)), 4096))
			inits[name] = true
			return true, err
		case 11, 12: // input, output
			if n > 1<<20 {
				return true, fmt.Errorf("value info of %d bytes", n)
			}
			buf := make([]byte, n)
			if _, err := io.ReadFull(br, buf); err != nil {
				return true, err
			}
			v, err := parseValueInfo(buf)
			if err != nil {
				return true, err
			}
			if num == 11 {
				sig.Inputs = append(sig.Inputs, v)
			} else {
				sig.Outputs = append(sig.Outputs, v)
			}
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	ins := sig.Inputs[:0]
	for _, v := range sig.Inputs {
		if !inits[v.Name] {
			ins = append(ins, v)
		}
	}
	sig.Inputs = ins
	return sig, nil
}

func readTensorName(br *bufio.Reader) (string, error) {
	var name string
	err := eachField(br, func(num protowire.Number, typ protowire.Type, n uint64, br *bufio.Reader) (bool, error) {
		if num != 8 || typ != protowire.BytesType {
			return false, nil
		}
		if n > 1<<16 {
			return true, fmt.Errorf("tensor name of %d bytes", n)
		}
		buf := make([]byte, n)
		_, err := io.ReadFull(br, buf)
		name = string(buf)
		return true, err
	})
	return name, err
}

// eachField walks the fields of a message read from br. For a bytes field, fn gets its length
// and either consumes exactly that many bytes (returning true) or leaves them to be skipped.
func eachField(br *bufio.Reader, fn func(num protowire.Number, typ protowire.Type, n uint64, br *bufio.Reader) (bool, error)) error {
	for {
		key, err := binary.ReadUvarint(br)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read field key: %w", err)
		}
		num, typ := protowire.Number(key>>3), protowire.Type(key&7)
		if num <= 0 {
			return fmt.Errorf("invalid field number %d", num)
		}
		var skip uint64
		switch typ {
		case protowire.VarintType:
			if _, err := binary.ReadUvarint(br); err != nil {
				return fmt.Errorf("read varint field %d: %w", num, err)
			}
			continue
		case protowire.Fixed32Type:
			skip = 4
		case protowire.Fixed64Type:
			skip = 8
		case protowire.BytesType:
			n, err := binary.ReadUvarint(br)
			if err != nil {
				return fmt.Errorf("read length of field %d: %w", num, err)
			}
			done, err := fn(num, typ, n, br)
			if err != nil {
				return err
			}
			if done {
				continue
			}
			skip = n
		default:
			return fmt.Errorf("unsupported wire type %d in field %d", typ, num)
		}
		if skip > 1<<40 {
			return fmt.Errorf("field %d claims %d bytes", num, skip)
		}
		if d, err := br.Discard(int(skip)); err != nil || uint64(d) != skip {
			return fmt.Errorf("skip field %d (%d bytes): %w", num, skip, io.ErrUnexpectedEOF)
		}
	}
}

// parseValueInfo decodes a ValueInfoProto held in memory.
func parseValueInfo(b []byte) (ValueInfo, error) {
	var v ValueInfo
	err := walk(b, func(num protowire.Number, typ protowire.Type, val []byte, x uint64) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			v.Name = string(val)
		case num == 2 && typ == protowire.BytesType: // TypeProto
			return walk(val, func(num protowire.Number, typ protowire.Type, val []byte, _ uint64) error {
				if num != 1 || typ != protowire.BytesType { // tensor_type only
					return nil
				}
				return walk(val, func(num protowire.Number, typ protowire.Type, val []byte, x uint64) error {
					switch {
					case num == 1 && typ == protowire.VarintType:
						v.Elem = int32(x)
					case num == 2 && typ == protowire.BytesType: // TensorShapeProto
						return walk(val, func(num protowire.Number, typ protowire.Type, val []byte, _ uint64) error {
							if num != 1 || typ != protowire.BytesType {
								return nil
							}
							var d Dim
							err := walk(val, func(num protowire.Number, typ protowire.Type, val []byte, x uint64) error {
								switch {
								case num == 1 && typ == protowire.VarintType:
									d.Value = int64(x)
								case num == 2 && typ == protowire.BytesType:
									d.Param = string(val)
								}
								return nil
							})
							if d.Param == "" && d.Value == 0 {
								d.Param = "?" // neither value nor name: unknown size
							}
							v.Dims = append(v.Dims, d)
							return err
						})
					}
					return nil
				})
			})
		}
		return nil
	})
	return v, err
}

// walk calls fn for each field of an in-memory message: val for bytes fields, x for varints.
func walk(b []byte, fn func(num protowire.Number, typ protowire.Type, val []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var val []byte
		var x uint64
		switch typ {
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			val, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, typ, val, x); err != nil {
			return err
		}
	}
	return nil
}
