package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestAgentsCommandsWorkOnTheDatabaseFile(t *testing.T) {
	db := filepath.Join(t.TempDir(), "k.db")
	if code, out, errs := runCLI(t, "migrate", "-db-url", db); code != 0 || !strings.Contains(out, "schema is at version 1") {
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

func TestServePrintsTheAdminKeyOnceAndShutsDown(t *testing.T) {
	db := filepath.Join(t.TempDir(), "k.db")
	start := func() (context.CancelFunc, chan int, *syncBuffer, string) {
		ctx, cancel := context.WithCancel(context.Background())
		out, errs := &syncBuffer{}, &syncBuffer{}
		done := make(chan int, 1)
		go func() { done <- run(ctx, []string{"serve", "-db-url", db, "-addr", "127.0.0.1:0"}, out, errs) }()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if m := regexp.MustCompile(`listening on (http://\S+)`).FindStringSubmatch(out.String()); m != nil {
				return cancel, done, out, m[1]
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("serve did not start: %q %q", out.String(), errs.String())
		return nil, nil, nil, ""
	}
	cancel, done, out, base := start()
	key := regexp.MustCompile(`kvk_[A-Za-z0-9_-]{43}`).FindString(out.String())
	if key == "" {
		t.Fatalf("no admin key printed: %q", out.String())
	}
	req, _ := http.NewRequest("GET", base+"/dashboard/stats", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stats with the printed key: %v %v", resp, err)
	}
	resp.Body.Close()
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	// A second start finds the key already made and prints none.
	cancel, done, out, _ = start()
	if strings.Contains(out.String(), "kvk_") {
		t.Errorf("the admin key was printed again: %q", out.String())
	}
	cancel()
	<-done
}
