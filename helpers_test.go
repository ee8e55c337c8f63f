package kavach_test

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kavachdev/kavach"
	"github.com/kavachdev/kavach/storage"
	_ "github.com/kavachdev/kavach/storage/libsql"
)

// clock is a settable clock for tests that need time to pass.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	k     *kavach.Kavach
	clock *clock
	path  string
}

// newEnv opens Kavach on a fresh SQLite file with a settable clock.
func newEnv(t testing.TB, mods ...func(*kavach.Config)) *env {
	t.Helper()
	e := &env{clock: newClock(), path: filepath.Join(t.TempDir(), "kavach.db")}
	cfg := kavach.Config{Database: kavach.Database{Provider: "sqlite", URL: e.path}, Clock: e.clock.Now}
	for _, m := range mods {
		m(&cfg)
	}
	k, err := kavach.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	e.k = k
	return e
}

// open opens a second instance on the same database file, as another process would.
func (e *env) open(t testing.TB) *kavach.Kavach {
	t.Helper()
	k, err := kavach.New(context.Background(), kavach.Config{Database: kavach.Database{Provider: "sqlite", URL: e.path}, Clock: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func (e *env) agent(t testing.TB, owner string, perms ...kavach.Permission) *kavach.Agent {
	t.Helper()
	a, err := e.k.Agents.Create(context.Background(), kavach.NewAgent{OwnerID: owner, Name: "agent-of-" + owner, Type: kavach.Autonomous, Permissions: perms})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func perm(resource string, actions ...string) kavach.Permission {
	return kavach.Permission{Resource: resource, Actions: actions}
}

func seeded(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	s[0] = byte(seed)
	return rand.NewChaCha8(s)
}

// auditCount counts audit rows directly in the database.
func auditCount(t testing.TB, k *kavach.Kavach) int64 {
	t.Helper()
	res, err := k.DB().Exec(context.Background(), storageStmt("SELECT COUNT(*) FROM kavach_audit_logs"))
	if err != nil {
		t.Fatal(err)
	}
	return res[0].Rows[0][0].(int64)
}

func storageStmt(sql string, args ...any) storage.Stmt { return storage.Stmt{SQL: sql, Args: args} }

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}
