// Package storagetest is the conformance suite every Kavach storage backend passes, and the
// vocabulary its test servers are described in. A backend's test calls Run with a Backend that
// makes fresh databases; the sibling package testdb provides those for the backends in this
// repository (embedded SQLite, sqld, Postgres, MySQL/MariaDB).
//
//	func TestConformance(t *testing.T) { storagetest.Run(t, testdb.Postgres()) }
//
// The suite checks the storage contract (storage.DB) as the core relies on it: values come back
// as int64, float64, string, []byte or nil whatever the server's types; a batch is atomic and a
// failure names its statement; conditional statements decide races between 32 goroutines;
// migrations are idempotent and safe to run concurrently; the migrated schema is schema.sql's;
// errors are classified; the core's SQL shapes run; and a server that goes away and comes back
// costs one clear, quick error, not a hang.
package storagetest

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kavachdev/kavach"
	"github.com/kavachdev/kavach/storage"
)

// Backend is one way of storing data, able to make fresh databases for tests.
type Backend struct {
	Name string
	// New creates a fresh, empty, isolated database for t. The database and every handle opened
	// on it are removed when t ends. New skips t (or fails it when the CI environment variable
	// is set) if the backend's server is not available.
	New func(t testing.TB) *Database
	// Embedded backends have no server, so the outage test does not apply to them.
	Embedded bool
}

// Open returns a handle on a fresh, empty database, removed when t ends.
func (b Backend) Open(t testing.TB) storage.DB { return b.New(t).Open(t) }

// Database is one database made for a test.
type Database struct {
	// Config opens the database with storage.Open, or through kavach.Config.Database.
	Config storage.Config
	// Isolated means every Open of Config is a new, empty database (SQLite :memory:); tests that
	// need two handles on one database use one handle from several goroutines instead.
	Isolated bool
	// Outage, when set, returns a way to cut the database off and bring it back; nil for
	// embedded databases.
	Outage func(t testing.TB) *Outage
}

// Outage cuts a database off the network and brings it back, as a server restart would.
type Outage struct {
	// Config reaches the database through whatever Cut interrupts; handles that must feel the
	// outage are opened with it.
	Config storage.Config
	// Cut drops every open connection and refuses new ones (or stops the server process).
	Cut func(t testing.TB)
	// Restore accepts connections again (or starts the server again on the same data).
	Restore func(t testing.TB)
}

// Open opens a new handle on d (a new connection pool, as another process would), closed when t
// ends.
func (d *Database) Open(t testing.TB) storage.DB { return OpenConfig(t, d.Config) }

// OpenConfig opens cfg with storage.Open and closes the handle when t ends.
func OpenConfig(t testing.TB, cfg storage.Config) storage.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := storage.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("opening %s database %s: %v", cfg.Provider, storage.RedactURL(cfg.URL), err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("closing %s database: %v", cfg.Provider, err)
		}
	})
	return db
}

// Run runs the conformance suite against b. Subtests run in parallel, each on its own database.
func Run(t *testing.T, b Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b Backend)
	}{
		{"ValuesRoundTrip", testValuesRoundTrip},
		{"ResultTypesAreNormalised", testResultTypes},
		{"BatchIsAtomicAndNamesFailingStatement", testAtomicBatch},
		{"BatchReadsItsOwnWrites", testReadOwnWrites},
		{"LargeBatch", testLargeBatch},
		{"BadInputIsAnErrorNotAPanic", testBadInput},
		{"LiteralsCommentsAndSemicolons", testLiteralsAndComments},
		{"ExecAfterCloseIsErrClosed", testClosed},
		{"SingleUseRowHasExactlyOneWinner", testSingleUseRace},
		{"ConcurrentIncrementsLoseNoUpdate", testCounterRace},
		{"RateLimitCapHoldsUnderConcurrency", testRateLimitRace},
		{"LongWriteBatchesWaitForTheWriteLock", testLongWriteBatches},
		{"MigrateTwiceIsANoOp", testMigrateTwice},
		{"MigrateConcurrently", testMigrateConcurrently},
		{"MigrateUpgradeConcurrently", testMigrateUpgrade},
		{"VerifyNamesMissingColumnAndTable", testVerify},
		{"MigratedSchemaEqualsSchemaSQL", testSchemaMatches},
		{"ErrorsAreClassified", testErrorClassification},
		{"CoreSQLShapes", testCoreShapes},
	}
	if !b.Embedded {
		tests = append(tests, struct {
			name string
			fn   func(t *testing.T, b Backend)
		}{"ServerOutageFailsFastAndRecovers", testOutage})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, b)
		})
	}
}

// ctx returns a context for one test's calls, bounded so a hang fails the test instead of the
// whole run.
func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// schema is Kavach's schema.sql, parsed.
func schema(t testing.TB) *storage.Schema {
	t.Helper()
	s, err := kavach.Schema()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// migrated returns a handle on a fresh database migrated to Kavach's schema.
func migrated(t testing.TB, b Backend) storage.DB {
	t.Helper()
	db := b.Open(t)
	migrate(t, db)
	return db
}

func migrate(t testing.TB, db storage.DB) {
	t.Helper()
	if err := storage.Migrate(ctx(t), db, schema(t), kavach.Migrations, 1_700_000_000); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
}

// exec runs a batch and fails the test on error.
func exec(t testing.TB, db storage.DB, stmts ...storage.Stmt) []storage.Result {
	t.Helper()
	res, err := db.Exec(ctx(t), stmts...)
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if len(res) != len(stmts) {
		t.Fatalf("Exec returned %d results for %d statements", len(res), len(stmts))
	}
	return res
}

func stmt(sql string, args ...any) storage.Stmt { return storage.Stmt{SQL: sql, Args: args} }

// one runs a single query and returns its only value.
func one(t testing.TB, db storage.DB, sql string, args ...any) any {
	t.Helper()
	res := exec(t, db, stmt(sql, args...))
	if len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 1 {
		t.Fatalf("%s: want one value, got %v", sql, res[0].Rows)
	}
	return res[0].Rows[0][0]
}

func count(t testing.TB, db storage.DB, table string) int64 {
	t.Helper()
	v := one(t, db, "SELECT COUNT(*) FROM "+table)
	n, ok := v.(int64)
	if !ok {
		t.Fatalf("COUNT(*) returned %T (%v), want int64", v, v)
	}
	return n
}

// createTables creates tables written in schema.sql's subset of SQL, rendered for db's dialect
// by the same code that renders schema.sql.
func createTables(t testing.TB, db storage.DB, src string) *storage.Schema {
	t.Helper()
	s, err := storage.ParseSchema(src)
	if err != nil {
		t.Fatal(err)
	}
	var stmts []storage.Stmt
	for _, ddl := range s.DDL(db.Dialect()) {
		stmts = append(stmts, stmt(ddl))
	}
	exec(t, db, stmts...)
	return s
}

// Fixtures shared by several tests: a user and an agent to hang rows on.
const (
	userID  = "u-1"
	agentID = "a-1"
)

func insertUser(id string) storage.Stmt {
	return stmt("INSERT INTO kavach_users (id, email, created_at, updated_at) VALUES (?, ?, ?, ?)", id, id+"@example.test", int64(1), int64(1))
}

func insertAgent(id, owner string) storage.Stmt {
	return stmt("INSERT INTO kavach_agents (id, owner_id, name, type, status, token_hash, token_prefix, created_at, updated_at, version) "+
		"VALUES (?, ?, ?, 'autonomous', 'active', ?, 'kv_abc', ?, ?, 1)", id, owner, "agent "+id, "hash-"+id, int64(1), int64(1))
}

// checkOneLine fails t if err's message spans lines or is empty: errors end up in logs and in
// one-line API responses.
func checkOneLine(t testing.TB, err error) {
	t.Helper()
	msg := err.Error()
	if msg == "" || strings.ContainsAny(msg, "\r\n") {
		t.Errorf("error message is not one line: %q", msg)
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
