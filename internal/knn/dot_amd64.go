package knn

import "golang.org/x/sys/cpu"

// The kernel is chosen once from the CPU's features (tests switch it to compare kernels).
var (
	useAVX512 = cpu.X86.HasAVX512F
	useAVX2   = cpu.X86.HasAVX2 && cpu.X86.HasFMA
)

// dot4x4AVX512 is dot4x4 for n a multiple of 8; strideBytes and outStrideBytes are in bytes.
//
//go:noescape
func dot4x4AVX512(a, b *float64, strideBytes, n int, out *float64, outStrideBytes int)

// dot4x4AVX2 is dot4x4AVX512 for CPUs with AVX2 and FMA but no AVX-512 (n a multiple of 4).
//
//go:noescape
func dot4x4AVX2(a, b *float64, strideBytes, n int, out *float64, outStrideBytes int)
