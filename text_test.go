package kavach_test

import (
	"errors"
	"testing"

	"github.com/kavachdev/kavach"
)

// TestTextNoBackendCanStoreIsCleanedOrRejected: Postgres refuses NUL bytes in text, and
// Postgres and MySQL refuse invalid UTF-8. Outside input carrying them (a user agent header, an
// id in a query string, a string argument) must give the same answer on every backend: cleaned
// where it is only recorded, a validation error or an empty result where it is looked up, never
// a storage error, and never a denial caused by the database.
func TestTextNoBackendCanStoreIsCleanedOrRejected(t *testing.T) {
	const bad = "x\x00y\xffz\x7f"
	eachBackend(t, func(t *testing.T, e *env) {
		a := e.agent(t, "owner-1", perm("files:*", "read"))
		d, err := e.k.Authorize(ctx, a.ID, kavach.Request{Action: "read", Resource: "files:a", UserAgent: "sdk/1 " + bad,
			Arguments: map[string]any{"path": bad, bad: "key"}})
		if err != nil || !d.Allowed {
			t.Fatalf("authorize with odd text: %+v, %v", d, err)
		}
		entries := must[[]kavach.AuditEntry](t)(e.k.Audit.Query(ctx, kavach.AuditFilter{AgentID: a.ID}))
		if len(entries) != 1 || entries[0].UserAgent != "sdk/1 x\uFFFDy\uFFFDz\uFFFD" {
			t.Fatalf("audit entries %+v", entries)
		}
		if got := string(entries[0].Parameters); got != "{\"path\":\"x\\u0000y\\ufffdz\x7f\",\"x\\u0000y\\ufffdz\x7f\":\"key\"}" {
			t.Errorf("parameters %s", got)
		}

		// Lookups by such ids find nothing; they do not fail.
		for _, id := range []string{bad, "\x00", "\xff"} {
			if _, err := e.k.Agents.Get(ctx, id); !errors.Is(err, kavach.ErrNotFound) && !errors.Is(err, kavach.ErrValidation) {
				t.Errorf("Get(%q): %v", id, err)
			}
			if d, err := e.k.Authorize(ctx, id, kavach.Request{Action: "read", Resource: "files:a"}); !errors.Is(err, kavach.ErrValidation) || d.Allowed {
				t.Errorf("Authorize(%q): %+v, %v", id, d, err)
			}
			if d, err := e.k.AuthorizeToken(ctx, "kv_"+id, kavach.Request{Action: "read", Resource: "files:a"}); err != nil || d.Allowed {
				t.Errorf("AuthorizeToken(kv_%q): %+v, %v", id, d, err)
			}
			for _, f := range []kavach.AuditFilter{{AgentID: id}, {UserID: id}, {Actions: []string{id}}} {
				if got, err := e.k.Audit.Query(ctx, f); err != nil && !errors.Is(err, kavach.ErrValidation) || len(got) != 0 {
					t.Errorf("Audit.Query(%+v): %d entries, %v", f, len(got), err)
				}
			}
			if got, err := e.k.Agents.List(ctx, kavach.ListFilter{OwnerID: id}); err != nil && !errors.Is(err, kavach.ErrValidation) || len(got) != 0 {
				t.Errorf("Agents.List(owner %q): %+v, %v", id, got, err)
			}
			if err := e.k.Agents.Revoke(ctx, id); !errors.Is(err, kavach.ErrNotFound) && !errors.Is(err, kavach.ErrValidation) {
				t.Errorf("Revoke(%q): %v", id, err)
			}
			if err := e.k.APIKeys.Revoke(ctx, id); !errors.Is(err, kavach.ErrNotFound) {
				t.Errorf("APIKeys.Revoke(%q): %v", id, err)
			}
			if _, _, err := e.k.APIKeys.Create(ctx, id); !errors.Is(err, kavach.ErrValidation) {
				t.Errorf("APIKeys.Create(%q): %v", id, err)
			}
		}
		// Metadata is JSON text, so any string survives it.
		b := must[*kavach.Agent](t)(e.k.Agents.Create(ctx, kavach.NewAgent{OwnerID: "owner-1", Name: "meta", Type: kavach.Autonomous,
			Metadata: map[string]any{"note": bad}}))
		if got := must[*kavach.Agent](t)(e.k.Agents.Get(ctx, b.ID)); got.Metadata["note"] != "x\x00y\uFFFDz\x7f" {
			t.Errorf("metadata %q", got.Metadata["note"])
		}
	})
}
