package mysql_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kavachdev/kavach/storage"
	"github.com/kavachdev/kavach/storage/mysql"
	"github.com/kavachdev/kavach/storage/storagetest"
	"github.com/kavachdev/kavach/storage/storagetest/testdb"
)

func TestConformance(t *testing.T) { storagetest.Run(t, testdb.MySQL()) }

// TestOpenErrorsAreOneClearLine opens databases that cannot work and checks that each failure
// is one line saying what is wrong, with the server named and the password nowhere, in an
// error or in a log line.
func TestOpenErrorsAreOneClearLine(t *testing.T) {
	const secret = "s3cr3t-Pa55word"
	logs := storagetest.CaptureLogs(t)
	d := testdb.MySQL().New(t)
	admin := d.Open(t)
	base, err := url.Parse(d.Config.URL)
	if err != nil {
		t.Fatal(err)
	}
	// A user with a password, on the shared server, for the wrong-password case.
	user := "kt_pw_" + strings.TrimPrefix(strings.TrimPrefix(base.Path, "/"), "kt_")
	const right = "right-Pa55word"
	ctx := context.Background()
	if _, err := admin.Exec(ctx, storage.Stmt{SQL: "CREATE USER '" + user + "'@'%' IDENTIFIED BY '" + right + "'"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec(ctx, storage.Stmt{SQL: "DROP USER IF EXISTS '" + user + "'@'%'"}) })
	if _, err := admin.Exec(ctx, storage.Stmt{SQL: "GRANT ALL ON " + strings.TrimPrefix(base.Path, "/") + ".* TO '" + user + "'@'%'"}); err != nil {
		t.Fatal(err)
	}
	withUser := func(password, path string) string {
		u := *base
		u.User = url.UserPassword(user, password)
		if path != "" {
			u.Path = path
		}
		return u.String()
	}

	missingDB := *base // the test server's administrative user, who may see every database
	missingDB.Path = "/kavach_no_such_database"
	cases := []struct {
		name, url string
		want      []string
		kind      error
	}{
		{"unreachable server", "mysql://kavach:" + secret + "@" + storagetest.ClosedAddr(t) + "/kavach",
			[]string{"cannot reach mysql", "connection refused", "check that the server is running"}, storage.ErrUnavailable},
		{"wrong password", withUser(secret, ""), []string{"refused the login", "Access denied", "check the user and password"}, storage.ErrUnavailable},
		{"missing database", missingDB.String(), []string{"Unknown database 'kavach_no_such_database'", "create the database"}, storage.ErrUnavailable},
		{"database the user may not use", withUser(right, "/kavach_no_such_database"),
			[]string{"kavach_no_such_database", "grant the user access"}, storage.ErrUnavailable},
		{"malformed port", "mysql://kavach:" + secret + "@127.0.0.1:notaport/kavach", []string{"invalid mysql database url"}, nil},
		{"malformed port, secret in the query", "mysql://127.0.0.1:notaport/kavach?serverPubKey=" + secret, []string{"invalid mysql database url"}, nil},
		{"no database", "mysql://kavach:" + secret + "@127.0.0.1:3306", []string{"must name one database"}, nil},
		{"bad parameter", "mysql://kavach:" + secret + "@127.0.0.1:3306/kavach?timeout=soon", []string{"invalid parameter"}, nil},
		{"wrong scheme", "postgres://kavach:" + secret + "@127.0.0.1/kavach", []string{"must start with mysql://"}, nil},
	}
	var checks []storagetest.OpenErrorCase
	for _, c := range cases {
		checks = append(checks, storagetest.OpenErrorCase{Name: c.name, Config: storage.Config{Provider: "mysql", URL: c.url}, Want: c.want, Kind: c.kind})
	}
	storagetest.RunOpenErrors(t, checks, secret, right)
	// The right password works; statement errors and a lost connection do not show it either.
	db := storagetest.OpenConfig(t, storage.Config{Provider: "mysql", URL: withUser(right, "")})
	if _, err := db.Exec(ctx, storage.Stmt{SQL: "SELECT no_such_column FROM DUAL"}); err == nil || strings.Contains(err.Error(), right) {
		t.Errorf("statement error: %v", err)
	}
	if l := logs.String(); strings.Contains(l, secret) || strings.Contains(l, right) {
		t.Errorf("a log line shows a password:\n%s", l)
	}
}

// TestTooLongValueIsAnError: strict mode makes MySQL refuse a value longer than its column,
// as the other backends store it whole, instead of silently truncating it.
func TestTooLongValueIsAnError(t *testing.T) {
	db := testdb.MySQL().Open(t)
	ctx := context.Background()
	if _, err := db.Exec(ctx, storage.Stmt{SQL: "CREATE TABLE st_short (id BIGINT PRIMARY KEY, v VARCHAR(4))"}); err != nil {
		t.Fatal(err)
	}
	_, err := db.Exec(ctx, storage.Stmt{SQL: "INSERT INTO st_short (id, v) VALUES (?, ?)", Args: []any{int64(1), "too long"}})
	if !errors.Is(err, storage.ErrConstraint) {
		t.Errorf("inserting 8 characters into VARCHAR(4): %v, want storage.ErrConstraint", err)
	}
}

// The planner estimates equality lookups from index statistics (eq_range_index_dive_limit 1),
// unless the database URL chooses otherwise.
func TestEqualityLookupsArePlannedFromStatistics(t *testing.T) {
	ctx := context.Background()
	base := testdb.MySQL().New(t).Config
	for _, c := range []struct{ query, want string }{{"", "1"}, {"eq_range_index_dive_limit=10", "10"}} {
		u := base.URL
		if c.query != "" {
			sep := "?"
			if strings.Contains(u, "?") {
				sep = "&"
			}
			u += sep + c.query
		}
		db, err := mysql.Open(ctx, storage.Config{URL: u})
		if err != nil {
			t.Fatal(err)
		}
		res, err := db.Exec(ctx, storage.Stmt{SQL: "SELECT @@SESSION.eq_range_index_dive_limit"})
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(res[0].Rows[0][0]); got != c.want {
			t.Errorf("URL parameters %q: eq_range_index_dive_limit %s, want %s", c.query, got, c.want)
		}
	}
}

// TestDDLLockIsReleasedWhenTheBatchFails: a failing DDL batch must not leave the named lock held
// by a pooled connection, or every later migration would wait for it.
func TestDDLLockIsReleasedWhenTheBatchFails(t *testing.T) {
	d := testdb.MySQL().New(t)
	db := d.Open(t)
	ctx := context.Background()
	_, err := db.Exec(ctx,
		storage.Stmt{SQL: "CREATE TABLE st_a (id BIGINT PRIMARY KEY)"},
		storage.Stmt{SQL: "CREATE TABLE st_a (id BIGINT PRIMARY KEY)"},
	)
	if err == nil {
		t.Fatal("creating a table twice succeeded")
	}
	name := "kavach_ddl." + strings.TrimPrefix(mustURL(t, d.Config.URL).Path, "/")
	res, err := db.Exec(ctx, storage.Stmt{SQL: "SELECT IS_USED_LOCK(?)", Args: []any{name}})
	if err != nil {
		t.Fatal(err)
	}
	if v := res[0].Rows[0][0]; v != nil {
		t.Errorf("after the failed batch, connection %v still holds %s", v, name)
	}
	// Another handle can run DDL at once.
	other := d.Open(t)
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := other.Exec(c, storage.Stmt{SQL: "CREATE TABLE st_b (id BIGINT PRIMARY KEY)"}); err != nil {
		t.Errorf("DDL after the failed batch: %v", err)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
