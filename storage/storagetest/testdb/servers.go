package testdb

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kavachdev/kavach/storage"
	"github.com/kavachdev/kavach/storage/storagetest"
)

// SQLiteFile is the embedded SQLite backend on a file in the test's temporary directory.
func SQLiteFile() storagetest.Backend {
	return storagetest.Backend{Name: "sqlite-file", Embedded: true, New: func(t testing.TB) *storagetest.Database {
		return &storagetest.Database{Config: storage.Config{Provider: "sqlite", URL: filepath.Join(t.TempDir(), "kavach.db")}}
	}}
}

// SQLiteMemory is the embedded SQLite backend in memory: every Open is a new database.
func SQLiteMemory() storagetest.Backend {
	return storagetest.Backend{Name: "sqlite-memory", Embedded: true, New: func(t testing.TB) *storagetest.Database {
		return &storagetest.Database{Config: storage.Config{Provider: "sqlite", URL: ":memory:"}, Isolated: true}
	}}
}

// admin is an administrative connection to a shared server, opened once per process.
type admin struct {
	once sync.Once
	db   storage.DB
	url  *url.URL
	err  error
}

func (a *admin) open(provider, env, def string) {
	a.once.Do(func() {
		raw := os.Getenv(env)
		if raw == "" {
			raw = def
		}
		if a.url, a.err = url.Parse(raw); a.err != nil {
			return
		}
		c, cancel := background()
		defer cancel()
		a.db, a.err = storage.Open(c, storage.Config{Provider: provider, URL: raw, MaxOpenConns: testConns})
	})
}

var pgAdmin, mysqlAdmin admin

// Postgres is the Postgres backend; every database is a new database on the server
// KAVACH_TEST_POSTGRES_URL names, dropped when the test ends.
func Postgres() storagetest.Backend {
	return storagetest.Backend{Name: "postgres", New: func(t testing.TB) *storagetest.Database {
		const def = "postgres://postgres@127.0.0.1:5432/postgres?connect_timeout=3"
		pgAdmin.open("postgres", "KAVACH_TEST_POSTGRES_URL", def)
		if pgAdmin.err != nil {
			unavailable(t, "Postgres is not available: %v; start it (pg_ctlcluster --skip-systemctl-redirect <version> main start) "+
				"or set KAVACH_TEST_POSTGRES_URL to a server whose user may create databases", pgAdmin.err)
		}
		name := uniqueName()
		if err := adminExec(pgAdmin.db, "CREATE DATABASE "+name); err != nil {
			t.Fatalf("creating a test database on Postgres: %v", err)
		}
		t.Cleanup(func() {
			if err := adminExec(pgAdmin.db, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
				t.Errorf("dropping test database %s: %v", name, err)
			}
		})
		return serverDatabase("postgres", pgAdmin.url, name, "5432")
	}}
}

// MySQL is the MySQL/MariaDB backend; every database is a new database on the server
// KAVACH_TEST_MYSQL_URL names, dropped when the test ends.
func MySQL() storagetest.Backend {
	return storagetest.Backend{Name: "mysql", New: func(t testing.TB) *storagetest.Database {
		const def = "mysql://root@127.0.0.1:3306/test?timeout=3s"
		mysqlAdmin.open("mysql", "KAVACH_TEST_MYSQL_URL", def)
		if mysqlAdmin.err != nil {
			unavailable(t, "MySQL/MariaDB is not available: %v; start it (start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd) "+
				"or set KAVACH_TEST_MYSQL_URL to a server whose user may create databases", mysqlAdmin.err)
		}
		name := uniqueName()
		if err := adminExec(mysqlAdmin.db, "CREATE DATABASE "+name+" CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"); err != nil {
			t.Fatalf("creating a test database on MySQL: %v", err)
		}
		t.Cleanup(func() {
			if err := adminExec(mysqlAdmin.db, "DROP DATABASE IF EXISTS "+name); err != nil {
				t.Errorf("dropping test database %s: %v", name, err)
			}
		})
		return serverDatabase("mysql", mysqlAdmin.url, name, "3306")
	}}
}

// testConns bounds each test handle's pool. Tests open several handles and run many tests and
// packages at once against one server (Postgres allows 100 connections by default).
const testConns = 5

// serverDatabase describes database name on the server base points at. Its outage is a proxy
// between the test and the server being cut: the server itself is shared with other tests.
func serverDatabase(provider string, base *url.URL, name, defaultPort string) *storagetest.Database {
	u := *base
	u.Path = "/" + name
	return &storagetest.Database{
		Config: storage.Config{Provider: provider, URL: u.String(), MaxOpenConns: testConns},
		Outage: func(t testing.TB) *storagetest.Outage {
			port := base.Port()
			if port == "" {
				port = defaultPort
			}
			p := storagetest.StartProxy(t, net.JoinHostPort(base.Hostname(), port))
			pu := u
			pu.Host = p.Addr()
			return &storagetest.Outage{
				Config: storage.Config{Provider: provider, URL: pu.String(), MaxOpenConns: testConns},
				Cut:    func(testing.TB) { p.Cut() },
				Restore: func(t testing.TB) {
					if err := p.Restore(); err != nil {
						t.Fatal(err)
					}
				},
			}
		},
	}
}
