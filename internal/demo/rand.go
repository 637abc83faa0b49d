package demo

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
)

// Every random choice of the generator comes from a stream keyed by (seed, labels), never
// from a shared generator, so a patient's content does not depend on the order in which
// series are generated (they are generated in parallel) or on how many patients there are.

// key hashes the seed and labels into 32 bytes.
func key(seed int64, labels ...any) [32]byte {
	h := sha256.New()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(seed))
	h.Write(b[:])
	for _, l := range labels {
		fmt.Fprintf(h, "|%v", l)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// stream returns a PCG generator keyed by (seed, labels).
func stream(seed int64, labels ...any) *rand.Rand {
	k := key(seed, labels...)
	return rand.New(rand.NewPCG(binary.LittleEndian.Uint64(k[0:8]), binary.LittleEndian.Uint64(k[8:16])))
}

// uid returns a DICOM UID under the 2.25 root (a UUID written as a decimal integer,
// ISO/IEC 9834-8), derived from (seed, labels): at most 5+39 = 44 characters.
func uid(seed int64, labels ...any) string {
	k := key(seed, labels...)
	u := k[:16]
	u[6] = u[6]&0x0f | 0x40 // version 4 layout, as a random UUID would have
	u[8] = u[8]&0x3f | 0x80
	return "2.25." + new(big.Int).SetBytes(u).String()
}

// uuid returns a lower-case RFC 4122 version-4 style UUID derived from (seed, labels), the
// form of IDC's crdc_*_uuid columns.
func uuid(seed int64, labels ...any) string {
	k := key(seed, labels...)
	u := k[:16]
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// crdcUUID is an IDC-style crdc_*_uuid. In IDC such a UUID names one immutable version of a
// series or instance, so it is derived from the generator version too: a cohort whose bytes
// changed gets new UUIDs, and no cache keyed by them (the fetch stage's, the fake bucket) can
// serve old bytes for it.
func crdcUUID(seed int64, labels ...any) string {
	return uuid(seed, append([]any{"generator-" + Version}, labels...)...)
}

// mix64 is splitmix64's finaliser: a fast, well-mixed hash of one word.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// hash3 hashes integer lattice coordinates under a key.
func hash3(k uint64, x, y, z int) uint64 {
	h := mix64(k ^ uint64(int64(x))*0x9e3779b97f4a7c15)
	h = mix64(h ^ uint64(int64(y))*0xc2b2ae3d27d4eb4f)
	return mix64(h ^ uint64(int64(z))*0x165667b19e3779f9)
}

// gauss3 is an approximately standard-normal value for a lattice point: the Irwin–Hall sum of
// four 16-bit uniforms, rescaled (variance 4/12 → 1). Good enough for image noise, and cheap.
func gauss3(k uint64, x, y, z int) float64 {
	h := hash3(k, x, y, z)
	s := float64(h&0xffff) + float64(h>>16&0xffff) + float64(h>>32&0xffff) + float64(h>>48)
	return (s/65535 - 2) * math.Sqrt(3)
}

// valueNoise is smooth noise in [-1, 1]·≈0.6 std: hashed values on a cubic lattice of the given
// cell size (mm), interpolated with a smoothstep. It gives lung parenchyma and tumours a
// texture with a real correlation length instead of white noise only.
func valueNoise(k uint64, x, y, z, cell float64) float64 {
	fx, fy, fz := x/cell, y/cell, z/cell
	ix, iy, iz := math.Floor(fx), math.Floor(fy), math.Floor(fz)
	tx, ty, tz := smooth(fx-ix), smooth(fy-iy), smooth(fz-iz)
	x0, y0, z0 := int(ix), int(iy), int(iz)
	v := func(dx, dy, dz int) float64 {
		return float64(hash3(k, x0+dx, y0+dy, z0+dz)>>11)/float64(1<<53)*2 - 1
	}
	lerp := func(a, b, t float64) float64 { return a + (b-a)*t }
	c00 := lerp(v(0, 0, 0), v(1, 0, 0), tx)
	c10 := lerp(v(0, 1, 0), v(1, 1, 0), tx)
	c01 := lerp(v(0, 0, 1), v(1, 0, 1), tx)
	c11 := lerp(v(0, 1, 1), v(1, 1, 1), tx)
	return lerp(lerp(c00, c10, ty), lerp(c01, c11, ty), tz)
}

func smooth(t float64) float64 { return t * t * (3 - 2*t) }
