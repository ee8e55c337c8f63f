package kavach_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestCoreImportRules enforces DESIGN.md: the core packages import only the standard library
// and each other, never I/O or driver packages, so they compile to wasip1 and run the same
// everywhere; policy imports nothing from the project; backends never import the core; nothing
// imports a host.
func TestCoreImportRules(t *testing.T) {
	const mod = "github.com/kavachdev/kavach"
	core := []string{mod, mod + "/policy", mod + "/api", mod + "/storage"}
	forbiddenDirect := map[string]bool{"net": true, "os": true, "os/exec": true, "net/http": true, "database/sql": true, "syscall": true}
	forbiddenAnywhere := []string{"fasthttp", "wazero", "jackc/pgx", "go-sql-driver", "libsql", "ncruces", mod + "/host", mod + "/cmd"}

	list := func(format string, pkgs ...string) []string {
		t.Helper()
		out, err := exec.Command("go", append([]string{"list", "-f", format}, pkgs...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		return strings.Fields(string(out))
	}
	for _, pkg := range core {
		for _, imp := range list(`{{join .Imports " "}}`, pkg) {
			if forbiddenDirect[imp] {
				t.Errorf("%s imports %s directly", pkg, imp)
			}
		}
		for _, dep := range list(`{{join .Deps " "}}`, pkg) {
			for _, f := range forbiddenAnywhere {
				if strings.Contains(dep, f) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
	for _, imp := range list(`{{join .Imports " "}}`, mod+"/policy") {
		if strings.HasPrefix(imp, mod) {
			t.Errorf("policy imports %s", imp)
		}
	}
	for _, pkg := range list("{{.ImportPath}}", mod+"/storage/...") {
		if pkg == mod+"/storage" || strings.HasPrefix(pkg, mod+"/storage/storagetest") {
			continue
		}
		for _, dep := range list(`{{join .Deps " "}}`, pkg) {
			if dep == mod || strings.HasPrefix(dep, mod+"/api") || strings.HasPrefix(dep, mod+"/host") {
				t.Errorf("backend %s depends on %s", pkg, dep)
			}
		}
	}
	for _, pkg := range list("{{.ImportPath}}", mod+"/...") {
		if strings.HasPrefix(pkg, mod+"/cmd") || strings.HasPrefix(pkg, mod+"/host") || strings.HasSuffix(pkg, "/wasm") {
			continue
		}
		for _, imp := range list(`{{join .Imports " "}}`, pkg) {
			if strings.HasPrefix(imp, mod+"/host") {
				t.Errorf("%s imports the host package %s", pkg, imp)
			}
		}
	}
}
