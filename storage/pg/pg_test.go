package pg_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/kavachdev/kavach/storage"
	"github.com/kavachdev/kavach/storage/storagetest"
	"github.com/kavachdev/kavach/storage/storagetest/testdb"
)

func TestConformance(t *testing.T) { storagetest.Run(t, testdb.Postgres()) }

// TestOpenErrorsAreOneClearLine opens databases that cannot work and checks that each failure
// is one line saying what is wrong, with the server named and the password nowhere, in an
// error or in a log line.
func TestOpenErrorsAreOneClearLine(t *testing.T) {
	const secret = "s3cr3t-Pa55word"
	logs := storagetest.CaptureLogs(t)
	shared := testdb.Postgres().New(t) // a database on the shared server, for its address
	base, err := url.Parse(shared.Config.URL)
	if err != nil {
		t.Fatal(err)
	}
	privURL, password := testdb.PostgresWithPassword(t)
	wrongPW, _ := url.Parse(privURL)
	wrongPW.User = url.UserPassword("kavach", secret)
	rightPW, _ := url.Parse(privURL)
	rightPW.User = url.UserPassword("kavach", password)
	missingDB := *base
	missingDB.User = url.UserPassword(base.User.Username(), secret)
	missingDB.Path = "/kavach_no_such_database"

	cases := []struct {
		name, url string
		want      []string
		kind      error
	}{
		{"unreachable server", "postgres://kavach:" + secret + "@" + storagetest.ClosedAddr(t) + "/kavach",
			[]string{"cannot reach postgres", "connection refused", "check that the server is running"}, storage.ErrUnavailable},
		{"wrong password", wrongPW.String(),
			[]string{"refused the login", "password authentication failed", "check the user and password"}, storage.ErrUnavailable},
		{"missing database", missingDB.String(),
			[]string{`"kavach_no_such_database" does not exist`, "create the database"}, storage.ErrUnavailable},
		{"malformed port", "postgres://kavach:" + secret + "@127.0.0.1:notaport/kavach", []string{"invalid postgres database url"}, nil},
		{"malformed port, password in the query", "postgres://127.0.0.1:notaport/kavach?password=" + secret, []string{"invalid postgres database url"}, nil},
		{"malformed host", "postgres://kavach:" + secret + "@[::1/kavach", []string{"invalid postgres database url"}, nil},
		{"unknown sslmode", "postgres://kavach:" + secret + "@127.0.0.1/kavach?sslmode=sometimes", []string{"invalid postgres database url", "sslmode"}, nil},
		{"wrong scheme", "mysql://kavach:" + secret + "@127.0.0.1/kavach", []string{"must start with postgres://"}, nil},
	}
	var checks []storagetest.OpenErrorCase
	for _, c := range cases {
		checks = append(checks, storagetest.OpenErrorCase{Name: c.name, Config: storage.Config{Provider: "postgres", URL: c.url}, Want: c.want, Kind: c.kind})
	}
	storagetest.RunOpenErrors(t, checks, secret, password)
	// The right password works, and the errors of an open database do not show it either.
	db := storagetest.OpenConfig(t, storage.Config{Provider: "postgres", URL: rightPW.String()})
	_, err = db.Exec(context.Background(), storage.Stmt{SQL: "SELECT no_such_column"})
	if err == nil || strings.Contains(err.Error(), password) {
		t.Errorf("statement error: %v", err)
	}
	if l := logs.String(); strings.Contains(l, secret) || strings.Contains(l, password) {
		t.Errorf("a log line shows a password:\n%s", l)
	}
}

// TestParameterTypesPostgresCannotInfer: a statement whose parameter types Postgres cannot infer
// from context still runs, with each parameter typed by its Go value.
func TestParameterTypesPostgresCannotInfer(t *testing.T) {
	db := testdb.Postgres().Open(t)
	ctx := context.Background()
	for range 2 { // the second time from the backend's memory of the statement
		res, err := db.Exec(ctx,
			storage.Stmt{SQL: "SELECT ? IS NULL, ? IS NULL, ?", Args: []any{nil, int64(5), int64(7)}},
			storage.Stmt{SQL: "SELECT CASE WHEN ? IS NULL THEN 'none' ELSE 'some' END", Args: []any{"x"}},
		)
		if err != nil {
			t.Fatal(err)
		}
		if got := res[0].Rows[0]; got[0] != int64(1) || got[1] != int64(0) || got[2] != int64(7) {
			t.Errorf("SELECT ? IS NULL, ? IS NULL, ?: %v", got)
		}
		if got := res[1].Rows[0][0]; got != "some" {
			t.Errorf("CASE WHEN ? IS NULL: %v", got)
		}
	}
}
