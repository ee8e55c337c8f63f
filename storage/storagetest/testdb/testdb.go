// Package testdb makes fresh, isolated databases for tests, on every backend Kavach has:
// embedded SQLite (a file and :memory:), a libSQL server (sqld, over HTTP and WebSocket),
// Postgres and MySQL/MariaDB. Every test package uses it the same way:
//
//	for _, b := range testdb.Backends() {
//		t.Run(b.Name, func(t *testing.T) {
//			db := b.Open(t) // a fresh database, dropped when the test ends
//			…
//		})
//	}
//
// Servers are found as follows; each test gets its own database on them:
//   - Postgres: KAVACH_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/postgres
//     (a role that may CREATE DATABASE); each test gets a new database.
//   - MySQL/MariaDB: KAVACH_TEST_MYSQL_URL, default mysql://root@127.0.0.1:3306/test (a user
//     that may CREATE DATABASE); each test gets a new database.
//   - sqld: the binary build/sqld/install.sh installs (or KAVACH_TEST_SQLD); each test starts
//     its own server on a free loopback port with a fresh data directory, and stops it.
//
// A test whose server is missing is skipped with a message saying how to provide it, except
// when the CI environment variable is set: then it fails, because CI must run every backend.
package testdb

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kavachdev/kavach/storage"
	"github.com/kavachdev/kavach/storage/storagetest"

	_ "github.com/kavachdev/kavach/storage/libsql"
	_ "github.com/kavachdev/kavach/storage/mysql"
	_ "github.com/kavachdev/kavach/storage/pg"
)

// Backends lists every backend, embedded ones first. Backends whose server is unavailable skip
// (locally) or fail (in CI) when a test asks them for a database.
func Backends() []storagetest.Backend {
	return []storagetest.Backend{SQLiteFile(), SQLiteMemory(), SqldHTTP(), SqldWebSocket(), Postgres(), MySQL()}
}

// unavailable skips t because a server is missing, or fails it in CI.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set, so a missing server is a failure, not a skip)", msg)
	}
	t.Skip(msg)
}

// uniqueName returns a database name no other test uses: kt_ and 16 random letters and digits.
func uniqueName() string {
	return "kt_" + strings.ToLower(rand.Text()[:16])
}

func background() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// adminExec runs one statement on an administrative connection.
func adminExec(db storage.DB, sql string) error {
	c, cancel := background()
	defer cancel()
	_, err := db.Exec(c, storage.Stmt{SQL: sql})
	return err
}
