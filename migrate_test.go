package kavach_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kavachdev/kavach"
	"github.com/kavachdev/kavach/storage"
	"github.com/kavachdev/kavach/storage/storagetest"
	"github.com/kavachdev/kavach/storage/storagetest/testdb"
)

// testdata/schema-v1.sql is schema.sql as Kavach first shipped it (schema version 1). A database
// created by that version, with agents and audit entries in it, is upgraded by New: its entries
// stay findable by agent and by user, in order, and new entries join them.
func TestUpgradeFromSchemaV1KeepsEveryAuditEntryFindable(t *testing.T) {
	src, err := os.ReadFile("testdata/schema-v1.sql")
	if err != nil {
		t.Fatal(err)
	}
	v1, err := storage.ParseSchema(string(src))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range testdb.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db := b.Open(t)
			var stmts []storage.Stmt
			for _, ddl := range v1.DDL(db.Dialect()) {
				stmts = append(stmts, storageStmt(ddl))
			}
			stmts = append(stmts, storageStmt("INSERT INTO kavach_schema_version (version, applied_at) VALUES (1, 1)"))
			for _, u := range []string{"alice", "bob"} {
				stmts = append(stmts, storageStmt("INSERT INTO kavach_users (id, email, created_at, updated_at) VALUES (?, ?, 1, 1)", u, u+"@example.test"))
			}
			for _, a := range []struct{ id, owner string }{{"a1", "alice"}, {"a2", "alice"}, {"b1", "bob"}} {
				stmts = append(stmts, storageStmt("INSERT INTO kavach_agents (id, owner_id, name, type, status, token_hash, token_prefix, created_at, updated_at, version) "+
					"VALUES (?, ?, ?, 'autonomous', 'active', ?, 'kv_x', 1, 1, 1)", a.id, a.owner, "agent "+a.id, "hash-"+a.id))
				stmts = append(stmts, storageStmt("INSERT INTO kavach_permissions (id, agent_id, resource, actions, created_at) VALUES (?, ?, '*', '[\"*\"]', 1)", "p-"+a.id, a.id))
			}
			// Entries of v1, recorded out of time order as a v1 node could have.
			base := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).Unix()
			entries := []struct {
				id, agent, user string
				at              int64
			}{
				{"e1", "a1", "alice", 10}, {"e2", "a2", "alice", 20}, {"e3", "a1", "alice", 5}, {"e4", "b1", "bob", 30}, {"e5", "a1", "alice", 40}, {"e6", "a1", "alice", 40},
			}
			for _, e := range entries {
				stmts = append(stmts, storageStmt("INSERT INTO kavach_audit_logs (id, agent_id, user_id, action, resource, parameters, result, duration_ms, timestamp) "+
					"VALUES (?, ?, ?, 'read', ?, '{}', 'allowed', 0, ?)", e.id, e.agent, e.user, "r:"+e.id, base+e.at))
			}
			if _, err := db.Exec(ctx, stmts...); err != nil {
				t.Fatal(err)
			}

			now := time.Unix(base+100, 0)
			k, err := kavach.New(ctx, kavach.Config{DB: db, Clock: func() time.Time { return now }})
			if err != nil {
				t.Fatalf("upgrading a v1 database: %v", err)
			}
			defer k.Close()
			res := must[[]storage.Result](t)(db.Exec(ctx, storageStmt("SELECT MAX(version) FROM kavach_schema_version")))
			if v := res[0].Rows[0][0]; v != int64(len(kavach.Migrations)) {
				t.Errorf("schema version %v after New, want %d", v, len(kavach.Migrations))
			}
			ids := func(f kavach.AuditFilter) string {
				var out []string
				for _, e := range must[[]kavach.AuditEntry](t)(k.Audit.Query(ctx, f)) {
					out = append(out, e.ID)
				}
				return strings.Join(out, " ")
			}
			if got := ids(kavach.AuditFilter{AgentID: "a1"}); got != "e6 e5 e1 e3" {
				t.Errorf("a1's entries after the upgrade: %q, want e6 e5 e1 e3", got)
			}
			if got := ids(kavach.AuditFilter{UserID: "alice"}); got != "e6 e5 e2 e1 e3" {
				t.Errorf("alice's entries after the upgrade: %q, want e6 e5 e2 e1 e3", got)
			}
			if got := ids(kavach.AuditFilter{AgentID: "a1", Since: time.Unix(base+10, 0)}); got != "e6 e5 e1" {
				t.Errorf("a1's entries since +10s: %q", got)
			}
			d, err := k.Authorize(ctx, "a1", kavach.Request{Action: "read", Resource: "r:new"})
			if err != nil || !d.Allowed {
				t.Fatalf("a decision after the upgrade: %+v %v", d, err)
			}
			if got := ids(kavach.AuditFilter{AgentID: "a1"}); got != d.AuditID+" e6 e5 e1 e3" {
				t.Errorf("a1's entries after a new decision: %q", got)
			}
			if got := ids(kavach.AuditFilter{UserID: "alice", Limit: 2}); got != d.AuditID+" e6" {
				t.Errorf("alice's newest two: %q", got)
			}
			if got := ids(kavach.AuditFilter{}); !strings.HasPrefix(got, d.AuditID+" ") || len(strings.Fields(got)) != 7 {
				t.Errorf("all entries: %q", got)
			}
			// Audit rows no longer reference agents (where the dialect could drop the keys).
			if db.Dialect() != storage.SQLite {
				if _, err := db.Exec(ctx, storageStmt("INSERT INTO kavach_audit_logs (id, agent_id, user_id, action, resource, result, duration_ms, timestamp) "+
					"VALUES ('orphan', 'gone', 'gone', 'read', 'r', 'allowed', 0, 1)")); err != nil {
					t.Errorf("an entry of a deleted agent: %v", err)
				}
			}
			// The upgraded database is the one schema.sql makes, except that on SQLite the audit
			// rows' old foreign keys stay (migration 2).
			if db.Dialect() != storage.SQLite {
				storagetest.CheckSchema(t, db, must[*storage.Schema](t)(kavach.Schema()))
			}
			// A second start finds nothing to do.
			k2 := must[*kavach.Kavach](t)(kavach.New(ctx, kavach.Config{DB: db}))
			k2.Close()
			res = must[[]storage.Result](t)(db.Exec(ctx, storageStmt("SELECT version FROM kavach_schema_version ORDER BY version")))
			if got := fmt.Sprint(res[0].Rows); got != fmt.Sprint(versionRows(len(kavach.Migrations))) {
				t.Errorf("version rows %s", got)
			}
		})
	}
}

func versionRows(n int) [][]any {
	var out [][]any
	for v := 1; v <= n; v++ {
		out = append(out, []any{int64(v)})
	}
	return out
}

// A view and its triggers are created by schema.sql's DDL on a new database and by a migration on
// an old one, and CREATE … IF NOT EXISTS leaves an existing trigger as it is. So every statement
// of a view's current DDL must appear, word for word, in some migration: a changed trigger needs a
// new migration that drops the old one and creates it again.
func TestMigrationsMatchAuditBatches(t *testing.T) {
	s, err := kavach.Schema()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Views) == 0 {
		t.Fatal("the schema has no views; this test checks kavach_audit_batches")
	}
	migrated := map[string]int{}
	for _, m := range kavach.Migrations {
		for _, d := range []storage.Dialect{storage.SQLite, storage.Postgres, storage.MySQL} {
			for _, stmt := range m.Stmts(d) {
				migrated[stmt] = m.Version
			}
		}
	}
	for _, v := range s.Views {
		for _, stmt := range v.DDL {
			if _, ok := migrated[stmt]; !ok {
				t.Errorf("view %s: no migration has the statement\n%s\nWrite one that drops what it replaces and creates it.", v.Name, stmt)
			}
		}
	}
}
