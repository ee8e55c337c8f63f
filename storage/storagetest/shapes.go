package storagetest

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kavachdev/kavach/storage"
)

// agentColumns and auditColumns are the core's column lists (agent.go, audit.go); several are
// reserved or special words somewhere (type, version, count, timestamp).
const (
	agentColumns = "id, owner_id, tenant_id, name, type, status, token_hash, token_prefix, expires_at, last_active_at, metadata, created_at, updated_at, version"
	auditColumns = "id, agent_id, user_id, tenant_id, action, resource, parameters, result, reason, duration_ms, tokens_cost, ip, user_agent, timestamp"
)

func testCoreShapes(t *testing.T, b Backend) {
	db := migrated(t, b)
	d := db.Dialect()

	t.Run("InsertOnConflictDoNothing", func(t *testing.T) {
		ins := "INSERT INTO kavach_users (id, email, created_at, updated_at) VALUES (?, ?, ?, ?)" + d.OnConflictDoNothing("id")
		r := exec(t, db, stmt(ins, userID, userID+"@owners.kavach.invalid", int64(10), int64(10)))
		if r[0].RowsAffected != 1 {
			t.Errorf("first insert: RowsAffected %d, want 1", r[0].RowsAffected)
		}
		r = exec(t, db, stmt(ins, userID, "other@owners.kavach.invalid", int64(11), int64(11)),
			stmt("UPDATE kavach_users SET updated_at = updated_at WHERE id = ?", userID))
		if r[0].RowsAffected != 0 {
			t.Errorf("insert of an existing key: RowsAffected %d, want 0 (nothing was inserted)", r[0].RowsAffected)
		}
		if e := one(t, db, "SELECT email FROM kavach_users WHERE id = ?", userID); e != userID+"@owners.kavach.invalid" {
			t.Errorf("the conflicting insert changed the row: email %v", e)
		}
	})

	t.Run("InsertSelectWithLimitAndExistsConditions", func(t *testing.T) {
		exec(t, db, stmt("INSERT INTO kavach_tenants (id, name, slug, created_at, updated_at) VALUES (?, ?, ?, ?, ?)", "t-1", "Tenant", "tenant", int64(1), int64(1)))
		create := func(id string, tenant any, max int64) int64 {
			// agent.go Create: conditional on the owner, the per-owner limit and the tenant.
			sql := "INSERT INTO kavach_agents (id, owner_id, tenant_id, name, type, status, token_hash, token_prefix, expires_at, metadata, created_at, updated_at, version) " +
				"SELECT ?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, 1 FROM kavach_users WHERE id = ?" +
				" AND (SELECT COUNT(*) FROM kavach_agents WHERE owner_id = ? AND status = 'active' AND (expires_at IS NULL OR expires_at > ?)) < ?"
			args := []any{id, userID, tenant, "Agent " + id, "autonomous", "hash-" + id, "kv_" + id[:3], nil, `{"k":"v"}`, int64(20), int64(20), userID, userID, int64(20), max}
			if tenant != nil {
				sql += " AND EXISTS (SELECT 1 FROM kavach_tenants WHERE id = ?)"
				args = append(args, tenant)
			}
			return exec(t, db, stmt("UPDATE kavach_users SET updated_at = updated_at WHERE id = ?", userID), stmt(sql, args...))[1].RowsAffected
		}
		if n := create("a-1", nil, 2); n != 1 {
			t.Errorf("first agent: RowsAffected %d, want 1", n)
		}
		if n := create("a-2", "t-1", 2); n != 1 {
			t.Errorf("second agent, in a tenant: RowsAffected %d, want 1", n)
		}
		if n := create("a-3", nil, 2); n != 0 {
			t.Errorf("third agent over a limit of 2: RowsAffected %d, want 0", n)
		}
		if n := create("a-4", "no-such-tenant", 5); n != 0 {
			t.Errorf("agent in a missing tenant: RowsAffected %d, want 0", n)
		}
		// Permissions the same way (agent.go insertPermission).
		for i, agent := range []string{"a-1", "a-1", "a-2", "a-missing"} {
			r := exec(t, db, stmt("INSERT INTO kavach_permissions (id, agent_id, resource, actions, constraints, created_at) SELECT ?, ?, ?, ?, ?, ? FROM kavach_agents WHERE id = ?",
				fmt.Sprintf("p-%d", i), agent, "mcp:github:*", `["read"]`, nil, int64(20), agent))
			if want := map[bool]int64{true: 0, false: 1}[agent == "a-missing"]; r[0].RowsAffected != want {
				t.Errorf("permission %d for %s: RowsAffected %d, want %d", i, agent, r[0].RowsAffected, want)
			}
		}
	})

	t.Run("ConditionalAuditInsert", func(t *testing.T) {
		// authorize.go auditStmt, conditional form: INSERT … SELECT ?, … FROM kavach_agents
		// WHERE id = ? AND version = ?, with NULLs among the arguments.
		cols := "INSERT INTO kavach_audit_logs (id, agent_id, user_id, tenant_id, action, resource, parameters, result, reason, duration_ms, ip, user_agent, timestamp) "
		ins := func(id string, version int64, ts int64, result string) int64 {
			var reason any
			if result != "allowed" {
				reason = "no permission"
			}
			return exec(t, db, stmt(cols+"SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM kavach_agents WHERE id = ? AND version = ?",
				id, "a-1", userID, nil, "read", "mcp:github:repo", `{"q":1}`, result, reason, int64(3), "127.0.0.1", nil, ts, "a-1", version))[0].RowsAffected
		}
		for i, c := range []struct {
			version, ts int64
			result      string
			want        int64
		}{{1, 100, "allowed", 1}, {1, 100, "denied", 1}, {1, 101, "rate_limited", 1}, {2, 102, "allowed", 0}} {
			if n := ins(fmt.Sprintf("l-%03d", i), c.version, c.ts, c.result); n != c.want {
				t.Errorf("audit row %d (agent version %d): RowsAffected %d, want %d", i, c.version, n, c.want)
			}
		}
		exec(t, db, stmt(cols+"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			"l-100", "a-2", userID, "t-1", "write", "mcp:x", nil, "denied", "nope", int64(0), nil, "ua", int64(99)))
		// audit.go Query and Export: newest first, keyset paging on (timestamp, id).
		res := exec(t, db,
			stmt("SELECT "+auditColumns+" FROM kavach_audit_logs WHERE agent_id = ? ORDER BY timestamp DESC, id DESC LIMIT ? OFFSET ?", "a-1", int64(2), int64(0)),
			stmt("SELECT "+auditColumns+" FROM kavach_audit_logs WHERE (timestamp < ? OR (timestamp = ? AND id < ?)) ORDER BY timestamp DESC, id DESC LIMIT ?",
				int64(100), int64(100), "l-001", int64(10)),
			stmt("SELECT COUNT(*), "+
				"COALESCE(SUM(CASE WHEN result = 'allowed' THEN 1 ELSE 0 END), 0), "+
				"COALESCE(SUM(CASE WHEN result = 'denied' THEN 1 ELSE 0 END), 0), "+
				"COALESCE(SUM(CASE WHEN result = 'rate_limited' THEN 1 ELSE 0 END), 0) "+
				"FROM kavach_audit_logs WHERE timestamp >= ?", int64(0)),
		)
		if res[0].Columns[13] != "timestamp" || len(res[0].Rows) != 2 || res[0].Rows[0][0] != "l-002" || res[0].Rows[1][0] != "l-001" {
			t.Errorf("newest two entries of a-1: %v %v", res[0].Columns, res[0].Rows)
		}
		if r := res[0].Rows[1]; r[3] != nil || r[6] != `{"q":1}` || r[8] != "no permission" || r[9] != int64(3) || r[10] != nil || r[12] != nil || r[13] != int64(100) {
			t.Errorf("entry l-001 reads back as %v", r)
		}
		if got := fmt.Sprint(res[1].Rows); !strings.HasPrefix(got, "[[l-000 ") || len(res[1].Rows) != 2 {
			t.Errorf("page after (100, l-001): %v, want l-000 then l-100", res[1].Rows)
		}
		if got := fmt.Sprint(res[2].Rows); got != "[[4 1 2 1]]" {
			t.Errorf("audit stats: %s, want [[4 1 2 1]]", got)
		}
	})

	if d == storage.SQLite {
		t.Run("ChainedAuditInsertAndWalk", func(t *testing.T) {
			// auditsink.go AuditRow.Stmts on the SQLite family: the row links to its agent's chain
			// head, and the head moves only if the row went in (changes() of the insert).
			ins := "INSERT OR IGNORE INTO kavach_audit_logs (id, agent_id, user_id, tenant_id, action, resource, parameters, result, reason, duration_ms, ip, user_agent, timestamp, prev_id, prev_ts) " +
				"SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, h.last_id, h.last_ts FROM kavach_agents a LEFT JOIN kavach_audit_heads h ON h.agent_id = a.id WHERE a.id = ? AND a.version = ?"
			head := "INSERT INTO kavach_audit_heads (agent_id, last_id, last_ts) SELECT ?, ?, ? WHERE changes() > 0 " +
				"ON CONFLICT (agent_id) DO UPDATE SET last_id = excluded.last_id, last_ts = MAX(excluded.last_ts, kavach_audit_heads.last_ts)"
			record := func(id string, version, ts int64) []storage.Result {
				return exec(t, db,
					stmt(ins, id, "a-1", userID, nil, "read", "r", "{}", "allowed", nil, int64(0), nil, nil, ts, "a-1", version),
					stmt(head, "a-1", id, ts))
			}
			// c-1 at 300, c-2 at 200 (recorded late), c-3 refused (stale version), c-4 at 250.
			for _, c := range []struct {
				id          string
				version, ts int64
				want        int64
			}{{"c-1", 1, 300, 1}, {"c-2", 1, 200, 1}, {"c-3", 7, 400, 0}, {"c-4", 1, 250, 1}} {
				if r := record(c.id, c.version, c.ts); r[0].RowsAffected != c.want || r[1].RowsAffected != c.want {
					t.Errorf("%s: RowsAffected %d and %d, want %d", c.id, r[0].RowsAffected, r[1].RowsAffected, c.want)
				}
			}
			res := exec(t, db,
				stmt("SELECT last_id, last_ts FROM kavach_audit_heads WHERE agent_id = ?", "a-1"),
				stmt("SELECT id, prev_id, prev_ts FROM kavach_audit_logs WHERE id IN ('c-1', 'c-2', 'c-3', 'c-4') ORDER BY id"),
				// audit.go chainStmt: the walk from the head, not past a link older than 260.
				stmt("WITH RECURSIVE chain AS (SELECT l.*, MAX(l.timestamp, COALESCE(l.prev_ts, 0)) AS chain_ts FROM kavach_audit_heads AS h "+
					"CROSS JOIN kavach_audit_logs AS l ON l.id = h.last_id WHERE h.agent_id = ? UNION ALL "+
					"SELECT l.*, MAX(l.timestamp, COALESCE(l.prev_ts, 0)) FROM chain CROSS JOIN kavach_audit_logs AS l ON l.id = chain.prev_id WHERE chain.prev_ts >= ?) "+
					"SELECT id, timestamp, chain_ts FROM chain WHERE timestamp >= ? LIMIT ?", "a-1", int64(260), int64(260), int64(10)),
			)
			if got := fmt.Sprint(res[0].Rows); got != "[[c-4 300]]" {
				t.Errorf("head %s, want [[c-4 300]] (chain time never decreases)", got)
			}
			if got := fmt.Sprint(res[1].Rows); got != "[[c-1 <nil> <nil>] [c-2 c-1 300] [c-4 c-2 300]]" {
				t.Errorf("links %s", got)
			}
			if got := fmt.Sprint(res[2].Rows); got != "[[c-1 300 300]]" {
				t.Errorf("walk since 260: %s, want [[c-1 300 300]]", got)
			}
		})
	}

	t.Run("ListWithDerivedTablePage", func(t *testing.T) {
		// agent.go List: a page of agents, and the permissions of exactly that page through a
		// derived table with LIMIT/OFFSET.
		cond := " WHERE owner_id = ? AND status = 'active' AND (expires_at IS NULL OR expires_at > ?)"
		args := []any{userID, int64(20)}
		for _, p := range []struct {
			limit, offset int64
			agents, perms string
		}{
			{1, 0, "[a-1]", "[[a-1 p-0] [a-1 p-1]]"},
			{1, 1, "[a-2]", "[[a-2 p-2]]"},
			{10, 0, "[a-1 a-2]", "[[a-1 p-0] [a-1 p-1] [a-2 p-2]]"},
			{10, 5, "[]", "[]"},
		} {
			pageArgs := append(append([]any{}, args...), p.limit, p.offset)
			res := exec(t, db,
				stmt("SELECT "+agentColumns+" FROM kavach_agents"+cond+" ORDER BY id LIMIT ? OFFSET ?", pageArgs...),
				stmt("SELECT p.agent_id, p.id FROM kavach_permissions p JOIN (SELECT id FROM kavach_agents"+cond+
					" ORDER BY id LIMIT ? OFFSET ?) a ON p.agent_id = a.id ORDER BY p.agent_id, p.id", pageArgs...),
			)
			var ids []string
			for _, r := range res[0].Rows {
				ids = append(ids, fmt.Sprint(r[0]))
			}
			if fmt.Sprint(ids) != p.agents && !(p.agents == "[]" && len(ids) == 0) {
				t.Errorf("page limit %d offset %d: agents %v, want %s", p.limit, p.offset, ids, p.agents)
			}
			if got := fmt.Sprint(res[1].Rows); got != p.perms {
				t.Errorf("page limit %d offset %d: permissions %s, want %s", p.limit, p.offset, got, p.perms)
			}
		}
		r := exec(t, db, stmt("SELECT "+agentColumns+" FROM kavach_agents WHERE id = ?", "a-2"))[0]
		if fmt.Sprint(r.Rows) != "[[a-2 u-1 t-1 Agent a-2 autonomous active hash-a-2 kv_a-2 <nil> <nil> {\"k\":\"v\"} 20 20 1]]" {
			t.Errorf("agent a-2 reads back as %v", r.Rows)
		}
		if r.Columns[4] != "type" || r.Columns[13] != "version" {
			t.Errorf("columns %v", r.Columns)
		}
	})

	t.Run("RateLimitUpsert", func(t *testing.T) {
		for i := range 4 {
			ok, err := consumeRate(t, db, fmt.Sprintf("rl-%d", i), "a-1", "tool:x", 3, 1_800_000_000+int64(i))
			if err != nil {
				t.Fatal(err)
			}
			if want := i < 3; ok != want {
				t.Errorf("call %d under a cap of 3: allowed %v, want %v", i+1, ok, want)
			}
		}
		r := exec(t, db, stmt("SELECT count, window_start FROM kavach_rate_limits WHERE agent_id = ? AND resource = ?", "a-1", "tool:x"))[0]
		if fmt.Sprint(r.Rows) != "[[3 1800000000]]" {
			t.Errorf("rate limit rows %v, want one bucket with count 3", r.Rows)
		}
		// An hour later the old bucket is deleted by the same batch and counting starts again.
		ok, err := consumeRate(t, db, "rl-later", "a-1", "tool:x", 3, 1_800_000_000+3601)
		if err != nil || !ok {
			t.Errorf("call an hour later: %v, %v", ok, err)
		}
		if n := one(t, db, "SELECT COUNT(*) FROM kavach_rate_limits WHERE agent_id = ?", "a-1"); n != int64(1) {
			t.Errorf("%v buckets after the old one expired, want 1", n)
		}
	})

	t.Run("InsertSelectWhereNotExistsOnItself", func(t *testing.T) {
		// apikey.go bootstrap: insert the first admin key only if there is none.
		ins := "INSERT INTO kavach_api_keys (id, name, key_hash, key_prefix, created_at) SELECT ?, 'admin', ?, ?, ?" + d.FromDual() +
			" WHERE NOT EXISTS (SELECT 1 FROM kavach_api_keys)"
		if n := exec(t, db, stmt(ins, "k-1", "hash-1", "kv_1", int64(5)))[0].RowsAffected; n != 1 {
			t.Errorf("bootstrap into an empty table: RowsAffected %d, want 1", n)
		}
		if n := exec(t, db, stmt(ins, "k-2", "hash-2", "kv_2", int64(6)))[0].RowsAffected; n != 0 {
			t.Errorf("second bootstrap: RowsAffected %d, want 0", n)
		}
		r := exec(t, db,
			stmt("UPDATE kavach_api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", int64(7), "k-1"),
			stmt("SELECT key_hash FROM kavach_api_keys WHERE id = ?", "k-1"),
			stmt("SELECT id, name, key_prefix, created_at, revoked_at FROM kavach_api_keys ORDER BY id"),
		)
		if r[0].RowsAffected != 1 || fmt.Sprint(r[1].Rows, r[2].Rows) != "[[hash-1]] [[k-1 admin kv_1 5 7]]" {
			t.Errorf("revoking the key: %d, %v %v", r[0].RowsAffected, r[1].Rows, r[2].Rows)
		}
	})

	t.Run("SelectStarWhereFalseGivesColumns", func(t *testing.T) {
		// storage.Verify relies on it.
		s := schema(t)
		var stmts []storage.Stmt
		for _, tb := range s.Tables {
			stmts = append(stmts, stmt("SELECT * FROM "+tb.Name+" WHERE 1 = 0"))
		}
		res := exec(t, db, stmts...)
		for i, tb := range s.Tables {
			got := make([]string, len(res[i].Columns))
			for j, c := range res[i].Columns {
				got[j] = strings.ToLower(c)
			}
			if fmt.Sprint(got) != fmt.Sprint(tb.ColumnNames()) {
				t.Errorf("SELECT * FROM %s WHERE 1 = 0: columns %v, want %v", tb.Name, got, tb.ColumnNames())
			}
			if res[i].Rows == nil || len(res[i].Rows) != 0 {
				t.Errorf("SELECT * FROM %s WHERE 1 = 0: rows %#v", tb.Name, res[i].Rows)
			}
		}
	})

	t.Run("DeleteCascades", func(t *testing.T) {
		r := exec(t, db,
			stmt("DELETE FROM kavach_audit_logs WHERE agent_id = ?", "a-1"),
			stmt("DELETE FROM kavach_agents WHERE id = ?", "a-1"),
			stmt("SELECT COUNT(*) FROM kavach_permissions WHERE agent_id = ?", "a-1"),
			stmt("SELECT COUNT(*) FROM kavach_rate_limits WHERE agent_id = ?", "a-1"),
		)
		if r[1].RowsAffected != 1 || fmt.Sprint(r[2].Rows, r[3].Rows) != "[[0]] [[0]]" {
			t.Errorf("deleting an agent: RowsAffected %d, permissions and rate limits left %v %v", r[1].RowsAffected, r[2].Rows, r[3].Rows)
		}
		// A parent with children that do not cascade cannot go.
		_, err := db.Exec(ctx(t), stmt("DELETE FROM kavach_users WHERE id = ?", userID))
		if !errors.Is(err, storage.ErrForeignKey) {
			t.Errorf("deleting a user who owns an agent: %v, want storage.ErrForeignKey", err)
		}
	})
}

func testErrorClassification(t *testing.T, b Backend) {
	db := migrated(t, b)
	exec(t, db, insertUser(userID), insertAgent(agentID, userID))
	cases := []struct {
		name string
		s    storage.Stmt
		kind error
	}{
		{"duplicate primary key", insertUser(userID), storage.ErrUnique},
		{"duplicate unique column", stmt("INSERT INTO kavach_users (id, email, created_at, updated_at) VALUES (?, ?, ?, ?)", "u-2", userID+"@example.test", int64(1), int64(1)), storage.ErrUnique},
		{"duplicate in a unique index", stmt("INSERT INTO kavach_agents (id, owner_id, name, type, status, token_hash, token_prefix, created_at, updated_at, version) "+
			"VALUES (?, ?, 'n', 'autonomous', 'active', ?, 'kv_abc', 1, 1, 1)", "a-2", userID, "hash-"+agentID), storage.ErrUnique},
		{"missing parent", insertAgent("a-3", "no-such-user"), storage.ErrForeignKey},
		{"parent with children", stmt("DELETE FROM kavach_users WHERE id = ?", userID), storage.ErrForeignKey},
		{"NULL in a NOT NULL column", stmt("UPDATE kavach_agents SET name = ? WHERE id = ?", nil, agentID), storage.ErrConstraint},
	}
	for _, c := range cases {
		_, err := db.Exec(ctx(t), c.s)
		if !errors.Is(err, c.kind) {
			t.Errorf("%s: %v; want errors.Is(err, %v)", c.name, err, c.kind)
			continue
		}
		for _, other := range []error{storage.ErrUnique, storage.ErrForeignKey, storage.ErrConstraint, storage.ErrUnavailable, storage.ErrClosed} {
			if other != c.kind && errors.Is(err, other) {
				t.Errorf("%s: %v is also classified as %v", c.name, err, other)
			}
		}
		checkOneLine(t, err)
	}
	if n := count(t, db, "kavach_agents"); n != 1 {
		t.Errorf("%d agents after the failed statements, want 1", n)
	}
}
