package kavach_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kavachdev/kavach"
	_ "github.com/kavachdev/kavach/storage/libsql"
)

// benchFixture is the workload of the core issue: an embedded SQLite file in WAL mode, 1,000
// agents with 5 permissions each, every decision durably audited.
type benchFixture struct {
	k      *kavach.Kavach
	ids    []string
	tokens []string
}

func newBenchFixture(b *testing.B) *benchFixture {
	b.Helper()
	ctx := context.Background()
	k, err := kavach.New(ctx, kavach.Config{
		Database: kavach.Database{Provider: "sqlite", URL: b.TempDir() + "/bench.db"},
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
	for i := range 1000 {
		a, err := k.Agents.Create(ctx, kavach.NewAgent{OwnerID: fmt.Sprintf("owner_%d", i%100), Name: fmt.Sprintf("agent-%d", i), Type: kavach.Autonomous, Permissions: perms})
		if err != nil {
			b.Fatal(err)
		}
		f.ids = append(f.ids, a.ID)
		f.tokens = append(f.tokens, a.Token)
	}
	return f
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
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(64)
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
	b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "procs")
}

// BenchmarkAuditQuery: the last 100 entries of one agent among 1,000,000 rows. The rows are
// generated inside SQLite in one statement (v7-shaped ids in time order, 1,000 agents, 10 per
// second), so the setup takes seconds rather than minutes.
func BenchmarkAuditQuery(b *testing.B) {
	f := newBenchFixture(b)
	ctx := context.Background()
	const rows = 1_000_000
	base := time.Now().Add(-rows / 10 * time.Second).Unix()
	_, err := f.k.DB().Exec(ctx, storageStmt(`
		WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < ?),
		a(id, owner_id, n) AS (SELECT id, owner_id, row_number() OVER (ORDER BY id) - 1 FROM kavach_agents)
		INSERT INTO kavach_audit_logs (id, agent_id, user_id, action, resource, parameters, result, reason, duration_ms, ip, user_agent, timestamp)
		SELECT printf('%012x-7000-8000-%012x', (? + c.x / 10) * 1000 + c.x % 10, c.x), a.id, a.owner_id, 'read', 'mcp:github:repos', '{}',
		       CASE WHEN c.x % 7 = 0 THEN 'denied' ELSE 'allowed' END, NULL, 0, '127.0.0.1', 'bench', ? + c.x / 10
		FROM c JOIN a ON a.n = c.x % 1000`, rows-1, base, base))
	if err != nil {
		b.Fatal(err)
	}
	if n := auditCount(b, f.k); n != rows {
		b.Fatalf("%d rows", n)
	}
	b.ResetTimer()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		entries, err := f.k.Audit.Query(ctx, kavach.AuditFilter{AgentID: f.ids[i%1000], Limit: 100})
		if err != nil || len(entries) != 100 {
			b.Fatalf("%d entries, %v", len(entries), err)
		}
		i += 7
	}
}
