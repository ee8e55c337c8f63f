package api_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kavachdev/kavach"
	"github.com/kavachdev/kavach/api"
	_ "github.com/kavachdev/kavach/storage/libsql"
)

// FuzzServe feeds arbitrary requests to the API. Whatever arrives, the answer is a well-formed
// response: never a panic, never a 5xx, and every error is {"error":{"code","message"}}.
func FuzzServe(f *testing.F) {
	ctx := context.Background()
	// Fuzzing runs in several worker processes: ids and keys must be the same in each, so the
	// seed corpus can name them.
	var seed [32]byte
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	k, err := kavach.New(ctx, kavach.Config{Database: kavach.Database{URL: ":memory:"}, Agents: kavach.AgentsConfig{MaxPerUser: -1},
		Entropy: rand.NewChaCha8(seed), Clock: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { k.Close() })
	key, _, err := k.APIKeys.Create(ctx, "fuzz")
	if err != nil {
		f.Fatal(err)
	}
	agent, err := k.Agents.Create(ctx, kavach.NewAgent{OwnerID: "u", Name: "n", Type: kavach.Autonomous,
		Permissions: []kavach.Permission{{Resource: "a:*", Actions: []string{"read"}, Constraints: &kavach.Constraints{AllowedArgPatterns: []string{"^x"}}}}})
	if err != nil {
		f.Fatal(err)
	}
	h := api.New(k, api.Options{MaxBodyBytes: 64 << 10})
	creds := []string{"", "Bearer " + key, "Bearer " + agent.Token, "Bearer kv_x", "Basic abc"}

	f.Add("POST", "/agents", `{"ownerId":"u","name":"n","type":"autonomous","permissions":[{"resource":"a:*","actions":["read"]}]}`, "application/json", uint8(1))
	f.Add("POST", "/agents/"+agent.ID+"/authorize", `{"action":"read","resource":"a:b","arguments":{"q":"xy"}}`, "application/json", uint8(2))
	f.Add("POST", "/authorize", `{"agentId":"`+agent.ID+`","action":"read","resource":"a:b"}`, "", uint8(1))
	f.Add("PATCH", "/agents/"+agent.ID, `{"expiresAt":null,"permissions":[{"resource":"b","actions":["*"],"constraints":{"timeWindow":{"start":"01:00","end":"02:00"}}}]}`, "application/json", uint8(1))
	f.Add("GET", "/audit?since=1700000000000&actions=read,write&limit=3", "", "", uint8(1))
	f.Add("GET", "/api/kavach/audit/export?format=csv", "", "", uint8(1))
	f.Add("DELETE", "/agents/%zz", "", "", uint8(1))
	f.Add("POST", "/authorize/token", `{"action":"read","resource":"a:b"}`, "application/json; charset=utf-8", uint8(2))

	f.Fuzz(func(t *testing.T, method, path, body, contentType string, cred uint8) {
		path, query, _ := cutQuery(path)
		hdr := api.MapHeader{"authorization": creds[int(cred)%len(creds)], "content-type": contentType, "user-agent": "fuzz"}
		resp := h.Serve(ctx, &api.Request{Method: method, Path: path, RawQuery: query, Header: hdr, Body: []byte(body), RemoteIP: "127.0.0.1"})
		if resp.Status >= 500 || resp.Status < 200 {
			t.Fatalf("%s %s %q: status %d %s", method, path, body, resp.Status, resp.Body)
		}
		if resp.Stream != nil || resp.Status == 204 {
			return
		}
		if !json.Valid(resp.Body) {
			t.Fatalf("%s %s: body is not JSON: %q", method, path, resp.Body)
		}
		if resp.Status >= 400 {
			var e api.ErrorBody
			var d kavach.Decision
			isError := json.Unmarshal(resp.Body, &e) == nil && e.Error.Code != "" && e.Error.Message != ""
			isDenial := resp.Status == 403 && json.Unmarshal(resp.Body, &d) == nil && !d.Allowed && d.Code != "" // the reference's authorize routes
			if !isError && !isDenial {
				t.Fatalf("%s %s: error body %s", method, path, resp.Body)
			}
		}
	})
}

func cutQuery(p string) (string, string, bool) {
	for i := 0; i < len(p); i++ {
		if p[i] == '?' {
			return p[:i], p[i+1:], true
		}
	}
	return p, "", false
}
