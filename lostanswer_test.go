package kavach_test

import (
	"context"
	"testing"
	"time"

	"github.com/kavachdev/kavach"
	"github.com/kavachdev/kavach/storage"
	"github.com/kavachdev/kavach/storage/storagetest"
	"github.com/kavachdev/kavach/storage/storagetest/testdb"
)

// TestSecretsWhoseAnswerIsLostReachTheCaller: when the answer to a write that stores a new
// secret (an agent's token, an admin API key) is lost, the caller gets the secret if the write
// was applied, and STORAGE_UNAVAILABLE if it was not; never an error for a write that happened,
// which would leave an agent or key whose secret nobody has.
func TestSecretsWhoseAnswerIsLostReachTheCaller(t *testing.T) {
	ctx := context.Background()
	type op struct {
		name   string
		prefix string
		// run performs the write and reports the secret it returned, or its error.
		run func(t *testing.T, k *kavach.Kavach) (string, error)
		// works reports whether secret is in force.
		works func(t *testing.T, k *kavach.Kavach, secret string) bool
	}
	agentWorks := func(t *testing.T, k *kavach.Kavach, token string) bool {
		d, err := k.AuthorizeToken(ctx, token, kavach.Request{Action: "read", Resource: "x"})
		if err != nil {
			t.Fatal(err)
		}
		return d.Allowed
	}
	keyWorks := func(t *testing.T, k *kavach.Kavach, key string) bool {
		ok, err := k.APIKeys.Verify(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	var rotated *kavach.Agent // the agent the rotate case rotates, made before the loss
	ops := []op{
		{"create agent", "INSERT INTO kavach_agents", func(t *testing.T, k *kavach.Kavach) (string, error) {
			a, err := k.Agents.Create(ctx, kavach.NewAgent{OwnerID: "u", Name: "lost", Type: kavach.Autonomous, Permissions: []kavach.Permission{perm("*", "read")}})
			if err != nil {
				return "", err
			}
			return a.Token, nil
		}, agentWorks},
		{"rotate token", "UPDATE kavach_agents SET token_hash", func(t *testing.T, k *kavach.Kavach) (string, error) {
			a, err := k.Agents.Rotate(ctx, rotated.ID)
			if err != nil {
				return "", err
			}
			if a.ID != rotated.ID || len(a.Permissions) != 1 {
				t.Errorf("rotated agent: %+v", a)
			}
			return a.Token, nil
		}, agentWorks},
		{"create API key", "INSERT INTO kavach_api_keys", func(t *testing.T, k *kavach.Kavach) (string, error) {
			key, _, err := k.APIKeys.Create(ctx, "lost")
			return key, err
		}, keyWorks},
		{"bootstrap API key", "INSERT INTO kavach_api_keys", func(t *testing.T, k *kavach.Kavach) (string, error) {
			return k.APIKeys.Bootstrap(ctx)
		}, keyWorks},
	}
	for _, o := range ops {
		eachLoss(t, o.name, o.prefix, testdb.SQLiteFile(), func(t *testing.T, k *kavach.Kavach, lossy *storagetest.LostAnswer) {
			applied := lossy.Applied
			var oldToken string
			var err error
			if o.name == "rotate token" {
				if rotated, err = k.Agents.Create(ctx, kavach.NewAgent{OwnerID: "u", Name: "rotated", Type: kavach.Autonomous, Permissions: []kavach.Permission{perm("*", "read")}}); err != nil {
					t.Fatal(err)
				}
				oldToken = rotated.Token
			}
			secret, err := o.run(t, k)
			if !lossy.Lost() {
				t.Fatal("the operation sent no batch the test could lose")
			}
			if !applied {
				if kavach.AsError(err).Code != kavach.CodeUnavailable {
					t.Fatalf("a write that was not applied: %q, %v; want %s", secret, err, kavach.CodeUnavailable)
				}
				if oldToken != "" && !agentWorks(t, k, oldToken) {
					t.Error("the old token stopped working though the rotation was not applied")
				}
				return
			}
			if err != nil || secret == "" {
				t.Fatalf("a write that was applied: %q, %v; want its secret", secret, err)
			}
			if !o.works(t, k, secret) {
				t.Errorf("the secret returned after the lost answer does not work")
			}
			if oldToken != "" && agentWorks(t, k, oldToken) {
				t.Error("the old token still works after the rotation")
			}
		})
	}
}

// eachLoss runs test as two subtests of name, each with Kavach on a new database of backend b
// through a storagetest.LostAnswer that loses the answer to the first batch with a statement
// starting with prefix: once applied, once not (lossy.Applied).
func eachLoss(t *testing.T, name, prefix string, b storagetest.Backend, test func(t *testing.T, k *kavach.Kavach, lossy *storagetest.LostAnswer)) {
	for _, applied := range []bool{true, false} {
		sub := name + "/not applied"
		if applied {
			sub = name + "/applied"
		}
		t.Run(sub, func(t *testing.T) {
			lossy := &storagetest.LostAnswer{DB: b.Open(t), Prefix: prefix, Applied: applied}
			k := must[*kavach.Kavach](t)(kavach.New(context.Background(), kavach.Config{DB: lossy}))
			t.Cleanup(func() { k.Close() })
			test(t, k, lossy)
		})
	}
}

// TestAgentCreateWhoseAnswerIsLost: on each server backend, through a proxy that drops the
// server's answers and then cuts and restores the connections. Where the create batch is one
// request (sqld over HTTP, Postgres, MySQL) it is applied while the answers are dropped, and
// Create returns the agent with a token that works. Over WebSocket, sqld is sent a batch's
// statements one at a time, so nothing past the first is sent and nothing is applied; the batch
// is sent again, and Create returns the agent if the connection is back by then, or else
// STORAGE_UNAVAILABLE with no agent. Never an error while an agent exists, nor two agents.
func TestAgentCreateWhoseAnswerIsLost(t *testing.T) {
	ctx := context.Background()
	for _, b := range testdb.Backends() {
		if b.Embedded {
			continue
		}
		t.Run(b.Name, func(t *testing.T) {
			k, p, direct := throughProxy(t, b)
			count := func() int64 {
				res, err := direct.Exec(ctx, storage.Stmt{SQL: "SELECT COUNT(*) FROM kavach_agents WHERE name = 'lost-answer'"})
				if err != nil {
					t.Fatal(err)
				}
				return res[0].Rows[0][0].(int64)
			}

			create := func(name string) (*kavach.Agent, error) {
				return k.Agents.Create(ctx, kavach.NewAgent{OwnerID: "u", Name: name, Type: kavach.Autonomous, Permissions: []kavach.Permission{perm("*", "read")}})
			}
			// The statements prepared and the connections open, so that the create below sends
			// its batch without waiting for any other answer.
			if _, err := create("warm-up"); err != nil {
				t.Fatal(err)
			}

			p.Mute()
			type created struct {
				a   *kavach.Agent
				err error
			}
			done := make(chan created, 1)
			go func() {
				a, err := create("lost-answer")
				done <- created{a, err}
			}()
			// Wait until the batch is applied (its answer dropped), then cut and restore.
			applies := b.Name != "libsql-ws"
			wait := 10 * time.Second
			if !applies {
				wait = time.Second
			}
			deadline := time.Now().Add(wait)
			for count() == 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if applies && count() == 0 || !applies && count() != 0 {
				p.Cut()
				t.Fatalf("%d agents while the answers are dropped", count())
			}
			time.Sleep(50 * time.Millisecond)
			p.Cut()
			if err := p.Restore(); err != nil {
				t.Fatal(err)
			}
			r := <-done
			if !applies && r.err != nil {
				// Sent again while the connection was still cut: an error is right, if there is
				// no agent whose token was lost.
				if kavach.AsError(r.err).Code != kavach.CodeUnavailable || count() != 0 {
					t.Fatalf("a batch never applied: %v, %d agents; want %s and none", r.err, count(), kavach.CodeUnavailable)
				}
				return
			}
			if r.err != nil {
				t.Fatalf("Create after its answer was lost: %v; the agent exists, so it must return it", r.err)
			}
			if n := count(); n != 1 {
				t.Errorf("%d agents after one create", n)
			}
			if d, err := k.AuthorizeToken(ctx, r.a.Token, kavach.Request{Action: "read", Resource: "x"}); err != nil || !d.Allowed {
				t.Errorf("the token Create returned: %+v %v", d, err)
			}
		})
	}
}

// TestChangesWhoseAnswerIsLostReportTheirOutcome (on each dialect): when the answer to an agent's update or revoke
// is lost, the caller gets success if the agent is now as the write makes it (the updated agent,
// or nil for a revoke), and STORAGE_UNAVAILABLE, with the agent unchanged, if it is not.
func TestChangesWhoseAnswerIsLostReportTheirOutcome(t *testing.T) {
	ctx := context.Background()
	renamed := "renamed"
	meta := map[string]any{"team": "blue"}
	perms := []kavach.Permission{perm("docs:*", "read", "write")}
	none := []kavach.Permission{}
	for _, c := range []struct {
		name   string
		prefix string
		change func(k *kavach.Kavach, id string) error
		// done reports whether the stored agent has the change.
		done func(a *kavach.Agent) bool
	}{
		{"rename", "UPDATE kavach_agents SET updated_at", func(k *kavach.Kavach, id string) error {
			a, err := k.Agents.Update(ctx, id, kavach.AgentUpdate{Name: &renamed, Metadata: &meta})
			if err == nil && (a.Name != renamed || a.Metadata["team"] != "blue") {
				t.Errorf("update returned %+v", a)
			}
			return err
		}, func(a *kavach.Agent) bool { return a.Name == renamed && a.Metadata["team"] == "blue" }},
		{"replace permissions", "UPDATE kavach_agents SET updated_at", func(k *kavach.Kavach, id string) error {
			a, err := k.Agents.Update(ctx, id, kavach.AgentUpdate{Permissions: &perms, ClearExpiry: true})
			if err == nil && (len(a.Permissions) != 1 || a.Permissions[0].Resource != "docs:*" || a.ExpiresAt != nil) {
				t.Errorf("update returned %+v", a)
			}
			return err
		}, func(a *kavach.Agent) bool {
			return len(a.Permissions) == 1 && a.Permissions[0].Resource == "docs:*" && a.ExpiresAt == nil
		}},
		{"remove permissions", "UPDATE kavach_agents SET updated_at", func(k *kavach.Kavach, id string) error {
			a, err := k.Agents.Update(ctx, id, kavach.AgentUpdate{Permissions: &none})
			if err == nil && len(a.Permissions) != 0 {
				t.Errorf("update returned %+v", a)
			}
			return err
		}, func(a *kavach.Agent) bool { return len(a.Permissions) == 0 }},
		{"revoke", "UPDATE kavach_agents SET status = 'revoked'", func(k *kavach.Kavach, id string) error {
			return k.Agents.Revoke(ctx, id)
		}, func(a *kavach.Agent) bool { return a.Status == kavach.Revoked }},
	} {
		// One backend per dialect: the checks are SQL, the lost answer is made above the backend.
		for _, b := range []storagetest.Backend{testdb.SQLiteFile(), testdb.Postgres(), testdb.MySQL()} {
			eachLoss(t, c.name+"/"+b.Name, c.prefix, b, func(t *testing.T, k *kavach.Kavach, lossy *storagetest.LostAnswer) {
				applied := lossy.Applied
				a := must[*kavach.Agent](t)(k.Agents.Create(ctx, kavach.NewAgent{OwnerID: "u", Name: "before", Type: kavach.Autonomous,
					Permissions: []kavach.Permission{perm("*", "read")}}))
				err := c.change(k, a.ID)
				if !lossy.Lost() {
					t.Fatal("the change sent no batch the test could lose")
				}
				stored := must[*kavach.Agent](t)(k.Agents.Get(ctx, a.ID))
				switch {
				case applied && err != nil:
					t.Errorf("a change that was applied: %v; want success", err)
				case !applied && kavach.AsError(err).Code != kavach.CodeUnavailable:
					t.Errorf("a change that was not applied: %v; want %s", err, kavach.CodeUnavailable)
				}
				if c.done(stored) != applied {
					t.Errorf("stored agent %+v; change applied: %v", stored, applied)
				}
			})
		}
	}
}
