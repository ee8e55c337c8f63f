package storagetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kavachdev/kavach/storage"
)

func testAtomicBatch(t *testing.T, b Backend) {
	db := migrated(t, b)
	cases := []struct {
		name    string
		batch   []storage.Stmt
		failing int
		kind    error
	}{
		{
			name:    "duplicate key in the last statement",
			batch:   []storage.Stmt{insertUser("u-a"), insertUser("u-b"), insertAgent("a-a", "u-a"), insertUser("u-a")},
			failing: 3, kind: storage.ErrUnique,
		},
		{
			name:    "foreign key in the middle",
			batch:   []storage.Stmt{insertUser("u-c"), insertAgent("a-c", "no-such-user"), insertUser("u-d")},
			failing: 1, kind: storage.ErrForeignKey,
		},
		{
			name: "NOT NULL after an update",
			batch: []storage.Stmt{insertUser("u-e"), stmt("UPDATE kavach_users SET name = ? WHERE id = ?", "changed", "u-e"),
				stmt("INSERT INTO kavach_users (id, email, created_at, updated_at) VALUES (?, ?, ?, ?)", "u-f", nil, int64(1), int64(1))},
			failing: 2, kind: storage.ErrConstraint,
		},
		{
			name:    "unknown table",
			batch:   []storage.Stmt{insertUser("u-g"), stmt("INSERT INTO st_no_such_table (id) VALUES (?)", "x")},
			failing: 1,
		},
	}
	for _, c := range cases {
		_, err := db.Exec(ctx(t), c.batch...)
		if err == nil {
			t.Errorf("%s: batch succeeded", c.name)
			continue
		}
		checkOneLine(t, err)
		var se *storage.StmtError
		if !errors.As(err, &se) {
			t.Errorf("%s: error %v is not a *storage.StmtError", c.name, err)
		} else if se.Index != c.failing {
			t.Errorf("%s: error names statement %d, want %d: %v", c.name, se.Index, c.failing, err)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("statement %d", c.failing)) {
			t.Errorf("%s: message %q does not name statement %d", c.name, err, c.failing)
		}
		if c.kind != nil && !errors.Is(err, c.kind) {
			t.Errorf("%s: errors.Is(err, %v) is false: %v", c.name, c.kind, err)
		}
	}
	// Nothing of any failed batch is visible.
	if n := count(t, db, "kavach_users"); n != 0 {
		t.Errorf("%d users exist after only failed batches, want 0", n)
	}
	if n := count(t, db, "kavach_agents"); n != 0 {
		t.Errorf("%d agents exist after only failed batches, want 0", n)
	}
	// The handle stays usable after failures, and a good batch applies entirely.
	exec(t, db, insertUser("u-a"), insertAgent("a-a", "u-a"))
	if n := count(t, db, "kavach_agents"); n != 1 {
		t.Errorf("%d agents after a good batch, want 1", n)
	}
}

func testReadOwnWrites(t *testing.T, b Backend) {
	db := migrated(t, b)
	res := exec(t, db,
		insertUser(userID),
		stmt("SELECT COUNT(*) FROM kavach_users WHERE id = ?", userID),
		stmt("UPDATE kavach_users SET name = ? WHERE id = ?", "Ada", userID),
		stmt("SELECT name FROM kavach_users WHERE id = ?", userID),
		stmt("DELETE FROM kavach_users WHERE id = ?", userID),
		stmt("SELECT COUNT(*) FROM kavach_users"),
	)
	if res[0].RowsAffected != 1 || res[2].RowsAffected != 1 || res[4].RowsAffected != 1 {
		t.Errorf("rows affected: insert %d, update %d, delete %d; want 1 each", res[0].RowsAffected, res[2].RowsAffected, res[4].RowsAffected)
	}
	if fmt.Sprint(res[1].Rows, res[3].Rows, res[5].Rows) != "[[1]] [[Ada]] [[0]]" {
		t.Errorf("reads inside the batch saw %v %v %v, want [[1]] [[Ada]] [[0]]", res[1].Rows, res[3].Rows, res[5].Rows)
	}
}

func testLargeBatch(t *testing.T, b Backend) {
	db := migrated(t, b)
	const n = 300
	batch := []storage.Stmt{insertUser(userID)}
	for i := range n {
		batch = append(batch, stmt("INSERT INTO kavach_sessions (id, user_id, expires_at, created_at) VALUES (?, ?, ?, ?)",
			fmt.Sprintf("s-%04d", i), userID, int64(i), int64(1)))
	}
	batch = append(batch, stmt("SELECT COUNT(*), SUM(expires_at) FROM kavach_sessions"))
	res := exec(t, db, batch...)
	if got := fmt.Sprint(res[n+1].Rows); got != fmt.Sprintf("[[%d %d]]", n, n*(n-1)/2) {
		t.Errorf("after %d inserts in one batch: %s", n, got)
	}
	// The same batch again fails on its second statement, and rolls back completely.
	batch[0] = stmt("INSERT INTO kavach_sessions (id, user_id, expires_at, created_at) VALUES (?, ?, ?, ?)", "s-new", userID, int64(0), int64(1))
	_, err := db.Exec(ctx(t), batch...)
	var se *storage.StmtError
	if !errors.As(err, &se) || se.Index != 1 || !errors.Is(err, storage.ErrUnique) {
		t.Errorf("repeating the inserts: %v; want a unique violation at statement 1", err)
	}
	if n2 := count(t, db, "kavach_sessions"); n2 != n {
		t.Errorf("%d sessions after the failed batch, want %d", n2, n)
	}
}

func testBadInput(t *testing.T, b Backend) {
	db := migrated(t, b)
	type weird struct{ X int }
	cases := []struct {
		name string
		s    storage.Stmt
	}{
		{"too few arguments", stmt("SELECT id FROM kavach_users WHERE id = ? AND email = ?", "x")},
		{"too many arguments", stmt("SELECT id FROM kavach_users WHERE id = ?", "x", "y")},
		{"unsupported argument type", stmt("SELECT id FROM kavach_users WHERE id = ?", weird{1})},
		{"syntax error", stmt("SELEKT 1")},
		{"empty statement", stmt("")},
		{"two statements in one string", stmt("INSERT INTO kavach_users (id, email, created_at, updated_at) VALUES ('x', 'x', 1, 1); DELETE FROM kavach_users")},
		{"unknown column", stmt("SELECT no_such_column FROM kavach_users")},
	}
	for _, c := range cases {
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("%s: Exec panicked: %v", c.name, p)
				}
			}()
			_, err := db.Exec(ctx(t), insertUser("u-bad"), c.s)
			if err == nil {
				t.Errorf("%s: no error", c.name)
				return
			}
			checkOneLine(t, err)
			var se *storage.StmtError
			if !errors.As(err, &se) || se.Index != 1 {
				t.Errorf("%s: %v does not name statement 1", c.name, err)
			}
		}()
	}
	if n := count(t, db, "kavach_users"); n != 0 {
		t.Errorf("%d users after only failed batches (was the two-statement string half run?), want 0", n)
	}
	// An empty batch does nothing; a cancelled context fails.
	if res, err := db.Exec(ctx(t)); err != nil || len(res) != 0 {
		t.Errorf("empty batch: %v, %v", res, err)
	}
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := db.Exec(c, stmt("SELECT 1")); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v, want context.Canceled", err)
	}
}

func testClosed(t *testing.T, b Backend) {
	d := b.New(t)
	db, err := storage.Open(ctx(t), d.Config)
	if err != nil {
		t.Fatal(err)
	}
	exec(t, db, stmt("SELECT 1"))
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := db.Exec(ctx(t), stmt("SELECT 1")); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Exec after Close: %v, want storage.ErrClosed", err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// testLiteralsAndComments: a question mark inside a string literal or a comment is not a
// placeholder, and a statement may end with a semicolon.
func testLiteralsAndComments(t *testing.T, b Backend) {
	db := b.Open(t)
	d := db.Dialect()
	res := exec(t, db,
		stmt("SELECT '?' AS q, ? AS v, 'it''s ?' AS e"+d.FromDual(), "x"),
		stmt("SELECT ? AS v /* ? */"+d.FromDual()+" -- ?\n", "y"),
		stmt("SELECT 1 AS one"+d.FromDual()+";"),
		stmt("SELECT 2 AS two"+d.FromDual()+" -- trailing comment"),
	)
	if got := fmt.Sprint(res[0].Rows, res[1].Rows, res[2].Rows, res[3].Rows); got != "[[? x it's ?]] [[y]] [[1]] [[2]]" {
		t.Errorf("got %s", got)
	}
	if d != storage.SQLite {
		return
	}
	// A trigger's body holds semicolons and is still one statement, up to END and its semicolon
	// (a CASE … END inside it does not end it). Nothing after that may follow.
	exec(t, db,
		stmt("CREATE TABLE t_log (n INTEGER)"),
		stmt("CREATE VIEW v_in AS SELECT NULL AS n WHERE 0"),
		stmt("CREATE TRIGGER v_in_insert INSTEAD OF INSERT ON v_in BEGIN INSERT INTO t_log VALUES (CASE WHEN NEW.n > 0 THEN NEW.n END); "+
			"INSERT INTO t_log SELECT NEW.n * 10 WHERE NEW.n <> ';'; END;"),
		stmt("INSERT INTO v_in (n) VALUES (?)", int64(4)))
	if got := fmt.Sprint(exec(t, db, stmt("SELECT n FROM t_log ORDER BY n"))[0].Rows); got != "[[4] [40]]" {
		t.Errorf("trigger wrote %s", got)
	}
	if _, err := db.Exec(ctx(t), stmt("CREATE TRIGGER t_log_insert AFTER INSERT ON t_log BEGIN SELECT 1; END; DELETE FROM t_log")); err == nil {
		t.Error("a statement after a trigger's END ran in the same Stmt")
	}
	if got := fmt.Sprint(exec(t, db, stmt("SELECT count(*) FROM t_log"))[0].Rows); got != "[[2]]" {
		t.Errorf("after the refused Stmt the table holds %s rows", got)
	}
}
