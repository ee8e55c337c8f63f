package kavach_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kavachdev/kavach"
	"github.com/kavachdev/kavach/storage"
	"github.com/kavachdev/kavach/storage/storagetest/testdb"
)

func decide(t *testing.T, k *kavach.Kavach, id string, action, resource string) kavach.Decision {
	t.Helper()
	d, err := k.Authorize(ctx, id, kavach.Request{Action: action, Resource: resource})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestAuthorizeAllowsAndDeniesWithStableCodes(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		a := e.agent(t, "u", perm("mcp:github:*", "read"), perm("admin:*:delete", "*"))
		for _, c := range []struct {
			action, resource string
			code             kavach.DecisionCode
		}{
			{"read", "mcp:github:repos", "ALLOWED"},
			{"read", "mcp:github:repos:issues", "ALLOWED"},
			{"write", "mcp:github:repos", "NO_MATCHING_PERMISSION"},
			{"read", "mcp:github", "NO_MATCHING_PERMISSION"}, // a trailing * needs at least one segment
			{"read", "mcp:slack:channels", "NO_MATCHING_PERMISSION"},
			{"purge", "admin:projects:delete", "ALLOWED"},
			{"read", "admin:projects:read", "NO_MATCHING_PERMISSION"}, // the reference allows this one
		} {
			d := decide(t, e.k, a.ID, c.action, c.resource)
			if d.Code != c.code || d.Allowed != (c.code == "ALLOWED") || d.AuditID == "" {
				t.Errorf("%s %s: %+v, want %s", c.action, c.resource, d, c.code)
			}
			if !d.Allowed && d.Reason == "" {
				t.Errorf("denial without a reason: %+v", d)
			}
		}
		d := decide(t, e.k, "01a00000-0000-7000-8000-000000000000", "read", "x")
		if d.Allowed || d.Code != "AGENT_NOT_FOUND" || d.AuditID != "" {
			t.Errorf("unknown agent: %+v", d)
		}
		d = must[kavach.Decision](t)(e.k.AuthorizeToken(ctx, "kv_not-a-real-token", kavach.Request{Action: "read", Resource: "x"}))
		if d.Allowed || d.Code != "INVALID_TOKEN" {
			t.Errorf("bad token: %+v", d)
		}
		d = must[kavach.Decision](t)(e.k.AuthorizeToken(ctx, "kv_"+a.Token[3:45]+"x", kavach.Request{Action: "read", Resource: "x"}))
		if d.Allowed || d.Code != "INVALID_TOKEN" {
			t.Errorf("wrong token: %+v", d)
		}
	})
}

func TestAuthorizeRejectsInvalidRequests(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		a := e.agent(t, "u", perm("*", "*"))
		for _, req := range []kavach.Request{
			{Action: "", Resource: "x"},
			{Action: "read", Resource: ""},
			{Action: "*", Resource: "x"},
			{Action: "read", Resource: "x:*"},
			{Action: "read", Resource: "a::b"},
			{Action: "read", Resource: "x", IP: "not-an-ip"},
			{Action: "read", Resource: "x", Arguments: map[string]any{"f": func() {}}},
		} {
			if _, err := e.k.Authorize(ctx, a.ID, req); !errors.Is(err, kavach.ErrValidation) {
				t.Errorf("%+v: %v", req, err)
			}
		}
		if _, err := e.k.Authorize(ctx, "", kavach.Request{Action: "a", Resource: "b"}); !errors.Is(err, kavach.ErrValidation) {
			t.Errorf("empty agent id: %v", err)
		}
		if n := auditCount(t, e.k); n != 0 {
			t.Errorf("invalid requests wrote %d audit rows", n)
		}
	})
}

func TestEveryDecisionWritesExactlyOneAuditRowWithItsContext(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		tenantK := e.k
		a := e.agent(t, "owner-7", perm("files:*", "read"))
		d, err := tenantK.Authorize(ctx, a.ID, kavach.Request{Action: "read", Resource: "files:a", Arguments: map[string]any{"path": "/tmp/x"}, IP: "::ffff:10.1.2.3", UserAgent: "agent-sdk/1.0"})
		if err != nil {
			t.Fatal(err)
		}
		denied := decide(t, e.k, a.ID, "write", "files:a")
		if n := auditCount(t, e.k); n != 2 {
			t.Fatalf("%d audit rows for 2 decisions", n)
		}
		entries := must[[]kavach.AuditEntry](t)(e.k.Audit.Query(ctx, kavach.AuditFilter{AgentID: a.ID}))
		if len(entries) != 2 || entries[0].ID != denied.AuditID || entries[1].ID != d.AuditID {
			t.Fatalf("entries %+v", entries)
		}
		got := entries[1]
		if got.UserID != "owner-7" || got.Action != "read" || got.Resource != "files:a" || got.Result != "allowed" ||
			got.Reason != "" || got.IP != "10.1.2.3" || got.UserAgent != "agent-sdk/1.0" || string(got.Parameters) != `{"path":"/tmp/x"}` ||
			!got.Timestamp.Equal(e.clock.Now()) {
			t.Errorf("allowed entry %+v", got)
		}
		if entries[0].Result != "denied" || entries[0].Reason != denied.Reason || string(entries[0].Parameters) != "{}" {
			t.Errorf("denied entry %+v", entries[0])
		}
		// Revoked agents are still audited; unknown agents cannot be.
		must[struct{}](t)(struct{}{}, e.k.Agents.Revoke(ctx, a.ID))
		if d := decide(t, e.k, a.ID, "read", "files:a"); d.Code != "AGENT_REVOKED" || d.AuditID == "" {
			t.Errorf("revoked: %+v", d)
		}
		if n := auditCount(t, e.k); n != 3 {
			t.Errorf("%d rows after the revoked decision", n)
		}
	})
}

// Two processes share one database file: one has the agent cached, the other changes it. The
// first must never return a decision made from its stale copy.
func TestChangesByAnotherProcessAreSeenAtOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		other := e.other(t)
		a := e.agent(t, "u", perm("db:*", "query"))
		if d := decide(t, e.k, a.ID, "query", "db:x"); !d.Allowed {
			t.Fatal(d)
		}
		if d := must[kavach.Decision](t)(e.k.AuthorizeToken(ctx, a.Token, kavach.Request{Action: "query", Resource: "db:x"})); !d.Allowed {
			t.Fatal(d)
		}
		// Permissions changed elsewhere.
		narrower := []kavach.Permission{perm("db:reporting", "query")}
		must[*kavach.Agent](t)(other.Agents.Update(ctx, a.ID, kavach.AgentUpdate{Permissions: &narrower}))
		if d := decide(t, e.k, a.ID, "query", "db:x"); d.Allowed {
			t.Errorf("stale permissions used after an update elsewhere: %+v", d)
		}
		if d := decide(t, e.k, a.ID, "query", "db:reporting"); !d.Allowed {
			t.Errorf("new permissions not used: %+v", d)
		}
		// Token rotated elsewhere.
		rot := must[*kavach.Agent](t)(other.Agents.Rotate(ctx, a.ID))
		if d := must[kavach.Decision](t)(e.k.AuthorizeToken(ctx, a.Token, kavach.Request{Action: "query", Resource: "db:reporting"})); d.Allowed {
			t.Errorf("old token still accepted after rotation elsewhere: %+v", d)
		}
		if d := must[kavach.Decision](t)(e.k.AuthorizeToken(ctx, rot.Token, kavach.Request{Action: "query", Resource: "db:reporting"})); !d.Allowed {
			t.Errorf("new token refused: %+v", d)
		}
		// Revoked elsewhere.
		must[struct{}](t)(struct{}{}, other.Agents.Revoke(ctx, a.ID))
		if d := decide(t, e.k, a.ID, "query", "db:reporting"); d.Allowed || d.Code != "AGENT_REVOKED" {
			t.Errorf("revocation elsewhere not seen: %+v", d)
		}
		// Exactly one audit row per decision about an agent, none for the discarded stale attempts;
		// the old token's decision found no agent, so it has no row.
		if n := auditCount(t, e.k); n != 6 {
			t.Errorf("%d audit rows for 6 decisions about the agent", n)
		}
	})
}

func TestStorageFailureDeniesNeverAllows(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		a := e.agent(t, "u", perm("*", "*"))
		if d := decide(t, e.k, a.ID, "read", "x"); !d.Allowed {
			t.Fatal(d)
		}
		e.k.DB().Close() // the agent is cached; the audit row cannot be written
		d := decide(t, e.k, a.ID, "read", "x")
		if d.Allowed || d.Code != "STORAGE_ERROR" || d.AuditID != "" {
			t.Errorf("with the database closed: %+v", d)
		}
		d = decide(t, e.k, "01a00000-0000-7000-8000-000000000001", "read", "x")
		if d.Allowed || d.Code != "STORAGE_ERROR" {
			t.Errorf("uncached agent with the database closed: %+v", d)
		}
	})
}

func TestAllMatchingPermissionsAreConsidered(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		a := e.agent(t, "u",
			kavach.Permission{Resource: "mcp:*", Actions: []string{"read"}, Constraints: &kavach.Constraints{RequireApproval: true}},
			perm("mcp:github:repos", "read"),
		)
		if d := decide(t, e.k, a.ID, "read", "mcp:github:repos"); !d.Allowed {
			t.Errorf("the unconstrained permission was ignored: %+v", d)
		}
		if d := decide(t, e.k, a.ID, "read", "mcp:slack:x"); d.Allowed || d.Code != "APPROVAL_REQUIRED" {
			t.Errorf("approval: %+v", d)
		}
	})
}

func TestRateLimitIsAtomicAndRolls(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		other := e.other(t)
		a := e.agent(t, "u", kavach.Permission{Resource: "t:*", Actions: []string{"read"}, Constraints: &kavach.Constraints{MaxCallsPerHour: 5}})
		var allowed, limited atomic.Int32
		var wg sync.WaitGroup
		for i := range 24 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				k := e.k
				if i%2 == 1 {
					k = other // two processes share the counter
				}
				d, err := k.Authorize(ctx, a.ID, kavach.Request{Action: "read", Resource: fmt.Sprintf("t:%d", i)})
				switch {
				case err != nil:
					t.Error(err)
				case d.Allowed:
					allowed.Add(1)
				case d.Code == "RATE_LIMITED":
					limited.Add(1)
				default:
					t.Errorf("unexpected %+v", d)
				}
			}()
		}
		wg.Wait()
		// The cap is per permission, not per concrete resource as in the reference.
		if allowed.Load() != 5 || limited.Load() != 19 {
			t.Fatalf("allowed %d limited %d, want 5 and 19", allowed.Load(), limited.Load())
		}
		rl := must[[]kavach.AuditEntry](t)(e.k.Audit.Query(ctx, kavach.AuditFilter{Result: "rate_limited"}))
		if len(rl) != 19 {
			t.Errorf("%d rate_limited audit rows", len(rl))
		}
		e.clock.Advance(30 * time.Minute)
		if d := decide(t, e.k, a.ID, "read", "t:x"); d.Allowed {
			t.Errorf("within the hour: %+v", d)
		}
		e.clock.Advance(31 * time.Minute)
		if d := decide(t, e.k, a.ID, "read", "t:x"); !d.Allowed {
			t.Errorf("an hour later: %+v", d)
		}
	})
}

func TestTimeWindowAndIPAllowlist(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		a := e.agent(t, "u", kavach.Permission{Resource: "ops:*", Actions: []string{"deploy"}, Constraints: &kavach.Constraints{
			TimeWindow: &kavach.TimeWindow{Start: "09:00", End: "17:00"}, IPAllowlist: []string{"10.0.0.0/8"}}})
		req := kavach.Request{Action: "deploy", Resource: "ops:web", IP: "10.2.3.4"}
		if d := must[kavach.Decision](t)(e.k.Authorize(ctx, a.ID, req)); !d.Allowed {
			t.Errorf("noon from 10/8: %+v", d)
		}
		req.IP = "192.168.0.1"
		if d := must[kavach.Decision](t)(e.k.Authorize(ctx, a.ID, req)); d.Code != "IP_NOT_ALLOWED" {
			t.Errorf("wrong network: %+v", d)
		}
		req.IP = "10.2.3.4"
		e.clock.Advance(6 * time.Hour) // 18:00 UTC
		if d := must[kavach.Decision](t)(e.k.Authorize(ctx, a.ID, req)); d.Code != "OUTSIDE_TIME_WINDOW" {
			t.Errorf("evening: %+v", d)
		}
	})
}

func TestConcurrentDecisionsAreEachAuditedOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		var agents []*kavach.Agent
		for i := range 20 {
			agents = append(agents, e.agent(t, fmt.Sprint("o", i), perm("r:*", "read")))
		}
		ids := make(chan string, 64*40)
		var wg sync.WaitGroup
		for g := range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 40 {
					d, err := e.k.Authorize(ctx, agents[(g+i)%20].ID, kavach.Request{Action: "read", Resource: "r:x"})
					if err != nil || !d.Allowed {
						t.Errorf("%+v %v", d, err)
						return
					}
					ids <- d.AuditID
				}
			}()
		}
		wg.Wait()
		close(ids)
		seen := map[string]bool{}
		for id := range ids {
			if seen[id] {
				t.Fatalf("audit id %s returned twice", id)
			}
			seen[id] = true
		}
		if n := auditCount(t, e.k); n != int64(len(seen)) || n != 64*40 {
			t.Errorf("%d audit rows, %d decisions", n, len(seen))
		}
	}, func(c *kavach.Config) { c.Agents.MaxPerUser = -1 })
}

// Compiled permission sets are remembered process-wide by the stored text of their rows. Lists
// that differ only where one field ends and the next begins, or only in constraints, must not be
// taken for each other; a list whose stored text is corrupt fails closed for its agent
// while an agent with the valid list of the same shape keeps working.
func TestPermissionListsAreCompiledByTheirWholeStoredText(t *testing.T) {
	e := newEnv(t)
	other := e.other(t) // decides from the database, not from e.k's cache of agents
	a := e.agent(t, "u", perm("db:x", "read"), perm("mcp:github:*", "read"))
	b := e.agent(t, "u", perm("db:x", "read"), perm("mcp:github:*", "read"))
	c := e.agent(t, "u", perm("db:x", "read"), kavach.Permission{Resource: "mcp:github:*", Actions: []string{"read"}, Constraints: &kavach.Constraints{RequireApproval: true}})
	for _, id := range []string{a.ID, b.ID} {
		if d := decide(t, other, id, "read", "mcp:github:repos"); !d.Allowed {
			t.Fatalf("%s: %+v", id, d)
		}
	}
	if d := decide(t, other, c.ID, "read", "mcp:github:repos"); d.Allowed || d.Code != "APPROVAL_REQUIRED" {
		t.Errorf("the constraint of an otherwise identical list was lost: %+v", d)
	}
	// Move the boundary between resource and actions: 'db:x' + '["read"]' and 'db:x["read"' + ']'
	// concatenate to the same bytes.
	// change rewrites an agent's stored permissions behind the core's back, and moves its version
	// on as the core does, in the same batch.
	change := func(id, set, where string) {
		t.Helper()
		if _, err := e.k.DB().Exec(ctx, storageStmt("UPDATE kavach_permissions SET "+set+" WHERE agent_id = ?"+where, id),
			storageStmt("UPDATE kavach_agents SET version = version + 1 WHERE id = ?", id)); err != nil {
			t.Fatal(err)
		}
	}
	change(b.ID, `resource = 'db:x["read"', actions = ']'`, ` AND resource = 'db:x'`)
	if d := decide(t, other, b.ID, "read", "mcp:github:repos"); d.Allowed || d.Code != "STORAGE_ERROR" {
		t.Errorf("a corrupt list was taken for the valid one it concatenates like: %+v", d)
	}
	if d := decide(t, other, a.ID, "read", "db:x"); !d.Allowed {
		t.Errorf("the valid list stopped working: %+v", d)
	}
	// Constraints NULL, then the text 'null' (also none), then an object.
	change(a.ID, `constraints = 'null'`, "")
	if d := decide(t, other, a.ID, "read", "mcp:github:repos"); !d.Allowed {
		t.Errorf("constraints 'null': %+v", d)
	}
	change(a.ID, `constraints = '{"requireApproval":true}'`, "")
	if d := decide(t, other, a.ID, "read", "mcp:github:repos"); d.Allowed || d.Code != "APPROVAL_REQUIRED" {
		t.Errorf("changed constraints not seen: %+v", d)
	}
}

// A connection that fails after an audit batch was sent leaves it unknown whether the batch was
// applied. Here the server applies it and its answer is lost (a proxy drops the answers, then
// cuts the connections). The decisions in the batch must come back as they were recorded, each
// with exactly its one audit row: neither denied while the log says allowed, nor recorded twice.
func TestAuditBatchWhoseAnswerIsLost(t *testing.T) {
	for _, b := range testdb.Backends() {
		if b.Embedded {
			continue
		}
		t.Run(b.Name, func(t *testing.T) {
			k, p, direct := throughProxy(t, b)
			a, err := k.Agents.Create(ctx, kavach.NewAgent{OwnerID: "u", Name: "lost-answers", Type: kavach.Autonomous, Permissions: []kavach.Permission{perm("*", "*")}})
			if err != nil {
				t.Fatal(err)
			}
			count := func() int64 {
				res, err := direct.Exec(ctx, storage.Stmt{SQL: "SELECT COUNT(*) FROM kavach_audit_logs WHERE agent_id = ?", Args: []any{a.ID}})
				if err != nil {
					t.Fatal(err)
				}
				return res[0].Rows[0][0].(int64)
			}
			if d := decide(t, k, a.ID, "read", "x"); !d.Allowed { // the agent cached, connections open
				t.Fatal(d)
			}

			p.Mute()
			const n = 4
			decisions := make([]kavach.Decision, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					decisions[i], _ = k.Authorize(ctx, a.ID, kavach.Request{Action: "read", Resource: "x"})
				}()
			}
			// Wait until the first batch is in the log (its answer lost), then cut and restore.
			deadline := time.Now().Add(10 * time.Second)
			for count() == 1 {
				if time.Now().After(deadline) {
					t.Fatal("no audit batch reached the server")
				}
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond)
			p.Cut()
			if err := p.Restore(); err != nil {
				t.Fatal(err)
			}
			wg.Wait()

			for i, d := range decisions {
				if !d.Allowed || d.AuditID == "" {
					t.Errorf("decision %d: %+v; want it allowed, as its audit row says", i, d)
				}
			}
			if got := count(); got != 1+n {
				t.Errorf("%d audit rows for %d decisions", got, 1+n)
			}
			for i, d := range decisions {
				res, err := direct.Exec(ctx, storage.Stmt{SQL: "SELECT result FROM kavach_audit_logs WHERE id = ?", Args: []any{d.AuditID}})
				if err != nil || len(res[0].Rows) != 1 || res[0].Rows[0][0] != "allowed" {
					t.Errorf("decision %d: its audit row %q: %v %v", i, d.AuditID, res, err)
				}
			}
		})
	}
}
