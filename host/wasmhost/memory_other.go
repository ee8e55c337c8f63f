//go:build !linux

package wasmhost

import "github.com/tetratelabs/wazero/experimental"

// memoryAllocator is nil (wazero's default, a Go slice) where the reserving one is not built.
var memoryAllocator experimental.MemoryAllocator
