//go:build wasip1

// Command wasm is Kavach's core as a WebAssembly (WASI preview 1) reactor. A host instantiates
// it, calls _initialize once, then drives operations through the step protocol (api.Step): the
// module performs no I/O of its own, so any host can run it, including JavaScript runtimes whose
// database calls are asynchronous.
//
// Exports:
//
//	kavach_abi_version() -> u32       the envelope/ABI version (api.StepABIVersion)
//	kavach_alloc(size u32) -> u32     a buffer the host writes an envelope into; 0 when size is
//	                                  over api.MaxEnvelopeBytes (the host must not write then)
//	kavach_free(ptr u32)              releases a buffer from kavach_alloc or kavach_call
//	kavach_call(ptr u32, len u32) -> u64
//	                                  runs one step; the output envelope is at the high 32 bits
//	                                  (pointer) and low 32 bits (length). The host copies it and
//	                                  frees both buffers.
//
// Build: make wasm (internal/wasmbuild has the flags).
package main

import (
	"context"
	"unsafe"

	"github.com/kavachdev/kavach/api"
)

func main() {}

// pinned keeps buffers handed to the host alive (Go's collector does not move objects) until the
// host frees them. A host has a few at a time (an envelope and an answer per call), so a short
// list searched from the end serves better than a map, whose operations cost microseconds here.
var pinned [][]byte

func pin(b []byte) uint32 {
	if len(b) == 0 {
		b = make([]byte, 1)[:0:1]
	}
	pinned = append(pinned, b)
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}

// pinnedAt returns the index of the pinned buffer at address p, or -1.
func pinnedAt(p uint32) int {
	for i := len(pinned) - 1; i >= 0; i-- {
		if uint32(uintptr(unsafe.Pointer(unsafe.SliceData(pinned[i])))) == p {
			return i
		}
	}
	return -1
}

//go:wasmexport kavach_abi_version
func abiVersion() uint32 { return api.StepABIVersion }

//go:wasmexport kavach_alloc
func alloc(size uint32) uint32 {
	if size > api.MaxEnvelopeBytes {
		return 0
	}
	return pin(make([]byte, size))
}

//go:wasmexport kavach_free
func free(p uint32) {
	if i := pinnedAt(p); i >= 0 {
		last := len(pinned) - 1
		pinned[i] = pinned[last]
		pinned[last] = nil
		pinned = pinned[:last]
	}
}

//go:wasmexport kavach_call
func call(p, n uint32) uint64 {
	var out []byte
	if i := pinnedAt(p); i < 0 || int(n) > cap(pinned[i]) {
		out = []byte(`{"status":"error","error":{"code":"BAD_ENVELOPE","message":"kavach_call: the buffer was not allocated with kavach_alloc or is too short"}}`)
	} else {
		// The buffer is the host's to free but nobody else's to read: the step may decode in it.
		out = api.StepInPlace(context.Background(), pinned[i][:n])
	}
	return uint64(pin(out))<<32 | uint64(len(out))
}
