package kavach_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kavachdev/kavach"
)

func TestAuditFiltersApplyBeforeLimitAndOffset(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		a := e.agent(t, "alice", perm("*", "*"))
		b := e.agent(t, "bob", perm("x", "read"))
		// One write decision, then many reads: the reference filters actions after paging and
		// returns nothing for {actions:[write], limit:1}.
		decide(t, e.k, a.ID, "write", "doc:1")
		for range 5 {
			decide(t, e.k, a.ID, "read", "doc:1")
		}
		e.clock.Advance(time.Hour)
		decide(t, e.k, b.ID, "read", "x")
		decide(t, e.k, b.ID, "write", "x") // denied

		q := func(f kavach.AuditFilter) []kavach.AuditEntry {
			return must[[]kavach.AuditEntry](t)(e.k.Audit.Query(ctx, f))
		}
		if got := q(kavach.AuditFilter{Actions: []string{"write"}, Limit: 1}); len(got) != 1 || got[0].AgentID != b.ID {
			t.Errorf("newest write: %+v", got)
		}
		if got := q(kavach.AuditFilter{Actions: []string{"write"}, Limit: 1, Offset: 1}); len(got) != 1 || got[0].AgentID != a.ID {
			t.Errorf("second write: %+v", got)
		}
		if got := q(kavach.AuditFilter{UserID: "alice"}); len(got) != 6 {
			t.Errorf("by user: %d", len(got))
		}
		if got := q(kavach.AuditFilter{Result: "denied"}); len(got) != 1 || got[0].AgentID != b.ID {
			t.Errorf("denied: %+v", got)
		}
		start := e.clock.Now().Add(-time.Hour)
		if got := q(kavach.AuditFilter{Since: start.Add(time.Minute)}); len(got) != 2 {
			t.Errorf("since: %d", len(got))
		}
		if got := q(kavach.AuditFilter{Until: start}); len(got) != 6 {
			t.Errorf("until (inclusive): %d", len(got))
		}
		if got := q(kavach.AuditFilter{AgentID: a.ID, Actions: []string{"read", "write"}, Limit: 2, Offset: 4}); len(got) != 2 || got[1].Action != "write" {
			t.Errorf("page: %+v", got)
		}
		for _, f := range []kavach.AuditFilter{{Result: "maybe"}, {Limit: 1001}, {Limit: -1}, {Actions: []string{"bad action"}}} {
			if _, err := e.k.Audit.Query(ctx, f); err == nil {
				t.Errorf("filter %+v accepted", f)
			}
		}
	})
}

func TestAuditOrderIsStableWithinOneSecond(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		a := e.agent(t, "u", perm("*", "*"))
		var want []string
		for i := range 50 {
			want = append(want, decide(t, e.k, a.ID, "read", fmt.Sprintf("r:%d", i)).AuditID)
		}
		got := must[[]kavach.AuditEntry](t)(e.k.Audit.Query(ctx, kavach.AuditFilter{}))
		if len(got) != 50 {
			t.Fatal(len(got))
		}
		for i, e := range got {
			if e.ID != want[49-i] {
				t.Fatalf("position %d: %s (resource %s), want the decision made %dth", i, e.ID, e.Resource, 50-i)
			}
		}
	})
}

func TestExportStreamsEveryEntryAsJSONAndRFC4180CSV(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		tricky, err := e.k.Agents.Create(ctx, kavach.NewAgent{OwnerID: "u", Name: `say "hi", then leave`, Type: kavach.Autonomous, Permissions: []kavach.Permission{perm("ok", "read")}})
		if err != nil {
			t.Fatal(err)
		}
		const n = 2500 // more than two pages of the keyset export
		for i := range n {
			resource := fmt.Sprintf("a,b:%d", i)
			if i%2 == 0 {
				resource = fmt.Sprintf(`q"uote:%d`, i)
			}
			if _, err := e.k.Authorize(ctx, tricky.ID, kavach.Request{Action: "read", Resource: resource, Arguments: map[string]any{"note": "line1\nline2"}}); err != nil {
				t.Fatal(err)
			}
			if i%1000 == 0 {
				e.clock.Advance(time.Second)
			}
		}
		var js bytes.Buffer
		if err := e.k.Audit.Export(ctx, kavach.AuditFilter{}, kavach.ExportJSON, &js); err != nil {
			t.Fatal(err)
		}
		var entries []map[string]any
		if err := json.Unmarshal(js.Bytes(), &entries); err != nil {
			t.Fatalf("JSON export does not parse: %v", err)
		}
		if len(entries) != n || entries[0]["resource"] != fmt.Sprintf("a,b:%d", n-1) || entries[n-1]["resource"] != `q"uote:0` {
			t.Fatalf("JSON export: %d entries, first %v", len(entries), entries[0])
		}
		var c bytes.Buffer
		if err := e.k.Audit.Export(ctx, kavach.AuditFilter{AgentID: tricky.ID}, kavach.ExportCSV, &c); err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(c.Bytes(), []byte("id,agentId,userId,action,resource,result,reason,durationMs,tokensCost,timestamp")) || !bytes.Contains(c.Bytes(), []byte("\r\n")) {
			t.Errorf("CSV header or line ends: %q", c.Bytes()[:120])
		}
		rows, err := csv.NewReader(&c).ReadAll()
		if err != nil {
			t.Fatalf("CSV does not parse as RFC 4180: %v", err)
		}
		if len(rows) != n+1 {
			t.Fatalf("%d CSV rows", len(rows))
		}
		seen := map[string]bool{}
		for _, r := range rows[1:] {
			if seen[r[0]] {
				t.Fatalf("entry %s exported twice", r[0])
			}
			seen[r[0]] = true
			if !strings.HasPrefix(r[4], "a,b:") && !strings.HasPrefix(r[4], `q"uote:`) {
				t.Fatalf("resource %q mangled", r[4])
			}
			if r[13] != `{"note":"line1\nline2"}` {
				t.Fatalf("parameters %q", r[13])
			}
		}
		if err := e.k.Audit.Export(ctx, kavach.AuditFilter{}, "xml", &c); err == nil {
			t.Error("unknown format accepted")
		}
	}, func(c *kavach.Config) { c.Agents.MaxPerUser = -1 })
}

func TestStatsCountAgentsByEffectiveStatusAndRecentDecisions(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		a := e.agent(t, "u1", perm("*", "read"))
		b := e.agent(t, "u2", perm("*", "read"))
		e.agent(t, "u2", perm("*", "read"))
		must[struct{}](t)(struct{}{}, e.k.Agents.Revoke(ctx, b.ID))
		decide(t, e.k, a.ID, "read", "x")
		decide(t, e.k, a.ID, "write", "x")
		decide(t, e.k, b.ID, "read", "x")
		e.clock.Advance(3 * time.Hour) // everything not revoked has expired
		s := must[*kavach.Stats](t)(e.k.Stats(ctx))
		if s.Agents.Total != 3 || s.Agents.Active != 0 || s.Agents.Revoked != 1 || s.Agents.Expired != 2 || s.Users.Total != 2 {
			t.Errorf("agents %+v users %+v", s.Agents, s.Users)
		}
		if s.Audit.Last24h != 3 || s.Audit.Allowed != 1 || s.Audit.Denied != 2 || s.Audit.RateLimited != 0 {
			t.Errorf("audit %+v", s.Audit)
		}
		e.clock.Advance(24 * time.Hour)
		if s := must[*kavach.Stats](t)(e.k.Stats(ctx)); s.Audit.Last24h != 0 {
			t.Errorf("a day later: %+v", s.Audit)
		}
	}, func(c *kavach.Config) { c.Agents.TokenExpiry = "2h" })
}

// The SQLite family finds an agent's or a user's entries by following chains (schema.sql); the
// other backends through indexes. Either way every entry must be found, including entries
// recorded out of time order (a decision that took long, a node whose clock is behind), and
// Since must not cut a chain short at such an entry.
func TestAuditByAgentAndUserFindsEntriesRecordedOutOfTimeOrder(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		a := e.agent(t, "alice", perm("*", "*"))
		b := e.agent(t, "alice", perm("*", "*"))
		c := e.agent(t, "carol", perm("*", "*"))
		t0 := e.clock.Now()
		at := func(offset time.Duration, agent *kavach.Agent, resource string) {
			e.clock.Advance(t0.Add(offset).Sub(e.clock.Now()))
			decide(t, e.k, agent.ID, "read", resource)
		}
		// Recorded in this order; a's chain holds 2000, 500, 1500, 3000 seconds.
		at(2000*time.Second, a, "a:2000")
		at(1000*time.Second, b, "b:1000")
		at(500*time.Second, a, "a:500")
		at(1500*time.Second, a, "a:1500")
		at(2500*time.Second, c, "c:2500")
		at(1200*time.Second, b, "b:1200")
		at(3000*time.Second, a, "a:3000")
		q := func(f kavach.AuditFilter) string {
			var got []string
			for _, x := range must[[]kavach.AuditEntry](t)(e.k.Audit.Query(ctx, f)) {
				got = append(got, x.Resource)
			}
			slices.Sort(got)
			return strings.Join(got, " ")
		}
		since := func(s time.Duration) time.Time { return t0.Add(s * time.Second) }
		for _, c := range []struct {
			f    kavach.AuditFilter
			want string
		}{
			{kavach.AuditFilter{AgentID: a.ID}, "a:1500 a:2000 a:3000 a:500"},
			{kavach.AuditFilter{AgentID: a.ID, Since: since(1000)}, "a:1500 a:2000 a:3000"},
			{kavach.AuditFilter{AgentID: a.ID, Since: since(1500), Until: since(2000)}, "a:1500 a:2000"},
			{kavach.AuditFilter{AgentID: a.ID, Until: since(1000)}, "a:500"},
			{kavach.AuditFilter{AgentID: a.ID, Since: since(3001)}, ""},
			{kavach.AuditFilter{UserID: "alice"}, "a:1500 a:2000 a:3000 a:500 b:1000 b:1200"},
			{kavach.AuditFilter{UserID: "alice", Since: since(1100)}, "a:1500 a:2000 a:3000 b:1200"},
			{kavach.AuditFilter{UserID: "alice", AgentID: b.ID}, "b:1000 b:1200"},
			{kavach.AuditFilter{UserID: "carol", AgentID: a.ID}, ""},
			{kavach.AuditFilter{UserID: "nobody"}, ""},
			{kavach.AuditFilter{AgentID: "no-such-agent"}, ""},
		} {
			if got := q(c.f); got != c.want {
				t.Errorf("agent %q user %q since %v until %v: got %q, want %q", c.f.AgentID, c.f.UserID, c.f.Since, c.f.Until, got, c.want)
			}
		}
		// Pages of a user's entries neither repeat nor skip one.
		var paged []string
		for off := 0; off < 8; off += 2 {
			for _, x := range must[[]kavach.AuditEntry](t)(e.k.Audit.Query(ctx, kavach.AuditFilter{UserID: "alice", Limit: 2, Offset: off})) {
				paged = append(paged, x.Resource)
			}
		}
		slices.Sort(paged)
		if got := strings.Join(paged, " "); got != "a:1500 a:2000 a:3000 a:500 b:1000 b:1200" {
			t.Errorf("pages of alice's entries: %s", got)
		}
	})
}

func TestAuditByAgentOrUserIsNewestFirstInRecordingOrder(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		a := e.agent(t, "u", perm("*", "*"))
		b := e.agent(t, "u", perm("*", "*"))
		var wantA, wantU []string
		for i := range 30 {
			agent := a
			if i%3 == 0 {
				agent = b
			}
			id := decide(t, e.k, agent.ID, "read", fmt.Sprintf("r:%d", i)).AuditID
			if agent == a {
				wantA = append([]string{id}, wantA...)
			}
			wantU = append([]string{id}, wantU...)
			if i%7 == 0 {
				e.clock.Advance(time.Second)
			}
		}
		ids := func(f kavach.AuditFilter) []string {
			var out []string
			for _, x := range must[[]kavach.AuditEntry](t)(e.k.Audit.Query(ctx, f)) {
				out = append(out, x.ID)
			}
			return out
		}
		if got := ids(kavach.AuditFilter{AgentID: a.ID}); !slices.Equal(got, wantA) {
			t.Errorf("agent a:\n got  %v\n want %v", got, wantA)
		}
		if got := ids(kavach.AuditFilter{UserID: "u"}); !slices.Equal(got, wantU) {
			t.Errorf("user u:\n got  %v\n want %v", got, wantU)
		}
		if got := ids(kavach.AuditFilter{UserID: "u", Limit: 5, Offset: 10}); !slices.Equal(got, wantU[10:15]) {
			t.Errorf("user u, page 3 of 5:\n got  %v\n want %v", got, wantU[10:15])
		}
	})
}

// Decisions made at once are recorded in shared batches, several rows of one agent per batch,
// while another node changes some agents so that rows decided from its stale cache are refused
// and decided again. Afterwards each agent's and each user's trail holds exactly its recorded
// decisions, newest first: no chain is broken by a batch.
func TestAuditTrailsStayWholeUnderConcurrentBatches(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		var agents []*kavach.Agent
		for i := range 6 {
			agents = append(agents, e.agent(t, fmt.Sprint("owner-", i%2), perm("r:*", "read")))
		}
		other := e.other(t)
		var mu sync.Mutex
		byAgent := map[string][]string{}
		var wg sync.WaitGroup
		for g := range 24 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 25 {
					a := agents[(g*7+i)%len(agents)]
					if g == 0 && i%5 == 0 { // another node renames an agent: cached snapshots go stale
						name := fmt.Sprint("renamed-", i)
						if _, err := other.Agents.Update(ctx, a.ID, kavach.AgentUpdate{Name: &name}); err != nil {
							t.Error(err)
							return
						}
					}
					d, err := e.k.Authorize(ctx, a.ID, kavach.Request{Action: "read", Resource: fmt.Sprintf("r:%d:%d", g, i)})
					if err != nil || !d.Allowed {
						t.Errorf("%+v %v", d, err)
						return
					}
					mu.Lock()
					byAgent[a.ID] = append(byAgent[a.ID], d.AuditID)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		total := 0
		for _, a := range agents {
			got := must[[]kavach.AuditEntry](t)(e.k.Audit.Query(ctx, kavach.AuditFilter{AgentID: a.ID, Limit: 1000}))
			ids := make([]string, len(got))
			for i, x := range got {
				ids[i] = x.ID
				if i > 0 && x.Timestamp.After(got[i-1].Timestamp) {
					t.Errorf("agent %s: entry %d is newer than the one before it", a.ID, i)
				}
			}
			want := slices.Clone(byAgent[a.ID])
			slices.Sort(ids)
			slices.Sort(want)
			if !slices.Equal(ids, want) {
				t.Errorf("agent %s: %d entries found by agent, %d decided", a.ID, len(ids), len(want))
			}
			total += len(want)
		}
		for _, owner := range []string{"owner-0", "owner-1"} {
			got := must[[]kavach.AuditEntry](t)(e.k.Audit.Query(ctx, kavach.AuditFilter{UserID: owner, Limit: 1000}))
			n := 0
			for _, a := range agents {
				if a.OwnerID == owner {
					n += len(byAgent[a.ID])
				}
			}
			if len(got) != n {
				t.Errorf("user %s: %d entries, %d decided", owner, len(got), n)
			}
		}
		if n := auditCount(t, e.k); n != int64(total) || total != 24*25 {
			t.Errorf("%d rows, %d decisions", n, total)
		}
	}, func(c *kavach.Config) { c.Agents.MaxPerUser = -1 })
}

// Rows with large arguments fill a batch past what one merged statement carries, so the batch
// is written in several statements, each linking to the chain the one before it left.
func TestAuditBatchesOfLargeRowsAreWrittenWhole(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		a := e.agent(t, "u", perm("r:*", "read"))
		big := strings.Repeat("x", 60<<10)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var want []string
		for g := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := e.k.Authorize(ctx, a.ID, kavach.Request{Action: "read", Resource: fmt.Sprintf("r:%d", g), Arguments: map[string]any{"blob": big}})
				if err != nil || !d.Allowed {
					t.Errorf("%+v %v", d, err)
					return
				}
				mu.Lock()
				want = append(want, d.AuditID)
				mu.Unlock()
			}()
		}
		wg.Wait()
		var got []string
		for _, x := range must[[]kavach.AuditEntry](t)(e.k.Audit.Query(ctx, kavach.AuditFilter{AgentID: a.ID, Limit: 100})) {
			got = append(got, x.ID)
			if len(x.Parameters) < 60<<10 {
				t.Errorf("entry %s: parameters of %d bytes", x.ID, len(x.Parameters))
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%d entries found by agent, %d decided", len(got), len(want))
		}
	})
}
