package host_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kavachdev/kavach"
	"github.com/kavachdev/kavach/host"
	"github.com/kavachdev/kavach/storage"
	"github.com/kavachdev/kavach/storage/libsql"
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
	h := host.Serverless(host.ServerlessConfig{Kavach: kavach.Config{DB: db}})
	if db.n.Load() != 0 {
		t.Fatalf("%d round trips before the first request", db.n.Load())
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
	if n := db.n.Load(); n != 2 {
		t.Errorf("cold start plus a health check took %d round trips, want 2", n)
	}
	rec := do("POST", "/agents", `{"ownerId":"u","name":"fn","type":"service","permissions":[{"resource":"api:*","actions":["call"]}]}`)
	if rec.Code != 201 {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	for range 5 {
		if rec := do("POST", "/authorize", `{"agentId":"`+agentID(t, rec.Body.String())+`","action":"call","resource":"api:x"}`); rec.Code != 200 {
			t.Fatalf("authorize: %d %s", rec.Code, rec.Body)
		}
	}
	time.Sleep(50 * time.Millisecond) // let any stray goroutine show itself
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("goroutines: %d before, %d after serving", before, after)
	}
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
