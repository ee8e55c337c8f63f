package libsql_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kavachdev/kavach/storage"
	"github.com/kavachdev/kavach/storage/storagetest"
	"github.com/kavachdev/kavach/storage/storagetest/testdb"
)

func TestRemoteConformanceHTTP(t *testing.T) { storagetest.Run(t, testdb.SqldHTTP()) }

func TestRemoteConformanceWebSocket(t *testing.T) { storagetest.Run(t, testdb.SqldWebSocket()) }

// TestRemoteAuthToken: a sqld that demands a JWT accepts the token from the configuration or
// from the URL, over HTTP and WebSocket and through libsql:// without TLS.
func TestRemoteAuthToken(t *testing.T) {
	s, token := testdb.SqldWithAuth(t)
	for _, c := range []struct {
		name string
		cfg  storage.Config
	}{
		{"http, token in config", storage.Config{Provider: "libsql", URL: "http://" + s.Addr(), AuthToken: token}},
		{"ws, token in config", storage.Config{Provider: "libsql", URL: "ws://" + s.Addr(), AuthToken: token}},
		{"libsql without tls, token in url", storage.Config{Provider: "libsql", URL: "libsql://" + s.Addr() + "?tls=0&authToken=" + token}},
		{"http, token in url as jwt", storage.Config{Provider: "libsql", URL: "http://" + s.Addr() + "?jwt=" + token}},
	} {
		t.Run(c.name, func(t *testing.T) {
			db := storagetest.OpenConfig(t, c.cfg)
			res, err := db.Exec(context.Background(), storage.Stmt{SQL: "SELECT 1 + ?", Args: []any{int64(41)}})
			if err != nil || res[0].Rows[0][0] != int64(42) {
				t.Fatalf("SELECT: %v, %v", res, err)
			}
		})
	}
}

// TestRemoteOpenErrorsAreOneClearLine opens databases that cannot work and checks that each
// failure is one line saying what is wrong, with the server named and the token nowhere, in an
// error or in a log line.
func TestRemoteOpenErrorsAreOneClearLine(t *testing.T) {
	logs := storagetest.CaptureLogs(t)
	s, token := testdb.SqldWithAuth(t)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	forged := testdb.SignJWT(otherKey, time.Hour)
	open := testdb.SqldHTTP().New(t) // no authentication, for the missing-database case
	secrets := []string{token, forged}

	cases := []struct {
		name string
		cfg  storage.Config
		want []string
		kind error
	}{
		{"unreachable server over http", storage.Config{URL: "http://" + storagetest.ClosedAddr(t), AuthToken: token},
			[]string{"cannot reach libsql server", "connection refused"}, storage.ErrUnavailable},
		{"unreachable server over ws", storage.Config{URL: "ws://" + storagetest.ClosedAddr(t), AuthToken: token},
			[]string{"cannot reach libsql server", "connection refused"}, storage.ErrUnavailable},
		{"wrong token over http", storage.Config{URL: "http://" + s.Addr(), AuthToken: forged},
			[]string{"rejected the auth token", "401", "KAVACH_DATABASE_AUTH_TOKEN"}, storage.ErrUnavailable},
		{"wrong token over ws", storage.Config{URL: "ws://" + s.Addr(), AuthToken: forged},
			[]string{"rejected the auth token", "KAVACH_DATABASE_AUTH_TOKEN"}, nil},
		{"no token", storage.Config{URL: "http://" + s.Addr()}, []string{"rejected the auth token", "401"}, storage.ErrUnavailable},
		{"wrong token in the url", storage.Config{URL: "http://" + s.Addr() + "?authToken=" + forged}, []string{"rejected the auth token"}, storage.ErrUnavailable},
		{"missing database", storage.Config{URL: open.Config.URL + "/no-such-database"}, []string{"no such database"}, nil},
		{"malformed url", storage.Config{URL: "http://[::1:8080?authToken=" + token}, []string{"invalid libsql database url"}, nil},
		{"wrong scheme", storage.Config{URL: "postgres://" + s.Addr() + "?authToken=" + token}, []string{"must start with libsql://"}, nil},
		{"unknown parameter", storage.Config{URL: "http://" + s.Addr() + "?authToken=" + token + "&mode=fast"}, []string{`unknown parameter "mode"`}, nil},
		{"two different tokens", storage.Config{URL: "http://" + s.Addr() + "?authToken=" + forged, AuthToken: token}, []string{"different"}, nil},
		{"tls switch on an http url", storage.Config{URL: "http://" + s.Addr() + "?tls=0"}, []string{"only applies to libsql://"}, nil},
	}
	var checks []storagetest.OpenErrorCase
	for _, c := range cases {
		c.cfg.Provider = "libsql"
		checks = append(checks, storagetest.OpenErrorCase{Name: c.name, Config: c.cfg, Want: c.want, Kind: c.kind})
	}
	storagetest.RunOpenErrors(t, checks, secrets...)
	for _, sec := range secrets {
		if strings.Contains(logs.String(), sec) {
			t.Errorf("a log line shows an auth token:\n%s", logs)
		}
	}
}

// TestOneWriteBatchAtATimePerHandle: a handle sends sqld one write batch at a time (sqld has one
// writer, and its connections waiting for the lock were seen to spin for minutes under load),
// while reads still run side by side. Counted at an HTTP proxy in front of a real sqld.
func TestOneWriteBatchAtATimePerHandle(t *testing.T) {
	var mu sync.Mutex
	var writes, reads, maxWrites, maxReads int
	track := func(n, most *int, d int) {
		mu.Lock()
		*n += d
		*most = max(*most, *n)
		mu.Unlock()
	}
	_, db := behindHTTPProxy(t, func(_ *http.Request, body []byte, forward func([]byte)) {
		n, most := &reads, &maxReads
		if bytes.Contains(body, []byte("INSERT")) {
			n, most = &writes, &maxWrites
		}
		track(n, most, 1)
		time.Sleep(2 * time.Millisecond) // widen the window in which requests could overlap
		forward(body)
		track(n, most, -1)
	})
	ctx := context.Background()
	if _, err := db.Exec(ctx, storage.Stmt{SQL: "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				var err error
				if g%2 == 0 {
					_, err = db.Exec(ctx, storage.Stmt{SQL: "INSERT INTO t (v) VALUES (?)", Args: []any{"x"}},
						storage.Stmt{SQL: "INSERT INTO t (v) VALUES (?)", Args: []any{"y"}})
				} else {
					_, err = db.Exec(ctx, storage.Stmt{SQL: "SELECT COUNT(*) FROM t WHERE id > ?", Args: []any{int64(i)}})
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if maxWrites != 1 || maxReads < 2 {
		t.Errorf("at most %d write batches and %d reads were in flight at once; want 1 and several", maxWrites, maxReads)
	}
	res, err := db.Exec(ctx, storage.Stmt{SQL: "SELECT COUNT(*) FROM t"})
	if err != nil || res[0].Rows[0][0] != int64(160) {
		t.Fatalf("rows: %v %v", res, err)
	}
}

// A libSQL server plans every statement it is sent, so writers merge rows into few statements;
// the embedded database prepares once and is not such a database. The hint survives the
// wrapper that storage.Open puts around a lazily checked server.
func TestRemoteServersPlanEveryStatement(t *testing.T) {
	for _, c := range []struct {
		b    storagetest.Backend
		want bool
	}{{testdb.SqldHTTP(), true}, {testdb.SqldWebSocket(), true}, {testdb.SQLiteFile(), false}} {
		cfg := c.b.New(t).Config
		for _, lazy := range []bool{false, true} {
			cfg.Lazy = lazy
			db, err := storage.Open(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := storage.PlansEveryStatement(db); got != c.want {
				t.Errorf("%s (lazy %v): PlansEveryStatement %v, want %v", c.b.Name, lazy, got, c.want)
			}
			db.Close()
		}
	}
}

// TestHranaHTTPReusesStreams: requests over HTTP go on the stream the previous request left
// open, so the server does not open a stream (and a connection) for each. A stream whose baton
// the server refuses is replaced without the caller noticing, and a stream left inside a
// transaction by a lone BEGIN is never reused for another request. No request asks for a
// compressed answer. Counted and tampered with at an HTTP proxy in front of a real sqld.
func TestHranaHTTPReusesStreams(t *testing.T) {
	var mu sync.Mutex
	var fresh, total int
	var compressed []string
	spoil, spoilAll := false, false
	s, db := behindHTTPProxy(t, func(r *http.Request, body []byte, forward func([]byte)) {
		mu.Lock()
		total++
		if ae := r.Header.Get("Accept-Encoding"); ae != "" {
			compressed = append(compressed, ae)
		}
		if bytes.HasPrefix(body, []byte(`{"baton":null`)) {
			fresh++
		} else if spoil || spoilAll {
			spoil = false
			body = bytes.Replace(body, []byte(`{"baton":"`), []byte(`{"baton":"x`), 1)
		}
		mu.Unlock()
		forward(body)
	})
	counts := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return fresh, total
	}
	ctx := context.Background()
	exec := func(stmts ...storage.Stmt) []storage.Result {
		t.Helper()
		res, err := db.Exec(ctx, stmts...)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	exec(storage.Stmt{SQL: "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"})
	for i := range 20 {
		exec(storage.Stmt{SQL: "INSERT INTO t (v) VALUES (?)", Args: []any{"a"}}, storage.Stmt{SQL: "SELECT COUNT(*) FROM t WHERE id > ?", Args: []any{int64(i)}})
		exec(storage.Stmt{SQL: "SELECT COUNT(*) FROM t"})
	}
	if f, n := counts(); f != 1 || n < 41 {
		t.Errorf("%d of %d requests opened a stream; want 1 (the first)", f, n)
	}

	mu.Lock()
	spoil = true // the next request carries a baton the server does not know
	mu.Unlock()
	if res := exec(storage.Stmt{SQL: "SELECT COUNT(*) FROM t"}); res[0].Rows[0][0] != int64(20) {
		t.Errorf("after a refused baton: %v", res[0].Rows)
	}
	// Answers are small JSON: compressing them cost sqld about a fifth of a request's CPU.
	mu.Lock()
	if len(compressed) > 0 {
		t.Errorf("%d requests asked for a compressed answer (Accept-Encoding %q)", len(compressed), compressed[0])
	}
	mu.Unlock()
	if f, _ := counts(); f != 2 {
		t.Errorf("%d requests opened a stream; want 2 (the first, and the one after the refused baton)", f)
	}

	// Several idle streams, then a server that knows none of them (as after a restart): one
	// refused request, not one per idle stream, before a new stream is opened.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := db.Exec(ctx, storage.Stmt{SQL: "SELECT COUNT(*) FROM t"}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	spoilAll = true
	mu.Unlock()
	f0, n0 := counts()
	exec(storage.Stmt{SQL: "SELECT COUNT(*) FROM t"})
	if f, n := counts(); f-f0 != 1 || n-n0 != 2 {
		t.Errorf("with every baton refused, a request took %d requests and opened %d streams; want 2 and 1", n-n0, f-f0)
	}
	mu.Lock()
	spoilAll = false
	mu.Unlock()

	// A lone BEGIN leaves its stream in a transaction: what follows must not run inside it.
	exec(storage.Stmt{SQL: "BEGIN"})
	exec(storage.Stmt{SQL: "INSERT INTO t (v) VALUES ('after begin')"})
	other := storagetest.OpenConfig(t, storage.Config{Provider: "libsql", URL: "http://" + s.Addr()})
	res, err := other.Exec(ctx, storage.Stmt{SQL: "SELECT COUNT(*) FROM t WHERE v = 'after begin'"})
	if err != nil || res[0].Rows[0][0] != int64(1) {
		t.Errorf("a write after a lone BEGIN is not visible to another handle: %v %v", res, err)
	}
}

// behindHTTPProxy starts sqld and opens a handle on it over HTTP through a proxy, which reads
// each request's body and hands it to handle; handle sends it on, changed or not, with forward.
func behindHTTPProxy(t *testing.T, handle func(r *http.Request, body []byte, forward func([]byte))) (*testdb.Sqld, storage.DB) {
	t.Helper()
	s := testdb.StartSqld(t)
	target, _ := url.Parse("http://" + s.Addr())
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		handle(r, body, func(b []byte) {
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
			rp.ServeHTTP(w, r)
		})
	}))
	t.Cleanup(proxy.Close)
	return s, storagetest.OpenConfig(t, storage.Config{Provider: "libsql", URL: proxy.URL})
}
