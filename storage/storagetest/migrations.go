package storagetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kavachdev/kavach"
	"github.com/kavachdev/kavach/storage"
)

// versions returns the rows of the schema version table.
func versions(t testing.TB, db storage.DB) string {
	t.Helper()
	return fmt.Sprint(exec(t, db, stmt("SELECT version FROM "+storage.VersionTable+" ORDER BY version"))[0].Rows)
}

func wantVersions(n int) string {
	var rows [][]any
	for v := 1; v <= n; v++ {
		rows = append(rows, []any{int64(v)})
	}
	return fmt.Sprint(rows)
}

func testMigrateTwice(t *testing.T, b Backend) {
	db := b.Open(t)
	migrate(t, db)
	exec(t, db, insertUser(userID))
	migrate(t, db)
	if got, want := versions(t, db), wantVersions(len(kavach.Migrations)); got != want {
		t.Errorf("versions after migrating twice: %s, want %s", got, want)
	}
	if n := count(t, db, "kavach_users"); n != 1 {
		t.Errorf("a second Migrate lost data: %d users, want 1", n)
	}
	if err := storage.Verify(ctx(t), db, schema(t)); err != nil {
		t.Errorf("Verify after Migrate: %v", err)
	}
}

// migrateAll runs migrate from several goroutines over the handles at once, as nodes starting
// together against one database would.
func migrateAll(t *testing.T, handles []storage.DB, per int, fn func(storage.DB) error) {
	t.Helper()
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, len(handles)*per)
	for _, h := range handles {
		for range per {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs <- fn(h)
			}()
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Migrate: %v", err)
		}
	}
}

func testMigrateConcurrently(t *testing.T, b Backend) {
	d := b.New(t)
	handles := []storage.DB{d.Open(t)}
	for len(handles) < 4 && !d.Isolated {
		handles = append(handles, d.Open(t))
	}
	s := schema(t)
	migrateAll(t, handles, 2, func(db storage.DB) error {
		return storage.Migrate(ctx(t), db, s, kavach.Migrations, 1_700_000_000)
	})
	if got, want := versions(t, handles[0]), wantVersions(len(kavach.Migrations)); got != want {
		t.Errorf("versions after concurrent migrations: %s, want %s", got, want)
	}
	for i, h := range handles {
		if err := storage.Verify(ctx(t), h, s); err != nil {
			t.Errorf("handle %d: Verify: %v", i, err)
		}
	}
}

// testMigrateUpgrade upgrades a database by one migration that adds a column (DDL that is not
// idempotent, unlike CREATE … IF NOT EXISTS) from several nodes at once: exactly one applies it
// and the others notice.
func testMigrateUpgrade(t *testing.T, b Backend) {
	d := b.New(t)
	handles := []storage.DB{d.Open(t)}
	for len(handles) < 4 && !d.Isolated {
		handles = append(handles, d.Open(t))
	}
	migrate(t, handles[0])
	exec(t, handles[0], insertUser(userID))
	s := schema(t)
	next := append(slices.Clone(kavach.Migrations), storage.Migration{
		Version: len(kavach.Migrations) + 1,
		Name:    "conformance: add a column",
		Stmts: func(storage.Dialect) []string {
			return []string{"ALTER TABLE kavach_users ADD COLUMN st_nickname TEXT"}
		},
	})
	migrateAll(t, handles, 2, func(db storage.DB) error {
		return storage.Migrate(ctx(t), db, s, next, 1_700_000_100)
	})
	if got, want := versions(t, handles[0]), wantVersions(len(next)); got != want {
		t.Errorf("versions after the upgrade: %s, want %s", got, want)
	}
	res := exec(t, handles[len(handles)-1], stmt("SELECT st_nickname, email FROM kavach_users WHERE id = ?", userID))
	if got := fmt.Sprint(res[0].Rows); got != "[[<nil> u-1@example.test]]" {
		t.Errorf("after the upgrade: %s", got)
	}
}

func testVerify(t *testing.T, b Backend) {
	full := schema(t)
	// A database created from schema.sql minus one column of kavach_agents, and minus a table.
	partial := &storage.Schema{Indexes: full.Indexes}
	for _, tb := range full.Tables {
		switch tb.Name {
		case "kavach_trust_scores":
			continue
		case "kavach_agents":
			c := *tb
			c.Columns = slices.DeleteFunc(slices.Clone(tb.Columns), func(c *storage.Column) bool { return c.Name == "version" })
			tb = &c
		}
		partial.Tables = append(partial.Tables, tb)
	}
	db := b.Open(t)
	if err := storage.Verify(ctx(t), db, full); err == nil {
		t.Error("Verify passed on an empty database")
	}
	var stmts []storage.Stmt
	for _, ddl := range partial.DDL(db.Dialect()) {
		stmts = append(stmts, stmt(ddl))
	}
	exec(t, db, stmts...)
	err := storage.Verify(ctx(t), db, full)
	var se *storage.SchemaError
	if !errors.As(err, &se) {
		t.Fatalf("Verify: %v, want a *storage.SchemaError", err)
	}
	if fmt.Sprint(se.MissingColumns) != "[kavach_agents.version]" || fmt.Sprint(se.MissingTables) != "[kavach_trust_scores]" {
		t.Errorf("Verify reports missing columns %v and tables %v, want [kavach_agents.version] and [kavach_trust_scores]", se.MissingColumns, se.MissingTables)
	}
	checkOneLine(t, err)
	for _, want := range []string{"kavach_agents.version", "kavach_trust_scores", "migrate"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Verify's message %q does not mention %q", err, want)
		}
	}
	// Only the column missing: the message names exactly it.
	exec(t, db, stmt("CREATE TABLE kavach_trust_scores (agent_id TEXT, score INTEGER, level TEXT, factors TEXT, computed_at INTEGER)"))
	err = storage.Verify(ctx(t), db, full)
	if !errors.As(err, &se) || fmt.Sprint(se.MissingColumns) != "[kavach_agents.version]" || len(se.MissingTables) != 0 {
		t.Errorf("Verify with one column missing: %v", err)
	}
}
