package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kavachdev/kavach"
	"github.com/kavachdev/kavach/storage/storagetest/testdb"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestAgentsCommandsWorkOnTheDatabaseFile(t *testing.T) {
	db := filepath.Join(t.TempDir(), "k.db")
	if code, out, errs := runCLI(t, "migrate", "-db-url", db); code != 0 || !strings.Contains(out, fmt.Sprintf("schema is at version %d", len(kavach.Migrations))) {
		t.Fatalf("migrate: %d %q %q", code, out, errs)
	}
	code, out, errs := runCLI(t, "agents", "create", "-db-url", db, "-owner", "user_1", "-name", "reader", "-permission", "mcp:github:*=read,list", "-json")
	if code != 0 {
		t.Fatalf("create: %d %s", code, errs)
	}
	var a struct{ ID, Token string }
	if err := json.Unmarshal([]byte(out), &a); err != nil || !strings.HasPrefix(a.Token, "kv_") {
		t.Fatalf("create output %q", out)
	}
	code, out, _ = runCLI(t, "agents", "list", "-db-url", db)
	if code != 0 || !strings.Contains(out, a.ID) || !strings.Contains(out, "mcp:github:*=read,list") {
		t.Errorf("list: %d %q", code, out)
	}
	if code, out, _ := runCLI(t, "agents", "revoke", "-db-url", db, a.ID); code != 0 || !strings.Contains(out, "revoked") {
		t.Errorf("revoke: %d %q", code, out)
	}
	code, out, _ = runCLI(t, "agents", "list", "-db-url", db, "-status", "revoked", "-json")
	if code != 0 || !strings.Contains(out, a.ID) {
		t.Errorf("list revoked: %d %q", code, out)
	}
	if code, _, errs := runCLI(t, "agents", "revoke", "-db-url", db, "no-such-agent"); code != 1 || !strings.Contains(errs, "not found") {
		t.Errorf("revoke unknown: %d %q", code, errs)
	}
	code, out, _ = runCLI(t, "keys", "create", "-db-url", db, "-name", "ci")
	key := regexp.MustCompile(`kvk_[A-Za-z0-9_-]{43}`).FindString(out)
	if code != 0 || key == "" {
		t.Fatalf("keys create: %d %q", code, out)
	}
	if code, out, _ := runCLI(t, "keys", "list", "-db-url", db); code != 0 || !strings.Contains(out, key[:12]) || strings.Contains(out, key) {
		t.Errorf("keys list: %d %q", code, out)
	}
}

func TestUsageAndInputErrors(t *testing.T) {
	db := filepath.Join(t.TempDir(), "k.db")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"agents", "create", "-db-url", db, "-permission", "no-equals"}, 2, "resource=action"},
		{[]string{"agents", "create", "-db-url", db, "-owner", "u", "-permission", "a=read"}, 1, "name: is required"},
		{[]string{"agents", "create", "-db-url", db, "-owner", "u", "-name", "n", "-permission", "a::b=read"}, 1, "permissions[0].resource"},
		{[]string{"agents", "revoke", "-db-url", db}, 2, "at least one agent id"},
		{[]string{"migrate", "-db-provider", "oracle", "-db-url", "x"}, 1, "unknown database provider"},
		{[]string{"serve", "-db-url", db, "-envelope", "xml"}, 1, "envelope"},
	} {
		code, _, errs := runCLI(t, c.args...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, errs, c.code, c.want)
		}
	}
	if code, out, _ := runCLI(t, "version"); code != 0 || !strings.HasPrefix(out, "kavach ") {
		t.Errorf("version: %d %q", code, out)
	}
}

func TestConfigFileThenEnvironmentThenFlags(t *testing.T) {
	dir := t.TempDir()
	fileDB, envDB, flagDB := filepath.Join(dir, "file.db"), filepath.Join(dir, "env.db"), filepath.Join(dir, "flag.db")
	cfg := filepath.Join(dir, "kavach.json")
	os.WriteFile(cfg, []byte(`{"database":{"provider":"sqlite","url":"`+fileDB+`"}}`), 0o600)
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }

	if code, _, errs := runCLI(t, "migrate", "-config", cfg); code != 0 || !exists(fileDB) {
		t.Fatalf("file: %d %s", code, errs)
	}
	t.Setenv("KAVACH_DATABASE_URL", envDB)
	if code, _, errs := runCLI(t, "migrate", "-config", cfg); code != 0 || !exists(envDB) {
		t.Fatalf("environment over file: %d %s", code, errs)
	}
	if code, _, errs := runCLI(t, "migrate", "-config", cfg, "-db-url", flagDB); code != 0 || !exists(flagDB) {
		t.Fatalf("flag over environment: %d %s", code, errs)
	}
	os.WriteFile(cfg, []byte(`{"database":{"urll":"x"}}`), 0o600)
	if code, _, errs := runCLI(t, "migrate", "-config", cfg); code != 1 || !strings.Contains(errs, "urll") {
		t.Errorf("unknown config key: %d %q", code, errs)
	}
	t.Setenv("KAVACH_AGENTS_MAX_PER_USER", "many")
	if code, _, errs := runCLI(t, "migrate", "-db-url", flagDB); code != 1 || !strings.Contains(errs, "KAVACH_AGENTS_MAX_PER_USER") {
		t.Errorf("bad environment value: %d %q", code, errs)
	}
}

// syncBuffer is a bytes.Buffer safe to read while serve writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startServe runs `kavach serve` with args on a free loopback port until t ends, and returns its
// base URL and output.
func startServe(t *testing.T, args ...string) (string, *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errs := &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, append([]string{"serve", "-addr", "127.0.0.1:0"}, args...), out, errs) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d: %s", code, errs.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := regexp.MustCompile(`listening on (http://\S+)`).FindStringSubmatch(out.String()); m != nil {
			return m[1], out
		}
		select {
		case code := <-done:
			done <- code
			t.Fatalf("serve exited %d: %q %q", code, out.String(), errs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("serve did not start: %q %q", out.String(), errs.String())
	return "", nil
}

var adminKey = regexp.MustCompile(`kvk_[A-Za-z0-9_-]{43}`)

func TestServePrintsTheAdminKeyOnceAndShutsDown(t *testing.T) {
	db := filepath.Join(t.TempDir(), "k.db")
	t.Run("first start", func(t *testing.T) {
		base, out := startServe(t, "-db-url", db)
		key := adminKey.FindString(out.String())
		if key == "" {
			t.Fatalf("no admin key printed: %q", out.String())
		}
		if status, body := call(t, "GET", base+"/dashboard/stats", key, ""); status != 200 {
			t.Fatalf("stats with the printed key: %d %s", status, body)
		}
	})
	t.Run("second start", func(t *testing.T) {
		// The key was made by the first start: none is printed.
		if _, out := startServe(t, "-db-url", db); strings.Contains(out.String(), "kvk_") {
			t.Errorf("the admin key was printed again: %q", out.String())
		}
	})
}

// TestServeNodesShareAServerDatabase: two `kavach serve` processes on one Postgres, MariaDB or
// sqld database, as behind a load balancer. One admin key is made between them, and what one
// node changes the other enforces at once.
func TestServeNodesShareAServerDatabase(t *testing.T) {
	for _, b := range testdb.Backends() {
		if b.Embedded {
			continue
		}
		t.Run(b.Name, func(t *testing.T) {
			c := b.New(t).Config
			args := []string{"-db-provider", c.Provider, "-db-url", c.URL}
			baseA, outA := startServe(t, args...)
			baseB, outB := startServe(t, args...)
			keyA, keyB := adminKey.FindString(outA.String()), adminKey.FindString(outB.String())
			if (keyA == "") == (keyB == "") {
				t.Fatalf("admin keys printed: %q by node A, %q by node B; want exactly one", keyA, keyB)
			}
			key := keyA + keyB
			status, body := call(t, "POST", baseA+"/agents", key, `{"ownerId":"u1","name":"shared","type":"autonomous","permissions":[{"resource":"db:*","actions":["read"]}]}`)
			if status != 201 {
				t.Fatalf("create on node A: %d %s", status, body)
			}
			var a struct{ ID, Token string }
			json.Unmarshal([]byte(body), &a)
			authorize := func(base string) string {
				_, body := call(t, "POST", base+"/authorize", a.Token, `{"action":"read","resource":"db:orders"}`)
				return body
			}
			if d := authorize(baseB); !strings.Contains(d, `"allowed":true`) {
				t.Fatalf("node B does not allow the agent node A made: %s", d)
			}
			authorize(baseA) // node A caches the agent
			if status, body := call(t, "DELETE", baseB+"/agents/"+a.ID, key, ""); status != 204 {
				t.Fatalf("revoke on node B: %d %s", status, body)
			}
			if d := authorize(baseA); !strings.Contains(d, `"allowed":false`) || !strings.Contains(d, "AGENT_REVOKED") {
				t.Errorf("node A still allows the agent node B revoked: %s", d)
			}
		})
	}
}

func call(t *testing.T, method, url, bearer, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+bearer)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
