//go:build !amd64

package knn

var useAVX512, useAVX2 = false, false

func dot4x4AVX512(a, b *float64, strideBytes, n int, out *float64, outStrideBytes int) {
	panic("knn: no AVX-512 kernel on this architecture")
}

func dot4x4AVX2(a, b *float64, strideBytes, n int, out *float64, outStrideBytes int) {
	panic("knn: no AVX2 kernel on this architecture")
}
