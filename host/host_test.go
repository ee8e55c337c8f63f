package host_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kavachdev/kavach"
	"github.com/kavachdev/kavach/api"
	"github.com/kavachdev/kavach/api/apitest"
	"github.com/kavachdev/kavach/host"
	_ "github.com/kavachdev/kavach/storage/libsql"
)

// stepClock is a deterministic clock: each scenario step happens one second after the last.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *stepClock) set(i int) {
	c.mu.Lock()
	c.t = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	c.mu.Unlock()
}

// instance is a Kavach with a deterministic clock and entropy, so two instances given the same
// requests produce the same ids, tokens and timestamps.
type instance struct {
	k     *kavach.Kavach
	clock *stepClock
	key   string
	h     *api.Handler
}

func newInstance(t testing.TB, opt api.Options) *instance {
	t.Helper()
	in := &instance{clock: &stepClock{}}
	in.clock.set(0)
	var seed [32]byte
	k, err := kavach.New(context.Background(), kavach.Config{
		Database: kavach.Database{Provider: "sqlite", URL: filepath.Join(t.TempDir(), "k.db")},
		Clock:    in.clock.Now,
		Entropy:  rand.NewChaCha8(seed),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	in.k = k
	if in.key, _, err = k.APIKeys.Create(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	in.h = api.New(k, opt)
	return in
}

// serveFast starts the fasthttp server on a loopback port and returns its base URL.
func serveFast(t testing.TB, h *api.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := host.NewServer(h)
	go srv.Serve(ln)
	t.Cleanup(func() { host.Shutdown(srv, 5*time.Second) })
	return "http://" + ln.Addr().String()
}

// exchangeRaw sends raw bytes to the server at addr (host:port) on a connection of their own,
// ends the sending side, and reads one answer, waiting at most 10 s. The connection closes with
// a reset, which leaves no TIME_WAIT behind, so a fuzzer's many exchanges do not run the ports
// out. err is the write's or the read's: the server may close without answering.
func exchangeRaw(t testing.TB, addr string, raw []byte) (status int, body []byte, err error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).SetLinger(0)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(raw); err != nil {
		return 0, nil, err
	}
	conn.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, _ = io.ReadAll(resp.Body)
	return resp.StatusCode, body, nil
}

func TestScenarioServesIdenticalBytesOnFastHTTPAndNetHTTP(t *testing.T) {
	fast := newInstance(t, api.Options{})
	std := newInstance(t, api.Options{})
	if fast.key != std.key {
		t.Fatal("deterministic instances made different keys")
	}
	client := &http.Client{Timeout: 30 * time.Second}
	a, err := apitest.Run(apitest.HTTPDo(client, serveFast(t, fast.h)), fast.key, fast.clock.set)
	if err != nil {
		t.Fatalf("fasthttp: %v", err)
	}
	ts := httptest.NewServer(host.HTTPHandler(std.h))
	t.Cleanup(ts.Close)
	b, err := apitest.Run(apitest.HTTPDo(client, ts.URL), std.key, std.clock.set)
	if err != nil {
		t.Fatalf("net/http: %v", err)
	}
	if err := apitest.Diff(a, b); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d exchanges identical", len(a))
}

func TestOversizedBodiesGetJSON413OnBothServers(t *testing.T) {
	in := newInstance(t, api.Options{MaxBodyBytes: 1024})
	ts := httptest.NewServer(host.HTTPHandler(in.h))
	t.Cleanup(ts.Close)
	big := `{"ownerId":"u","name":"` + strings.Repeat("x", 4096) + `"}`
	for _, base := range []string{serveFast(t, in.h), ts.URL} {
		req, _ := http.NewRequest("POST", base+"/agents", strings.NewReader(big))
		req.Header.Set("Authorization", "Bearer "+in.key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e api.ErrorBody
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 413 || e.Error.Code != "PAYLOAD_TOO_LARGE" {
			t.Errorf("%s: %d %+v", base, resp.StatusCode, e)
		}
	}
}

// Requests fasthttp cannot read get a JSON error with a stable code, and neither the answer nor
// the server's log quotes them: their bytes carry credentials.
func TestUnreadableRequestsAreNotEchoed(t *testing.T) {
	in := newInstance(t, api.Options{})
	base := strings.TrimPrefix(serveFast(t, in.h), "http://")
	var logged bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(prev) })
	secret := in.key
	for _, c := range []struct {
		name, raw string
		status    int
		code      string
	}{
		{"header line without colon", "POST /authorize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + secret + "\n" + secret + "\r\n\r\n", 400, "BAD_REQUEST"},
		{"bad method", "P\x01ST /agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + secret + "\r\n\r\n", 400, "BAD_REQUEST"},
		{"bad header key", "GET /agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + secret + "\r\nBad\x01Key: " + secret + "\r\n\r\n", 400, "BAD_REQUEST"},
		{"bad content length", "POST /agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + secret + "\r\nContent-Length: 1" + secret + "\r\n\r\n", 400, "BAD_REQUEST"},
		{"headers too large", "GET /agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + secret + "\r\nCookie: " + strings.Repeat(secret, 400) + "\r\n\r\n", 431, "HEADERS_TOO_LARGE"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body, err := exchangeRaw(t, base, []byte(c.raw))
			if err != nil {
				t.Fatal(err)
			}
			var e api.ErrorBody
			if err := json.Unmarshal(body, &e); err != nil || status != c.status || e.Error.Code != c.code || e.Error.Message == "" {
				t.Errorf("%d %s; want %d %s", status, body, c.status, c.code)
			}
			if strings.Contains(string(body), secret) {
				t.Errorf("the answer quotes the request's credentials: %s", body)
			}
		})
	}
	if strings.Contains(logged.String(), secret) {
		t.Errorf("the log quotes a request's credentials:\n%s", logged.String())
	}
}

// Every rejected request leaves the stored data exactly as it was.
func TestRejectedRequestsChangeNothing(t *testing.T) {
	in := newInstance(t, api.Options{})
	base := serveFast(t, in.h)
	do := func(method, path, body, ct, auth string) (int, []byte) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		return resp.StatusCode, buf.Bytes()
	}
	status, body := do("POST", "/agents", `{"ownerId":"u","name":"keep","type":"autonomous","permissions":[{"resource":"a:*","actions":["read"]}]}`, "application/json", in.key)
	if status != 201 {
		t.Fatalf("%d %s", status, body)
	}
	var agent struct{ ID, Token string }
	json.Unmarshal(body, &agent)
	snapshot := func() string {
		res, err := in.k.DB().Exec(context.Background(),
			storageStmt("SELECT id, name, status, token_hash, expires_at, metadata, version FROM kavach_agents ORDER BY id"),
			storageStmt("SELECT agent_id, resource, actions, constraints FROM kavach_permissions ORDER BY id"),
			storageStmt("SELECT COUNT(*) FROM kavach_audit_logs"),
			storageStmt("SELECT COUNT(*) FROM kavach_users"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(res)
		return string(b)
	}
	before := snapshot()
	id := agent.ID
	for _, r := range []struct{ method, path, body, ct, auth string }{
		{"POST", "/agents", `{"ownerId":"u","name":"x","type":"autonomous","permissions":[{"resource":"a::b","actions":["r"]}]}`, "application/json", in.key},
		{"POST", "/agents", `{"ownerId":"u","name":"x","type":"autonomous","permissions":[{"resource":"a","actions":["r"]}],"metadata":"m"}`, "application/json", in.key},
		{"POST", "/agents", `{"ownerId":"u","name":"` + strings.Repeat("n", 200) + `","type":"autonomous","permissions":[{"resource":"a","actions":["r"]}]}`, "application/json", in.key},
		{"POST", "/agents", `{"ownerId":"u"`, "application/json", in.key},
		{"POST", "/agents", `{"ownerId":"u","name":"x","type":"autonomous","permissions":[{"resource":"a","actions":["r"]}]}`, "", ""},
		{"PATCH", "/agents/" + id, `{"name":"","permissions":[]}`, "application/json", in.key},
		{"PATCH", "/agents/" + id, `{"permissions":[{"resource":"ok","actions":["r"]},{"resource":"bad:","actions":["r"]}]}`, "application/json", in.key},
		{"PATCH", "/agents/" + id, `{"expiresAt":"2000-01-01T00:00:00Z"}`, "application/json", in.key},
		{"PATCH", "/agents/" + id, `{"name":"hijack"}`, "application/json", agent.Token},
		{"DELETE", "/agents/" + id, ``, "", agent.Token},
		{"DELETE", "/agents/" + id, ``, "", "kvk_wrongwrongwrongwrongwrongwrongwrongwrongwro"},
		{"POST", "/agents/" + id + "/rotate", ``, "", agent.Token},
		{"POST", "/authorize", `{"agentId":"` + id + `","action":"read","resource":"a:*"}`, "application/json", in.key},
		{"POST", "/authorize", `{"agentId":"` + id + `","action":"","resource":"a:b"}`, "application/json", in.key},
		{"POST", "/authorize", `{"agentId":"` + id + `","action":"read","resource":"a:b","arguments":"x"}`, "application/json", in.key},
		{"POST", "/agents/" + id + "/authorize", `not json`, "text/plain", in.key},
		{"DELETE", "/audit", ``, "", in.key},
		{"GET", "/audit?limit=abc", ``, "", in.key},
	} {
		status, body := do(r.method, r.path, r.body, r.ct, r.auth)
		var e api.ErrorBody
		if err := json.Unmarshal(body, &e); err != nil || status < 400 || status >= 500 || e.Error.Code == "" || e.Error.Message == "" {
			t.Errorf("%s %s %s: %d %s", r.method, r.path, r.body, status, body)
		}
	}
	if after := snapshot(); after != before {
		t.Errorf("rejected requests changed the database:\nbefore %s\nafter  %s", before, after)
	}
}

func TestDataEnvelopeWrapsReferenceRoutesOnly(t *testing.T) {
	in := newInstance(t, api.Options{Envelope: "data", InsecureNoAuth: true})
	base := serveFast(t, in.h)
	post := func(path, body string) (int, map[string]any) {
		resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	status, created := post("/agents", `{"ownerId":"u","name":"n","type":"autonomous","permissions":[{"resource":"a","actions":["read"]}]}`)
	data, ok := created["data"].(map[string]any)
	if status != 201 || !ok || data["id"] == nil {
		t.Fatalf("create without credentials in insecure mode: %d %v", status, created)
	}
	id := data["id"].(string)
	if status, m := post("/authorize", `{"agentId":"`+id+`","action":"write","resource":"a"}`); status != 403 || m["data"].(map[string]any)["allowed"] != false {
		t.Errorf("reference authorize: %d %v", status, m)
	}
	if status, m := post("/agents/"+id+"/authorize", `{"action":"read","resource":"a"}`); status != 200 || m["allowed"] != true {
		t.Errorf("SDK authorize is bare: %d %v", status, m)
	}
	if status, m := post("/agents", `{}`); status != 400 || m["error"] == nil {
		t.Errorf("errors are never enveloped: %d %v", status, m)
	}
}
