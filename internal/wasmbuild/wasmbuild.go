// Package wasmbuild builds the WebAssembly module for the tests of its hosts (host/wasmhost,
// edge), from the current sources and with the flags `make wasm` uses (keep the two alike).
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
