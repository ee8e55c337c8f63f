package pg

import (
	"errors"
	"testing"
)

func TestRewritePlaceholders(t *testing.T) {
	cases := []struct {
		in, out string
		params  int
		kind    stmtKind
	}{
		{"SELECT ?", "SELECT $1", 1, kindRead},
		{"INSERT INTO t (a, b) SELECT ?, ? FROM u WHERE id = ? AND version = ?", "INSERT INTO t (a, b) SELECT $1, $2 FROM u WHERE id = $3 AND version = $4", 4, kindWrite},
		{"SELECT '?', ?, 'it''s ?'", "SELECT '?', $1, 'it''s ?'", 1, kindRead},
		{`SELECT "odd?name", ?`, `SELECT "odd?name", $1`, 1, kindRead},
		{`SELECT E'\'?', ?`, `SELECT E'\'?', $1`, 1, kindRead},
		{"SELECT $$ ? $$, $tag$ ? $tag$, ?", "SELECT $$ ? $$, $tag$ ? $tag$, $1", 1, kindRead},
		{"SELECT ? -- ?\n, /* ? /* ? */ ? */ ?", "SELECT $1 -- ?\n, /* ? /* ? */ ? */ $2", 2, kindRead},
		{"  (SELECT 1);  ", "  (SELECT 1)", 0, kindRead},
		{"CREATE TABLE IF NOT EXISTS t (a BIGINT)", "CREATE TABLE IF NOT EXISTS t (a BIGINT)", 0, kindDDL},
		{"update t set a = ?", "update t set a = $1", 1, kindWrite},
		{"SELECT 1; -- done", "SELECT 1 -- done", 0, kindRead},
	}
	for _, c := range cases {
		r, err := rewrite(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if r.sql != c.out || r.params != c.params || r.kind != c.kind {
			t.Errorf("%q: got %q, %d params, kind %d; want %q, %d, %d", c.in, r.sql, r.params, r.kind, c.out, c.params, c.kind)
		}
	}
	for _, bad := range []string{"SELECT 1; SELECT 2", "INSERT INTO t VALUES (1);DELETE FROM t", "", "  ; ", "-- only a comment"} {
		if _, err := rewrite(bad); !errors.Is(err, errMultipleStatements) && !errors.Is(err, errEmptyStatement) {
			t.Errorf("%q: %v, want an error", bad, err)
		}
	}
}

func TestWithCastsTypesEveryPlaceholder(t *testing.T) {
	r, _ := rewrite("SELECT ? IS NULL, '$1', ?, ?, ?")
	got := withCasts(r, []any{nil, int64(1), 1.5, []byte{1}}).sql
	if want := "SELECT $1::text IS NULL, '$1', $2::int8, $3::float8, $4::bytea"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
