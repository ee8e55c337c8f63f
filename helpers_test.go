package kavach_test

import (
	"context"
	"math/rand/v2"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kavachdev/kavach"
	"github.com/kavachdev/kavach/storage"
	_ "github.com/kavachdev/kavach/storage/libsql"
	"github.com/kavachdev/kavach/storage/storagetest"
	"github.com/kavachdev/kavach/storage/storagetest/testdb"
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
	k        *kavach.Kavach
	clock    *clock
	cfg      kavach.Config
	path     string // the SQLite file, for tests of the embedded default
	backend  string
	isolated bool // every open is a new database (SQLite :memory:)
}

// newEnv opens Kavach on a fresh SQLite file, the embedded default, with a settable clock.
func newEnv(t testing.TB, mods ...func(*kavach.Config)) *env {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kavach.db")
	return openEnv(t, "sqlite-file", kavach.Database{Provider: "sqlite", URL: path}, false, path, mods)
}

func openEnv(t testing.TB, backend string, db kavach.Database, isolated bool, path string, mods []func(*kavach.Config)) *env {
	t.Helper()
	e := &env{clock: newClock(), path: path, backend: backend, isolated: isolated}
	e.cfg = kavach.Config{Database: db, Clock: e.clock.Now}
	for _, m := range mods {
		m(&e.cfg)
	}
	e.k = e.open(t)
	return e
}

// eachBackend runs a behaviour test on every storage backend: SQLite file and memory, sqld over
// HTTP and WebSocket, Postgres and MySQL/MariaDB (locally a missing server skips; with CI set it
// fails).
func eachBackend(t *testing.T, run func(t *testing.T, e *env), mods ...func(*kavach.Config)) {
	for _, b := range testdb.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			d := b.New(t)
			c := d.Config
			run(t, openEnv(t, b.Name, kavach.Database{Provider: c.Provider, URL: c.URL, AuthToken: c.AuthToken, MaxOpenConns: c.MaxOpenConns}, d.Isolated, "", mods))
		})
	}
}

// open opens another instance on the same database, as another process or node would.
func (e *env) open(t testing.TB) *kavach.Kavach {
	t.Helper()
	k, err := kavach.New(context.Background(), e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// other returns a second instance on the same database, with its own cache, as another process
// or node would have. Where every open is a new database (SQLite :memory:), the second instance
// shares the first one's database handle instead.
func (e *env) other(t testing.TB) *kavach.Kavach {
	t.Helper()
	if !e.isolated {
		return e.open(t)
	}
	cfg := e.cfg
	cfg.Database = kavach.Database{}
	cfg.DB = e.k.DB()
	k, err := kavach.New(context.Background(), cfg)
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

// throughProxy opens Kavach on a new database of server backend b through a proxy the test can
// mute and cut (storagetest.Proxy), and a direct handle on the same database for checking it.
func throughProxy(t *testing.T, b storagetest.Backend) (*kavach.Kavach, *storagetest.Proxy, storage.DB) {
	t.Helper()
	d := b.New(t)
	u, err := url.Parse(d.Config.URL)
	if err != nil {
		t.Fatal(err)
	}
	p := storagetest.StartProxy(t, u.Host)
	u.Host = p.Addr()
	c := d.Config
	k, err := kavach.New(context.Background(), kavach.Config{Database: kavach.Database{Provider: c.Provider, URL: u.String(), AuthToken: c.AuthToken, MaxOpenConns: c.MaxOpenConns}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k, p, d.Open(t)
}
