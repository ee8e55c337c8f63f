package wasmhost_test

import (
	"bytes"
	"os/exec"
	"testing"
)

// maxModuleGzip is the backends issue's budget for the module: 1.5 MB after gzip -9, the
// compression Workers' size limits are measured with (../shared/reference/wasm-edge.md).
const maxModuleGzip = 1_500_000

// The module, built as `make wasm` builds it, stays within its size budget. Code added to the
// core lands in the module too: when this fails, make the module smaller (what its bytes are
// made of: DEVELOPERS.md) rather than raising the number.
func TestModuleSizeBudget(t *testing.T) {
	gz, err := exec.LookPath("gzip")
	if err != nil {
		t.Fatalf("gzip(1) measures the module's size and is not installed: %v", err)
	}
	cmd := exec.Command(gz, "-9", "-c")
	cmd.Stdin = bytes.NewReader(wasmBytes)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gzip: %v", err)
	}
	t.Logf("module: %d bytes raw, %d bytes gzip -9 (budget %d, %d left)", len(wasmBytes), len(out), maxModuleGzip, maxModuleGzip-len(out))
	if len(out) > maxModuleGzip {
		t.Errorf("the module is %d bytes after gzip -9, over its budget of %d", len(out), maxModuleGzip)
	}
}
