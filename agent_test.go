package kavach_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kavachdev/kavach"
)

var ctx = context.Background()

func TestCreateReturnsTokenOnceAndStoresOnlyItsHash(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		a := e.agent(t, "user_1", perm("mcp:github:*", "read"))
		if !strings.HasPrefix(a.Token, "kv_") || len(a.Token) != 46 {
			t.Fatalf("token %q is not kv_ + 43 base64url characters", a.Token)
		}
		if a.TokenPrefix != a.Token[:11] || a.Status != kavach.Active || a.ExpiresAt == nil {
			t.Errorf("created agent %+v", a)
		}
		// Default expiry is 24h, as in the reference.
		if got := a.ExpiresAt.Sub(e.clock.Now()); got != 24*time.Hour {
			t.Errorf("default expiry %v", got)
		}
		got := must[*kavach.Agent](t)(e.k.Agents.Get(ctx, a.ID))
		if got.Token != "" {
			t.Errorf("Get returned the token")
		}
		res := must[[]storageResult](t)(execRows(e, "SELECT token_hash, token_prefix FROM kavach_agents WHERE id = ?", a.ID))
		sum := sha256.Sum256([]byte(a.Token))
		if res[0][0] != hex.EncodeToString(sum[:]) || res[0][1] != a.Token[:11] {
			t.Errorf("stored %v", res[0])
		}
		if e.path == "" {
			return
		}
		// On the embedded default, the token itself is nowhere in the database files.
		e.k.Close()
		for _, suffix := range []string{"", "-wal"} {
			b, _ := os.ReadFile(e.path + suffix)
			if bytes.Contains(b, []byte(a.Token)) {
				t.Errorf("the plaintext token is stored in %s", e.path+suffix)
			}
		}
	})
}

type storageResult = []any

func execRows(e *env, sql string, args ...any) ([]storageResult, error) {
	res, err := e.k.DB().Exec(ctx, storageStmt(sql, args...))
	if err != nil {
		return nil, err
	}
	return res[0].Rows, nil
}

func TestAgentJSONHasTheReferenceShape(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		a := e.agent(t, "user_1", perm("mcp:*", "read"))
		b, _ := json.Marshal(a)
		var m map[string]any
		json.Unmarshal(b, &m)
		for _, k := range []string{"id", "ownerId", "name", "type", "token", "permissions", "status", "expiresAt", "createdAt", "updatedAt"} {
			if _, ok := m[k]; !ok {
				t.Errorf("JSON lacks %q: %s", k, b)
			}
		}
		if _, ok := m["tenantId"]; ok {
			t.Errorf("tenantId present though empty: %s", b)
		}
		if m["createdAt"] != "2026-11-25T12:00:00.000Z" {
			t.Errorf("createdAt %v", m["createdAt"])
		}
		never := must[*kavach.Agent](t)(e.k.Agents.Create(ctx, kavach.NewAgent{OwnerID: "u", Name: "n", Type: kavach.Service, Permissions: []kavach.Permission{perm("x", "y")}, NeverExpires: true}))
		b, _ = json.Marshal(never)
		if !bytes.Contains(b, []byte(`"expiresAt":null`)) {
			t.Errorf("never-expiring agent: %s", b)
		}
	})
}

func TestCreateValidatesInput(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		past := e.clock.Now().Add(-time.Minute)
		ok := kavach.NewAgent{OwnerID: "u", Name: "n", Type: kavach.Autonomous, Permissions: []kavach.Permission{perm("a", "read")}}
		cases := map[string]func(*kavach.NewAgent){
			"ownerId: is required":             func(n *kavach.NewAgent) { n.OwnerID = "" },
			"name: is required":                func(n *kavach.NewAgent) { n.Name = "" },
			"name: must not be blank":          func(n *kavach.NewAgent) { n.Name = "   " },
			"name: is 129 bytes":               func(n *kavach.NewAgent) { n.Name = strings.Repeat("x", 129) },
			"control character":                func(n *kavach.NewAgent) { n.Name = "a\x00b" },
			"type: must be autonomous":         func(n *kavach.NewAgent) { n.Type = "robot" },
			"permissions[0].resource":          func(n *kavach.NewAgent) { n.Permissions = []kavach.Permission{perm("a::b", "read")} },
			"permissions[0].actions[0]":        func(n *kavach.NewAgent) { n.Permissions = []kavach.Permission{perm("a", "re ad")} },
			"expiresAt: must be in the future": func(n *kavach.NewAgent) { n.ExpiresAt = &past },
			"metadata":                         func(n *kavach.NewAgent) { n.Metadata = map[string]any{"big": strings.Repeat("x", 20000)} },
		}
		for want, mod := range cases {
			in := ok
			mod(&in)
			_, err := e.k.Agents.Create(ctx, in)
			if !errors.Is(err, kavach.ErrValidation) || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: got %v", want, err)
			}
		}
		if n := len(must[[]*kavach.Agent](t)(e.k.Agents.List(ctx, kavach.ListFilter{}))); n != 0 {
			t.Errorf("%d agents stored by rejected creates", n)
		}
	})
}

func TestPerOwnerLimitCountsActiveAgentsAndHoldsUnderConcurrency(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		var wg sync.WaitGroup
		var created, limited atomic.Int32
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := e.k.Agents.Create(ctx, kavach.NewAgent{OwnerID: "busy", Name: "n", Type: kavach.Autonomous, Permissions: []kavach.Permission{perm("a", "r")}})
				switch {
				case err == nil:
					created.Add(1)
				case errors.Is(err, kavach.ErrAgentLimit):
					limited.Add(1)
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if created.Load() != 5 || limited.Load() != 27 {
			t.Fatalf("created %d, limited %d; want 5 and 27", created.Load(), limited.Load())
		}
		// Revoked and expired agents do not count.
		list := must[[]*kavach.Agent](t)(e.k.Agents.List(ctx, kavach.ListFilter{OwnerID: "busy"}))
		must[struct{}](t)(struct{}{}, e.k.Agents.Revoke(ctx, list[0].ID))
		e.agent(t, "busy", perm("a", "r"))
		soon := e.clock.Now().Add(time.Minute)
		if _, err := e.k.Agents.Update(ctx, list[1].ID, kavach.AgentUpdate{ExpiresAt: &soon}); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(2 * time.Minute)
		e.agent(t, "busy", perm("a", "r"))
		if _, err := e.k.Agents.Create(ctx, kavach.NewAgent{OwnerID: "busy", Name: "n", Type: kavach.Autonomous, Permissions: []kavach.Permission{perm("a", "r")}}); !errors.Is(err, kavach.ErrAgentLimit) {
			t.Errorf("sixth active agent: %v", err)
		}
	}, func(c *kavach.Config) { c.Agents.MaxPerUser = 5 })
}

func TestUnknownOwnerIsProvisionedOrRefused(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		e.agent(t, "new-owner", perm("a", "r"))
		rows := must[[]storageResult](t)(execRows(e, "SELECT email FROM kavach_users WHERE id = ?", "new-owner"))
		if len(rows) != 1 || rows[0][0] != "new-owner@owners.kavach.invalid" {
			t.Errorf("owner row %v", rows)
		}
		strict := newEnv(t, func(c *kavach.Config) { c.Agents.RequireExistingOwners = true })
		_, err := strict.k.Agents.Create(ctx, kavach.NewAgent{OwnerID: "ghost", Name: "n", Type: kavach.Autonomous, Permissions: []kavach.Permission{perm("a", "r")}})
		if !errors.Is(err, kavach.ErrNotFound) || !strings.Contains(err.Error(), `owner "ghost" does not exist`) {
			t.Errorf("got %v", err)
		}
		_, err = e.k.Agents.Create(ctx, kavach.NewAgent{OwnerID: "o", TenantID: "tnt_missing", Name: "n", Type: kavach.Autonomous, Permissions: []kavach.Permission{perm("a", "r")}})
		if !errors.Is(err, kavach.ErrNotFound) || !strings.Contains(err.Error(), "tenant") {
			t.Errorf("unknown tenant: %v", err)
		}
	})
}

func TestGetListUpdateRevokeRotate(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		a := e.agent(t, "alice", perm("mcp:github:*", "read"))
		b := e.agent(t, "bob", perm("db:*", "query"))
		svc := must[*kavach.Agent](t)(e.k.Agents.Create(ctx, kavach.NewAgent{OwnerID: "alice", Name: "svc", Type: kavach.Service, Permissions: []kavach.Permission{perm("x", "y")}, Metadata: map[string]any{"team": "infra"}}))

		if _, err := e.k.Agents.Get(ctx, "nope"); !errors.Is(err, kavach.ErrNotFound) {
			t.Errorf("Get unknown: %v", err)
		}
		got := must[*kavach.Agent](t)(e.k.Agents.Get(ctx, svc.ID))
		if got.Metadata["team"] != "infra" || got.Type != kavach.Service || len(got.Permissions) != 1 {
			t.Errorf("Get: %+v", got)
		}

		ids := func(f kavach.ListFilter) []string {
			var out []string
			for _, x := range must[[]*kavach.Agent](t)(e.k.Agents.List(ctx, f)) {
				out = append(out, x.ID)
			}
			return out
		}
		if got := ids(kavach.ListFilter{OwnerID: "alice"}); len(got) != 2 || got[0] != a.ID || got[1] != svc.ID {
			t.Errorf("by owner: %v", got)
		}
		if got := ids(kavach.ListFilter{Type: kavach.Service}); len(got) != 1 || got[0] != svc.ID {
			t.Errorf("by type: %v", got)
		}
		if got := ids(kavach.ListFilter{Limit: 2, Offset: 1}); len(got) != 2 || got[0] != b.ID || got[1] != svc.ID {
			t.Errorf("page: %v", got)
		}
		if _, err := e.k.Agents.List(ctx, kavach.ListFilter{Status: "sleeping"}); !errors.Is(err, kavach.ErrValidation) {
			t.Errorf("bad status filter: %v", err)
		}

		// Update replaces the permissions atomically and changes only what is given.
		name := "renamed"
		newPerms := []kavach.Permission{perm("mcp:slack:*", "write"), perm("mcp:jira:*", "read")}
		meta := map[string]any{"k": "v"}
		up := must[*kavach.Agent](t)(e.k.Agents.Update(ctx, a.ID, kavach.AgentUpdate{Name: &name, Permissions: &newPerms, Metadata: &meta}))
		if up.Name != "renamed" || len(up.Permissions) != 2 || up.Permissions[0].Resource != "mcp:slack:*" || up.Metadata["k"] != "v" || up.Type != kavach.Autonomous {
			t.Errorf("Update: %+v", up)
		}
		up = must[*kavach.Agent](t)(e.k.Agents.Update(ctx, a.ID, kavach.AgentUpdate{ClearExpiry: true}))
		if up.ExpiresAt != nil || up.Name != "renamed" {
			t.Errorf("clear expiry: %+v", up)
		}
		bad := []kavach.Permission{perm("a:", "r")}
		if _, err := e.k.Agents.Update(ctx, a.ID, kavach.AgentUpdate{Permissions: &bad}); !errors.Is(err, kavach.ErrValidation) {
			t.Errorf("invalid permissions: %v", err)
		}
		if again := must[*kavach.Agent](t)(e.k.Agents.Get(ctx, a.ID)); len(again.Permissions) != 2 {
			t.Errorf("a rejected update changed the permissions: %+v", again.Permissions)
		}
		if _, err := e.k.Agents.Update(ctx, "nope", kavach.AgentUpdate{Name: &name}); !errors.Is(err, kavach.ErrNotFound) {
			t.Errorf("update unknown: %v", err)
		}

		// Rotate: the old token stops working at once, the new one works, expiry is unchanged.
		rot := must[*kavach.Agent](t)(e.k.Agents.Rotate(ctx, b.ID))
		if rot.Token == b.Token || !kavach.IsAgentToken(rot.Token) || !rot.ExpiresAt.Equal(*b.ExpiresAt) {
			t.Errorf("rotate: %+v", rot)
		}
		req := kavach.Request{Action: "query", Resource: "db:x"}
		if d := must[kavach.Decision](t)(e.k.AuthorizeToken(ctx, b.Token, req)); d.Allowed || d.Code != "INVALID_TOKEN" {
			t.Errorf("old token: %+v", d)
		}
		if d := must[kavach.Decision](t)(e.k.AuthorizeToken(ctx, rot.Token, req)); !d.Allowed {
			t.Errorf("new token: %+v", d)
		}

		// Revoke is idempotent, permanent, and makes rotation a conflict.
		for range 2 {
			if err := e.k.Agents.Revoke(ctx, b.ID); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.k.Agents.Revoke(ctx, "nope"); !errors.Is(err, kavach.ErrNotFound) {
			t.Errorf("revoke unknown: %v", err)
		}
		if _, err := e.k.Agents.Rotate(ctx, b.ID); !errors.Is(err, kavach.ErrConflict) {
			t.Errorf("rotate revoked: %v", err)
		}
		if got := ids(kavach.ListFilter{Status: kavach.Revoked}); len(got) != 1 || got[0] != b.ID {
			t.Errorf("revoked: %v", got)
		}
		if d := must[kavach.Decision](t)(e.k.AuthorizeToken(ctx, rot.Token, req)); d.Allowed || d.Code != "AGENT_REVOKED" {
			t.Errorf("revoked token: %+v", d)
		}
	})
}

func TestExpiryIsEnforcedOnEveryPath(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		a := e.agent(t, "u", perm("a:*", "read"))
		req := kavach.Request{Action: "read", Resource: "a:b"}
		if d := must[kavach.Decision](t)(e.k.Authorize(ctx, a.ID, req)); !d.Allowed {
			t.Fatalf("before expiry: %+v", d)
		}
		e.clock.Advance(time.Hour)
		// The reference still allows an expired agent by id; Kavach does not.
		if d := must[kavach.Decision](t)(e.k.Authorize(ctx, a.ID, req)); d.Allowed || d.Code != "AGENT_EXPIRED" || d.AuditID == "" {
			t.Errorf("by id after expiry: %+v", d)
		}
		if d := must[kavach.Decision](t)(e.k.AuthorizeToken(ctx, a.Token, req)); d.Allowed || d.Code != "AGENT_EXPIRED" {
			t.Errorf("by token after expiry: %+v", d)
		}
		if got := must[*kavach.Agent](t)(e.k.Agents.Get(ctx, a.ID)); got.Status != kavach.Expired {
			t.Errorf("Get status %s", got.Status)
		}
		if got := must[[]*kavach.Agent](t)(e.k.Agents.List(ctx, kavach.ListFilter{Status: kavach.Expired})); len(got) != 1 {
			t.Errorf("expired filter: %d", len(got))
		}
		if got := must[[]*kavach.Agent](t)(e.k.Agents.List(ctx, kavach.ListFilter{Status: kavach.Active})); len(got) != 0 {
			t.Errorf("active filter: %d", len(got))
		}
		if _, err := e.k.Agents.Rotate(ctx, a.ID); !errors.Is(err, kavach.ErrConflict) {
			t.Errorf("rotate expired: %v", err)
		}
		later := e.clock.Now().Add(time.Hour)
		if _, err := e.k.Agents.Update(ctx, a.ID, kavach.AgentUpdate{ExpiresAt: &later}); err != nil {
			t.Fatal(err)
		}
		if d := must[kavach.Decision](t)(e.k.Authorize(ctx, a.ID, req)); !d.Allowed {
			t.Errorf("after extending: %+v", d)
		}
	}, func(c *kavach.Config) { c.Agents.TokenExpiry = "1h" })
}

func TestMemoryDatabasesAreIsolated(t *testing.T) {
	open := func() *kavach.Kavach {
		k, err := kavach.New(ctx, kavach.Config{Database: kavach.Database{Provider: "sqlite", URL: ":memory:"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { k.Close() })
		return k
	}
	k1, k2 := open(), open()
	for i := range 3 {
		must[*kavach.Agent](t)(k1.Agents.Create(ctx, kavach.NewAgent{OwnerID: "u", Name: fmt.Sprint(i), Type: kavach.Autonomous, Permissions: []kavach.Permission{perm("a", "r")}}))
	}
	if n := len(must[[]*kavach.Agent](t)(k2.Agents.List(ctx, kavach.ListFilter{}))); n != 0 {
		t.Errorf("second :memory: database sees %d agents", n)
	}
	if n := len(must[[]*kavach.Agent](t)(k1.Agents.List(ctx, kavach.ListFilter{}))); n != 3 {
		t.Errorf("first sees %d", n)
	}
}
