package host_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kavachdev/kavach"
	"github.com/kavachdev/kavach/host"
	"github.com/kavachdev/kavach/storage"
	"github.com/kavachdev/kavach/storage/libsql"
	"github.com/kavachdev/kavach/storage/storagetest/testdb"
)

// countingDB counts round trips to the database it wraps.
type countingDB struct {
	storage.DB
	n atomic.Int32
}

func (c *countingDB) Exec(ctx context.Context, stmts ...storage.Stmt) ([]storage.Result, error) {
	c.n.Add(1)
	return c.DB.Exec(ctx, stmts...)
}

func TestServerlessCostsOneRoundTripAtColdStartAndStartsNoGoroutines(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.db")
	// The schema exists beforehand, as after `kavach migrate`.
	setup, err := kavach.New(ctx, kavach.Config{Database: kavach.Database{URL: path}})
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := setup.APIKeys.Create(ctx, "fn")
	if err != nil {
		t.Fatal(err)
	}
	setup.Close()
	raw, err := libsql.OpenEmbedded(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	db := &countingDB{DB: raw}
	before := runtime.NumGoroutine()
	exerciseServerless(t, host.Serverless(host.ServerlessConfig{Kavach: kavach.Config{DB: db}}), key, db.n.Load)
	time.Sleep(50 * time.Millisecond) // let any stray goroutine show itself
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("goroutines: %d before, %d after serving", before, after)
	}
}

// TestServerlessOnSqldOverHTTP is the handler as a Go edge function runs it: Turso's protocol
// (Hrana over HTTP) against a real sqld, every request to sqld counted at an HTTP proxy.
func TestServerlessOnSqldOverHTTP(t *testing.T) {
	ctx := context.Background()
	s := testdb.StartSqld(t)
	var trips atomic.Int32
	target, _ := url.Parse("http://" + s.Addr())
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		trips.Add(1)
		rp.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	dbc := kavach.Database{Provider: "libsql", URL: proxy.URL}
	setup, err := kavach.New(ctx, kavach.Config{Database: dbc}) // `kavach migrate`
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := setup.APIKeys.Create(ctx, "fn")
	if err != nil {
		t.Fatal(err)
	}
	setup.Close()
	trips.Store(0)
	before := goroutinesStartedByKavach(nil) // the test's own sqld has some
	h := host.Serverless(host.ServerlessConfig{Kavach: kavach.Config{Database: dbc}})
	exerciseServerless(t, h, key, trips.Load)
	if ours := goroutinesStartedByKavach(before); len(ours) > 0 {
		t.Errorf("goroutines started by kavach are still running after serving:\n%s", strings.Join(ours, "\n\n"))
	}
}

// exerciseServerless sends a serverless handler its first requests and checks the round trips
// they cost: at cold start the schema check alone, then one per request.
func exerciseServerless(t *testing.T, h http.Handler, key string, trips func() int32) {
	t.Helper()
	if n := trips(); n != 0 {
		t.Fatalf("%d round trips before the first request", n)
	}
	do := func(method, path, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	if rec := do("GET", "/health", ""); rec.Code != 200 {
		t.Fatalf("health: %d %s", rec.Code, rec.Body)
	}
	// Cold start: the schema check; then the health query itself.
	if n := trips(); n != 2 {
		t.Errorf("cold start plus a health check took %d round trips, want 2", n)
	}
	rec := do("POST", "/agents", `{"ownerId":"u","name":"fn","type":"service","permissions":[{"resource":"api:*","actions":["call"]}]}`)
	if rec.Code != 201 {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	id := agentID(t, rec.Body.String())
	for i := range 5 {
		n := trips()
		rec := do("POST", "/authorize", `{"agentId":"`+id+`","action":"call","resource":"api:x"}`)
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"allowed":true`) {
			t.Fatalf("authorize: %d %s", rec.Code, rec.Body)
		}
		// The API key is checked from its cache after the first request; the first decision
		// reads the agent, and every decision writes its audit row.
		if got := trips() - n; i > 0 && got != 1 {
			t.Errorf("authorize %d took %d round trips, want 1", i, got)
		}
	}
	rec = do("GET", "/audit?agentId="+id, "")
	if rec.Code != 200 || strings.Count(rec.Body.String(), `"result":"allowed"`) != 5 {
		t.Fatalf("audit: %d %s", rec.Code, rec.Body)
	}
}

// goroutinesStartedByKavach lists the running goroutines that kavach's own code started, by
// their first line ("goroutine 7 [select]:"), leaving out those already in known.
func goroutinesStartedByKavach(known []string) []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var ours []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		id, _, _ := strings.Cut(g, " [")
		if strings.Contains(g, "created by github.com/kavachdev/kavach") && !slices.ContainsFunc(known, func(k string) bool { return strings.HasPrefix(k, id+" [") }) {
			ours = append(ours, g)
		}
	}
	return ours
}

func TestServerlessAnswers503UntilTheDatabaseIsUsable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty.db") // no schema: the check fails
	h := host.Serverless(host.ServerlessConfig{Kavach: kavach.Config{Database: kavach.Database{Provider: "sqlite", URL: path}}})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/health", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "kavach migrate") {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	k, err := kavach.New(context.Background(), kavach.Config{Database: kavach.Database{URL: path}})
	if err != nil {
		t.Fatal(err)
	}
	k.Close()
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/health", nil))
	if rec.Code != 200 {
		t.Fatalf("after migrating: %d %s", rec.Code, rec.Body)
	}
}

func agentID(t *testing.T, body string) string {
	t.Helper()
	i := strings.Index(body, `"id":"`)
	if i < 0 {
		t.Fatalf("no id in %s", body)
	}
	rest := body[i+6:]
	return rest[:strings.IndexByte(rest, '"')]
}
