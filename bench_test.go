package kavach_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kavachdev/kavach"
	"github.com/kavachdev/kavach/storage"
	_ "github.com/kavachdev/kavach/storage/libsql"
	"github.com/kavachdev/kavach/storage/storagetest"
	"github.com/kavachdev/kavach/storage/storagetest/testdb"
)

// benchFixture is the workload of the core issue: an embedded SQLite file in WAL mode, 1,000
// agents with 5 permissions each, every decision durably audited.
type benchFixture struct {
	k      *kavach.Kavach
	ids    []string
	tokens []string
}

func newBenchFixture(b *testing.B) *benchFixture {
	return newBenchFixtureOn(b, kavach.Database{Provider: "sqlite", URL: b.TempDir() + "/bench.db"})
}

func newBenchFixtureOn(b testing.TB, db kavach.Database) *benchFixture {
	b.Helper()
	ctx := context.Background()
	k, err := kavach.New(ctx, kavach.Config{
		Database: db,
		Agents:   kavach.AgentsConfig{MaxPerUser: -1, TokenExpiry: "never"},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { k.Close() })
	f := &benchFixture{k: k}
	perms := []kavach.Permission{
		{Resource: "mcp:slack:*", Actions: []string{"read", "write"}},
		{Resource: "mcp:jira:issues", Actions: []string{"read"}},
		{Resource: "db:analytics:*:read", Actions: []string{"query"}},
		{Resource: "fs:tmp:*", Actions: []string{"read", "write", "delete"}},
		{Resource: "mcp:github:*", Actions: []string{"read"}},
	}
	f.ids, f.tokens = make([]string, 1000), make([]string, 1000)
	var wg sync.WaitGroup
	for w := range 8 { // creating concurrently keeps set-up short on server backends
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 1000; i += 8 {
				a, err := k.Agents.Create(ctx, kavach.NewAgent{OwnerID: fmt.Sprintf("owner_%d", i%100), Name: fmt.Sprintf("agent-%d", i), Type: kavach.Autonomous, Permissions: perms})
				if err != nil {
					b.Error(err)
					return
				}
				f.ids[i], f.tokens[i] = a.ID, a.Token
			}
		}()
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return f
}

// warm makes one decision per agent, so that a benchmark measures a running node: agents in the
// cache and connections open. Without it, the first timed round of a parallel benchmark on a
// server backend also read 1,000 agents over the network, and since that round sets b.N for the
// next, the figure printed could be a fifth of the steady rate.
func (f *benchFixture) warm(b testing.TB) {
	b.Helper()
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(f.ids); i += 16 {
				if d, err := f.k.Authorize(context.Background(), f.ids[i], allowReq); err != nil || !d.Allowed {
					b.Errorf("warming up: %+v %v", d, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
}

var (
	allowReq = kavach.Request{Action: "read", Resource: "mcp:github:repos"}
	denyReq  = kavach.Request{Action: "write", Resource: "mcp:github:repos"}
)

func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
	}
}

// BenchmarkAuthorizeSequential: one caller, alternating allowed and denied decisions over all
// agents. Reports the median latency.
func BenchmarkAuthorizeSequential(b *testing.B) {
	f := newBenchFixture(b)
	ctx := context.Background()
	for _, byToken := range []bool{false, true} {
		name := "by-id"
		if byToken {
			name = "by-token"
		}
		b.Run(name, func(b *testing.B) {
			lat := make([]time.Duration, 0, 1<<16)
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				req := allowReq
				if i%2 == 1 {
					req = denyReq
				}
				t0 := time.Now()
				var d kavach.Decision
				var err error
				if byToken {
					d, err = f.k.AuthorizeToken(ctx, f.tokens[i%1000], req)
				} else {
					d, err = f.k.Authorize(ctx, f.ids[i%1000], req)
				}
				el := time.Since(t0)
				if err != nil || d.Allowed != (i%2 == 0) || d.AuditID == "" {
					b.Fatalf("decision %d: %+v %v", i, d, err)
				}
				if len(lat) < cap(lat) {
					lat = append(lat, el)
				}
				i++
			}
			reportLatency(b, lat)
		})
	}
}

// BenchmarkAuthorizeParallel: many goroutines deciding at once (run with -cpu 2 for
// GOMAXPROCS=2). Reports decisions per second.
func BenchmarkAuthorizeParallel(b *testing.B) {
	f := newBenchFixture(b)
	f.warm(b)
	b.Run("sqlite-file", func(b *testing.B) { runParallelAuthorize(b, f, 64) })
}

// BenchmarkAuthorizeParallelBackends: 32 concurrent callers (16 per processor at -cpu 2), every
// decision durably audited, on each server backend: sqld over HTTP and WebSocket, Postgres and
// MariaDB, all on loopback.
//
// The fixtures are made here, in the parent, which runs once: a parallel benchmark's function
// runs several times with growing b.N.
func BenchmarkAuthorizeParallelBackends(b *testing.B) {
	for _, be := range testdb.Backends() {
		if be.Embedded {
			continue // measured by BenchmarkAuthorizeParallel
		}
		c := be.New(b).Config
		f := newBenchFixtureOn(b, kavach.Database{Provider: c.Provider, URL: c.URL, AuthToken: c.AuthToken, MaxOpenConns: 16})
		f.warm(b)
		b.Run(be.Name, func(b *testing.B) { runParallelAuthorize(b, f, 32/runtime.GOMAXPROCS(0)) })
	}
}

func runParallelAuthorize(b *testing.B, f *benchFixture, perProc int) {
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(perProc)
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		i := int(n.Add(1)) * 7919
		for pb.Next() {
			req := allowReq
			if i%2 == 1 {
				req = denyReq
			}
			d, err := f.k.Authorize(ctx, f.ids[i%1000], req)
			if err != nil || d.AuditID == "" {
				b.Errorf("%+v %v", d, err)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "decisions/s")
	b.ReportMetric(float64(perProc*runtime.GOMAXPROCS(0)), "callers")
}

// BenchmarkAuditQuery: the last 100 entries of one agent among 1,000,000 rows. The rows are
// generated inside SQLite in one statement (v7-shaped ids in time order, 1,000 agents, 10 per
// second), so the setup takes seconds rather than minutes.
func BenchmarkAuditQuery(b *testing.B) {
	f := newBenchFixture(b)
	fillAudit(b, f)
	benchAuditQuery(b, f)
}

// BenchmarkAuditQueryBackends: the same query on Postgres and MariaDB.
func BenchmarkAuditQueryBackends(b *testing.B) {
	for _, be := range []storagetest.Backend{testdb.Postgres(), testdb.MySQL()} {
		b.Run(be.Name, func(b *testing.B) {
			c := be.New(b).Config
			f := newBenchFixtureOn(b, kavach.Database{Provider: c.Provider, URL: c.URL, AuthToken: c.AuthToken})
			fillAudit(b, f)
			benchAuditQuery(b, f)
		})
	}
}

// benchAuditQuery reads the last 100 entries of one agent after another. A first pass over all
// the agents, untimed, is reported as cold-µs/query: it reads pages the database's cache does not
// hold yet. The timed queries are the steady state of a server whose recent log is cached.
func benchAuditQuery(b *testing.B, f *benchFixture) {
	ctx := context.Background()
	query := func(i int) {
		entries, err := f.k.Audit.Query(ctx, kavach.AuditFilter{AgentID: f.ids[i%1000], Limit: 100})
		if err != nil || len(entries) != 100 || entries[0].AgentID != f.ids[i%1000] || entries[99].AgentID != f.ids[i%1000] ||
			!entries[0].Timestamp.After(entries[99].Timestamp) {
			b.Fatalf("%d entries, %v", len(entries), err)
		}
	}
	start := time.Now()
	for i := range 1000 {
		query(i * 7)
	}
	cold := time.Since(start)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		query(i)
		i += 7
	}
	b.ReportMetric(float64(cold.Microseconds())/1000, "cold-µs/query")
}

// fillAudit writes 1,000,000 audit rows inside the database in one statement: v7-shaped ids in
// time order, 1,000 agents, 10 decisions per second, every seventh denied.
func fillAudit(b *testing.B, f *benchFixture) {
	const rows = 1_000_000
	base := time.Now().Add(-rows / 10 * time.Second).Unix()
	cols := "INSERT INTO kavach_audit_logs (id, agent_id, user_id, action, resource, parameters, result, reason, duration_ms, ip, user_agent, timestamp) "
	var st storage.Stmt
	var after []storage.Stmt // run in the same batch, after st
	switch f.k.DB().Dialect() {
	case storage.SQLite:
		// Each agent's rows are chained as the core chains them: row x follows row x - 1000.
		st = storageStmt(`
		WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < ?),
		a(id, owner_id, n) AS (SELECT id, owner_id, row_number() OVER (ORDER BY id) - 1 FROM kavach_agents) `+
			strings.Replace(cols, "timestamp) ", "timestamp, prev_id, prev_ts) ", 1)+`
		SELECT printf('%012x-7000-8000-%012x', (? + c.x / 10) * 1000 + c.x % 10, c.x), a.id, a.owner_id, 'read', 'mcp:github:repos', '{}',
		       CASE WHEN c.x % 7 = 0 THEN 'denied' ELSE 'allowed' END, NULL, 0, '127.0.0.1', 'bench', ? + c.x / 10,
		       CASE WHEN c.x >= 1000 THEN printf('%012x-7000-8000-%012x', (? + (c.x - 1000) / 10) * 1000 + c.x % 10, c.x - 1000) END,
		       CASE WHEN c.x >= 1000 THEN ? + (c.x - 1000) / 10 END
		FROM c JOIN a ON a.n = c.x % 1000`, rows-1, base, base, base, base)
		// The heads come from migration 2's backfill (its links are computed above instead).
		for _, sql := range kavach.Migrations[1].Stmts(storage.SQLite) {
			if strings.HasPrefix(sql, "INSERT INTO kavach_audit_heads") {
				after = append(after, storageStmt(sql))
			}
		}
		if len(after) != 1 {
			b.Fatalf("migration 2 has %d statements that fill kavach_audit_heads, want 1", len(after))
		}
	case storage.Postgres:
		st = storageStmt(cols+`
		SELECT lpad(to_hex((?::bigint + x / 10) * 1000 + x % 10), 12, '0') || '-7000-8000-' || lpad(to_hex(x), 12, '0'), a.id, a.owner_id, 'read', 'mcp:github:repos', '{}',
		       CASE WHEN x % 7 = 0 THEN 'denied' ELSE 'allowed' END, NULL, 0, '127.0.0.1', 'bench', ?::bigint + x / 10
		FROM generate_series(0::bigint, ?::bigint) AS x JOIN (SELECT id, owner_id, row_number() OVER (ORDER BY id) - 1 AS n FROM kavach_agents) a ON a.n = x % 1000`,
			base, base, int64(rows-1))
	case storage.MySQL:
		// Six joined digit tables count to a million (MariaDB limits recursive CTEs to 1,000 rows).
		st = storageStmt(cols+`
		SELECT LOWER(CONCAT(LPAD(HEX((? + c.x DIV 10) * 1000 + c.x % 10), 12, '0'), '-7000-8000-', LPAD(HEX(c.x), 12, '0'))), a.id, a.owner_id, 'read', 'mcp:github:repos', '{}',
		       CASE WHEN c.x % 7 = 0 THEN 'denied' ELSE 'allowed' END, NULL, 0, '127.0.0.1', 'bench', ? + c.x DIV 10
		FROM (SELECT d0.d + 10*d1.d + 100*d2.d + 1000*d3.d + 10000*d4.d + 100000*d5.d AS x
		      FROM `+digits("d0")+` CROSS JOIN `+digits("d1")+` CROSS JOIN `+digits("d2")+` CROSS JOIN `+digits("d3")+` CROSS JOIN `+digits("d4")+` CROSS JOIN `+digits("d5")+`) c
		JOIN (SELECT id, owner_id, ROW_NUMBER() OVER (ORDER BY id) - 1 AS n FROM kavach_agents) a ON a.n = c.x % 1000`, base, base)
	}
	if _, err := f.k.DB().Exec(context.Background(), append([]storage.Stmt{st}, after...)...); err != nil {
		b.Fatal(err)
	}
	if n := auditCount(b, f.k); n != rows {
		b.Fatalf("%d rows", n)
	}
}

func digits(name string) string {
	return "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9) " + name
}
