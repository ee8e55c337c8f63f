// Package wasmbuild builds the WebAssembly module from the current sources, for `make wasm`
// (./build) and for the tests of its hosts (host/wasmhost, edge).
//
// The flags: a wasip1 reactor (c-shared), without paths, symbols or DWARF. fmt is compiled
// without inlining: it only formats messages, and that makes the module 52 KB smaller (19.5 KB
// gzip).
package wasmbuild

import (
	"fmt"
	"os"
	"os/exec"
)

// Build writes the module to out.
func Build(out string) error {
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-ldflags=-s -w", "-gcflags=fmt=-l", "-o", out, "github.com/kavachdev/kavach/wasm")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the module: %v\n%s", err, b)
	}
	return nil
}
