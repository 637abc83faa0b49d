// NumPy's .npy format (version 1.0, C order, little endian) for float32 arrays: the file
// format of model-input tensors (`connectome patch`, the preprocess stage) and test vectors.

package patch

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
)

var magic = []byte("\x93NUMPY")

// WriteNPY writes data with the given shape as a '<f4' C-order .npy array.
func WriteNPY(w io.Writer, shape []int, data []float32) error {
	n := 1
	for _, d := range shape {
		n *= d
	}
	if n != len(data) {
		return fmt.Errorf("npy: shape %v holds %d values, got %d", shape, n, len(data))
	}
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = strconv.Itoa(d)
	}
	tuple := strings.Join(dims, ", ")
	if len(shape) == 1 {
		tuple += ","
	}
	header := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", tuple)
	// Pad so that the data starts on a 64-byte boundary, as numpy does.
	total := len(magic) + 2 + 2 + len(header) + 1
	header += strings.Repeat(" ", (64-total%64)%64) + "\n"
	bw := bufio.NewWriter(w)
	bw.Write(magic)
	bw.Write([]byte{1, 0})
	binary.Write(bw, binary.LittleEndian, uint16(len(header)))
	bw.WriteString(header)
	buf := make([]byte, 4)
	for _, v := range data {
		binary.LittleEndian.PutUint32(buf, math.Float32bits(v))
		if _, err := bw.Write(buf); err != nil {
			return err
		}
	}
	return bw.Flush()
}

var (
	descrRE   = regexp.MustCompile(`'descr':\s*'([^']*)'`)
	fortranRE = regexp.MustCompile(`'fortran_order':\s*(True|False)`)
	shapeRE   = regexp.MustCompile(`'shape':\s*\(([^)]*)\)`)
)

// ReadNPY reads a little-endian float32 (or float64, converted) C-order .npy array.
func ReadNPY(r io.Reader) (shape []int, data []float32, err error) {
	br := bufio.NewReader(r)
	h, err := readNPYHeader(br)
	if err != nil {
		return nil, nil, err
	}
	shape, n, size, err := parseNPYHeader(h)
	if err != nil {
		return nil, nil, err
	}
	if data, err = readNPYData(br, n, size); err != nil {
		return nil, nil, err
	}
	return shape, data, nil
}

// readNPYHeader reads the magic, the version and the header dictionary's text.
func readNPYHeader(br io.Reader) (string, error) {
	head := make([]byte, 8)
	if _, err := io.ReadFull(br, head); err != nil {
		return "", fmt.Errorf("npy: read magic: %w", err)
	}
	if string(head[:6]) != string(magic) {
		return "", errors.New("npy: not a .npy file (bad magic)")
	}
	var hlen int
	switch head[6] {
	case 1:
		var l uint16
		if err := binary.Read(br, binary.LittleEndian, &l); err != nil {
			return "", fmt.Errorf("npy: read header length: %w", err)
		}
		hlen = int(l)
	case 2, 3:
		var l uint32
		if err := binary.Read(br, binary.LittleEndian, &l); err != nil {
			return "", fmt.Errorf("npy: read header length: %w", err)
		}
		hlen = int(l)
	default:
		return "", fmt.Errorf("npy: unsupported version %d.%d", head[6], head[7])
	}
	if hlen > 1<<20 {
		return "", fmt.Errorf("npy: header length %d too large", hlen)
	}
	hb := make([]byte, hlen)
	if _, err := io.ReadFull(br, hb); err != nil {
		return "", fmt.Errorf("npy: read header: %w", err)
	}
	return string(hb), nil
}

// parseNPYHeader reads shape, element count and element size from the header dictionary.
func parseNPYHeader(h string) (shape []int, n, size int, err error) {
	dm := descrRE.FindStringSubmatch(h)
	fm := fortranRE.FindStringSubmatch(h)
	sm := shapeRE.FindStringSubmatch(h)
	if dm == nil || fm == nil || sm == nil {
		return nil, 0, 0, fmt.Errorf("npy: malformed header %q", h)
	}
	if fm[1] != "False" {
		return nil, 0, 0, errors.New("npy: fortran-order arrays are not supported")
	}
	n = 1
	for _, part := range strings.Split(sm[1], ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		d, err := strconv.Atoi(part)
		if err != nil || d < 0 {
			return nil, 0, 0, fmt.Errorf("npy: bad shape %q", sm[1])
		}
		shape = append(shape, d)
		if d > 0 && n > math.MaxInt32/d {
			return nil, 0, 0, fmt.Errorf("npy: shape %q too large", sm[1])
		}
		n *= d
	}
	switch dm[1] {
	case "<f4":
		size = 4
	case "<f8":
		size = 8
	default:
		return nil, 0, 0, fmt.Errorf("npy: dtype %q not supported (want <f4 or <f8)", dm[1])
	}
	return shape, n, size, nil
}

// readNPYData reads n elements of size bytes (4: float32, 8: float64) as float32.
func readNPYData(br io.Reader, n, size int) ([]float32, error) {
	raw := make([]byte, size*1<<16)
	data := make([]float32, 0, n)
	for len(data) < n {
		want := min(n-len(data), 1<<16) * size
		if _, err := io.ReadFull(br, raw[:want]); err != nil {
			return nil, fmt.Errorf("npy: read data: %w", err)
		}
		for off := 0; off < want; off += size {
			if size == 4 {
				data = append(data, math.Float32frombits(binary.LittleEndian.Uint32(raw[off:])))
			} else {
				data = append(data, float32(math.Float64frombits(binary.LittleEndian.Uint64(raw[off:]))))
			}
		}
	}
	return data, nil
}
