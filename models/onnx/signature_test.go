package onnx_test

import (
	"bytes"
	"testing"

	"connectome/internal/encoders"
	"connectome/models/onnx"
)

func TestSignatureRoundTrip(t *testing.T) {
	m := encoders.TestEncoder("test-conv", [5]int64{0, 1, 16, 16, 16}, 12, 3)
	sig, err := onnx.ReadSignature(bytes.NewReader(m.Marshal()))
	if err != nil {
		t.Fatal(err)
	}
	if len(sig.Inputs) != 1 || sig.Inputs[0].String() != "input (N, 1, 16, 16, 16)" {
		t.Errorf("inputs %v", sig.Inputs)
	}
	if len(sig.Outputs) != 1 || sig.Outputs[0].String() != "embedding (N, 12)" {
		t.Errorf("outputs %v", sig.Outputs)
	}
	// Older exporters list initializers among the inputs: they must not show up.
	m.Graph.Inputs = append(m.Graph.Inputs, onnx.ValueInfo{Name: m.Graph.Initializers[0].Name, Dims: onnx.Shape(4, 1, 3, 3, 3)})
	sig, err = onnx.ReadSignature(bytes.NewReader(m.Marshal()))
	if err != nil {
		t.Fatal(err)
	}
	if len(sig.Inputs) != 1 {
		t.Errorf("initializer listed as input: %v", sig.Inputs)
	}
	if _, err := onnx.ReadSignature(bytes.NewReader([]byte("not a model"))); err == nil {
		t.Error("garbage accepted")
	}
}

func FuzzReadSignature(f *testing.F) {
	f.Add(encoders.TestEncoder("test-conv", [5]int64{0, 1, 8, 8, 8}, 4, 1).Marshal())
	f.Add([]byte{0x3a, 0x02, 0x5a, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		sig, err := onnx.ReadSignature(bytes.NewReader(data))
		if err == nil && sig == nil {
			t.Fatal("nil signature without error")
		}
	})
}
