package kavach_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kavachdev/kavach"
	"github.com/kavachdev/kavach/storage"
)

func TestNewCreatesTheSchemaWithWALAndForeignKeys(t *testing.T) {
	e := newEnv(t)
	rows := must[[]storageResult](t)(execRows(e, "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'kavach_%' ORDER BY name"))
	if len(rows) != 19 { // the 16 reference tables, kavach_audit_heads, kavach_api_keys and kavach_schema_version
		t.Errorf("%d tables: %v", len(rows), rows)
	}
	if mode := must[[]storageResult](t)(execRows(e, "PRAGMA journal_mode")); mode[0][0] != "wal" {
		t.Errorf("journal_mode %v", mode)
	}
	if fk := must[[]storageResult](t)(execRows(e, "PRAGMA foreign_keys")); fk[0][0] != int64(1) {
		t.Errorf("foreign_keys %v", fk)
	}
	if _, err := e.k.DB().Exec(ctx, storageStmt("INSERT INTO kavach_permissions (id, agent_id, resource, actions, created_at) VALUES ('p', 'missing', 'r', '[]', 0)")); !errors.Is(err, storage.ErrForeignKey) {
		t.Errorf("foreign key not enforced: %v", err)
	}
}

func TestMigrationsAreIdempotentAndSafeConcurrently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.db")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := kavach.New(ctx, kavach.Config{Database: kavach.Database{URL: path}})
			if err != nil {
				errs <- err
				return
			}
			errs <- k.Migrate(ctx)
			k.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	k := must[*kavach.Kavach](t)(kavach.New(ctx, kavach.Config{Database: kavach.Database{URL: path}}))
	defer k.Close()
	res := must[[]storage.Result](t)(k.DB().Exec(ctx, storageStmt("SELECT version FROM kavach_schema_version")))
	if len(res[0].Rows) != len(kavach.Migrations) {
		t.Errorf("version rows %v", res[0].Rows)
	}
}

func TestSkipMigrationsVerifiesAndNamesWhatIsMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.db")
	skip := kavach.Config{Database: kavach.Database{URL: path, SkipMigrations: true}}
	_, err := kavach.New(ctx, skip)
	var se *storage.SchemaError
	if !errors.As(err, &se) || len(se.MissingTables) != 19 || !strings.Contains(err.Error(), "kavach_agents") || !strings.Contains(err.Error(), "kavach migrate") {
		t.Fatalf("empty database: %v", err)
	}
	k := must[*kavach.Kavach](t)(kavach.New(ctx, kavach.Config{Database: kavach.Database{URL: path}}))
	must[[]storage.Result](t)(k.DB().Exec(ctx, storageStmt("ALTER TABLE kavach_agents DROP COLUMN metadata"), storageStmt("DROP VIEW kavach_audit_batches")))
	k.Close()
	_, err = kavach.New(ctx, skip)
	if !errors.As(err, &se) || len(se.MissingTables) != 0 || len(se.MissingColumns) != 1 || se.MissingColumns[0] != "kavach_agents.metadata" ||
		fmt.Sprint(se.MissingViews) != "[kavach_audit_batches]" {
		t.Fatalf("missing column and view: %v", err)
	}
	if strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("not one line: %q", err)
	}
	// SkipMigrations runs no DDL: the column is still missing.
	k = must[*kavach.Kavach](t)(kavach.New(ctx, kavach.Config{Database: kavach.Database{URL: path}, NoSchemaCheck: true}))
	defer k.Close()
	cols := must[[]storage.Result](t)(k.DB().Exec(ctx, storageStmt("SELECT * FROM kavach_agents WHERE 1 = 0")))
	for _, c := range cols[0].Columns {
		if c == "metadata" {
			t.Error("skipMigrations added the column")
		}
	}
}

func TestProviderErrorsAreOneClearLine(t *testing.T) {
	// (A provider that is not linked is tested in package storage: this test binary links them all.)
	_, err := kavach.New(ctx, kavach.Config{Database: kavach.Database{Provider: "oracle", URL: "x"}})
	if err == nil || !strings.Contains(err.Error(), "libsql, mysql, postgres, sqlite") {
		t.Errorf("unknown provider: %v", err)
	}
	if _, err := kavach.New(ctx, kavach.Config{Agents: kavach.AgentsConfig{TokenExpiry: "soon"}}); !errors.Is(err, kavach.ErrValidation) {
		t.Errorf("bad token expiry: %v", err)
	}
}

func TestBootstrapCreatesOneAdminKey(t *testing.T) {
	e := newEnv(t)
	other := e.open(t)
	keys := make(chan string, 2)
	var wg sync.WaitGroup
	for _, k := range []*kavach.Kavach{e.k, other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys <- must[string](t)(k.APIKeys.Bootstrap(ctx))
		}()
	}
	wg.Wait()
	close(keys)
	var created []string
	for k := range keys {
		if k != "" {
			created = append(created, k)
		}
	}
	if len(created) != 1 || !kavach.IsAPIKey(created[0]) {
		t.Fatalf("created %v", created)
	}
	if ok := must[bool](t)(e.k.APIKeys.Verify(ctx, created[0])); !ok {
		t.Error("the bootstrap key does not verify")
	}
	if again := must[string](t)(e.k.APIKeys.Bootstrap(ctx)); again != "" {
		t.Error("second bootstrap created a key")
	}
	list := must[[]kavach.APIKey](t)(e.k.APIKeys.List(ctx))
	must[struct{}](t)(struct{}{}, e.k.APIKeys.Revoke(ctx, list[0].ID))
	if ok := must[bool](t)(e.k.APIKeys.Verify(ctx, created[0])); ok {
		t.Error("a revoked key verifies")
	}
}
