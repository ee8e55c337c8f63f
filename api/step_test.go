package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kavachdev/kavach/api"
	"github.com/kavachdev/kavach/api/apitest"
	"github.com/kavachdev/kavach/storage"
	"github.com/kavachdev/kavach/storage/libsql"
	"github.com/kavachdev/kavach/storage/storagetest"
)

var nativeStep api.StepFunc = func(ctx context.Context, env []byte) ([]byte, error) { return api.Step(ctx, env), nil }

const stepNow = int64(1764068400000) // 2025-11-25T11:00:00Z

func memDB(t testing.TB) storage.DB {
	t.Helper()
	db, err := libsql.OpenEmbedded(context.Background(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func drive(t testing.TB, db storage.DB, op string, input any, seed string, cfg api.StepConfig) (api.StepOutput, int) {
	t.Helper()
	return driveWith(t, nativeStep, db, op, input, seed, cfg)
}

// driveWith is drive through step.
func driveWith(t testing.TB, step api.StepFunc, db storage.DB, op string, input any, seed string, cfg api.StepConfig) (api.StepOutput, int) {
	t.Helper()
	in, _ := json.Marshal(input)
	out, rounds, err := api.Drive(context.Background(), step, db, api.StepInput{Op: op, Input: in, Now: stepNow, Seed: api.NewSeed(sha256.Sum256([]byte(seed))), Config: cfg}, 64)
	if err != nil {
		t.Fatal(err)
	}
	return out, rounds
}

// migrated returns a database whose schema was created through the step protocol itself.
func migrated(t testing.TB) storage.DB {
	db := memDB(t)
	if out, _ := drive(t, db, "migrate", nil, "m", api.StepConfig{}); out.Status != "done" {
		t.Fatalf("migrate: %+v", out.Error)
	}
	if out, rounds := drive(t, db, "verify", nil, "v", api.StepConfig{}); out.Status != "done" || rounds != 1 {
		t.Fatalf("verify: %+v after %d rounds", out.Error, rounds)
	}
	return db
}

func TestStepRunsTheScenario(t *testing.T) {
	run := func() []apitest.Exchange {
		db := migrated(t)
		clock := stepNow
		do := apitest.StepDo(nativeStep, db, api.StepConfig{}, func() int64 { return clock })
		// The admin key is created through the protocol too, as an edge host bootstraps it.
		key := createKey(t, db)
		ex, err := apitest.Run(do, key, func(i int) { clock = stepNow + int64(i)*1000 })
		if err != nil {
			t.Fatal(err)
		}
		return ex
	}
	a, b := run(), run()
	if err := apitest.Diff(a, b); err != nil {
		t.Fatalf("two runs with the same clock and seeds differ: %v", err)
	}
}

// createKey makes an admin key by writing it directly, as `kavach keys create` would.
func createKey(t testing.TB, db storage.DB) string {
	t.Helper()
	const key = "kvk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB"
	sum := sha256.Sum256([]byte(key))
	var hex strings.Builder
	for _, b := range sum {
		hex.WriteString(string("0123456789abcdef"[b>>4]) + string("0123456789abcdef"[b&15]))
	}
	if _, err := db.Exec(context.Background(), storage.Stmt{SQL: "INSERT INTO kavach_api_keys (id, name, key_hash, key_prefix, created_at) VALUES ('k', 'test', ?, ?, 0)", Args: []any{hex.String(), key[:12]}}); err != nil {
		t.Fatal(err)
	}
	return key
}

func TestStepAuthorizeTakesOneRoundAndAuditsAsAnEffect(t *testing.T) {
	db := migrated(t)
	key := createKey(t, db)
	out, rounds := drive(t, db, "handle", map[string]any{"method": "POST", "path": "/agents",
		"headers": map[string]string{"authorization": "Bearer " + key, "content-type": "application/json"},
		"body":    `{"ownerId":"u","name":"n","type":"autonomous","permissions":[{"resource":"a:*","actions":["read"]},{"resource":"rl:*","actions":["read"],"constraints":{"maxCallsPerHour":1}}]}`}, "c", api.StepConfig{})
	var created struct {
		Status int
		Body   string
	}
	json.Unmarshal(out.Result, &created)
	if created.Status != 201 || rounds != 2 { // key check, then the create batch
		t.Fatalf("create: %d after %d rounds: %s", created.Status, rounds, created.Body)
	}
	var agent struct{ ID, Token string }
	json.Unmarshal([]byte(created.Body), &agent)

	for _, c := range []struct {
		op     string
		input  map[string]any
		rounds int
		want   string
	}{
		{"authorize", map[string]any{"agentId": agent.ID, "action": "read", "resource": "a:b"}, 1, `"allowed":true`},
		{"authorizeToken", map[string]any{"token": agent.Token, "action": "write", "resource": "a:b"}, 1, `"allowed":false`},
		{"authorize", map[string]any{"agentId": agent.ID, "action": "read", "resource": "rl:x"}, 2, `"allowed":true`}, // + the rate counter
		{"authorize", map[string]any{"agentId": agent.ID, "action": "read", "resource": "rl:x"}, 2, `"code":"RATE_LIMITED"`},
	} {
		out, rounds := drive(t, db, c.op, c.input, c.op+c.want, api.StepConfig{})
		if out.Status != "done" || rounds != c.rounds || !strings.Contains(string(out.Result), c.want) {
			t.Errorf("%s %v: %s after %d rounds: %s", c.op, c.input, out.Status, rounds, out.Result)
		}
		// The audit row and, on SQLite, the move of its agent's chain head.
		if len(out.Effects) != 2 || !strings.Contains(out.Effects[0].SQL, "INTO kavach_audit_logs") || !strings.Contains(out.Effects[1].SQL, "INTO kavach_audit_heads") {
			t.Errorf("effects %+v", out.Effects)
		}
	}
	res, _ := db.Exec(context.Background(), storage.Stmt{SQL: "SELECT COUNT(*) FROM kavach_audit_logs"})
	if res[0].Rows[0][0] != int64(4) {
		t.Errorf("%v audit rows after 4 decisions", res[0].Rows[0][0])
	}
}

// TestStepCreateWhoseAnswerIsLost: the host applies the create batch but loses its answer, and
// reports the batch's fact as unavailable. The step asks whether the agent is there (one more
// round, not a wait inside the step) and, since it is, answers 201 with the token; when the batch
// was not applied, it answers 503.
func TestStepCreateWhoseAnswerIsLost(t *testing.T) {
	for _, applied := range []bool{true, false} {
		db := migrated(t)
		key := createKey(t, db)
		lossy := &storagetest.LostAnswer{DB: db, Prefix: "INSERT INTO kavach_agents", Applied: applied}
		start := time.Now()
		out, rounds := drive(t, lossy, "handle", map[string]any{"method": "POST", "path": "/agents",
			"headers": map[string]string{"authorization": "Bearer " + key, "content-type": "application/json"},
			"body":    `{"ownerId":"u","name":"n","type":"autonomous","permissions":[{"resource":"a:*","actions":["read"]}]}`}, "c", api.StepConfig{})
		var created struct {
			Status int
			Body   string
		}
		json.Unmarshal(out.Result, &created)
		if !lossy.Lost() || rounds != 3 { // key check, the create batch, the check after its lost answer
			t.Fatalf("applied %v: %d rounds, answer lost: %v", applied, rounds, lossy.Lost())
		}
		// Natively the core asks again for up to 2 s while the database is unavailable; a step
		// must not: its database is the host, which answers in the next round.
		if el := time.Since(start); el >= 2*time.Second {
			t.Errorf("the step waited %v for an answer only the host can give", el)
		}
		if !applied {
			if created.Status != 503 || !strings.Contains(created.Body, "STORAGE_UNAVAILABLE") {
				t.Errorf("not applied: %d %s; want 503 STORAGE_UNAVAILABLE", created.Status, created.Body)
			}
			continue
		}
		var agent struct{ ID, Token string }
		json.Unmarshal([]byte(created.Body), &agent)
		if created.Status != 201 || agent.Token == "" {
			t.Fatalf("applied: %d %s; want 201 with the token", created.Status, created.Body)
		}
		out, _ = drive(t, db, "authorizeToken", map[string]any{"token": agent.Token, "action": "read", "resource": "a:b"}, "t", api.StepConfig{})
		if !strings.Contains(string(out.Result), `"allowed":true`) {
			t.Errorf("the token returned after the lost answer: %s", out.Result)
		}
	}
}

func TestStepReplayIsDeterministicAndChecksItsFacts(t *testing.T) {
	db := migrated(t)
	env := func(facts []api.Fact) []byte {
		b, _ := json.Marshal(api.StepInput{Op: "authorize", Input: json.RawMessage(`{"agentId":"x","action":"read","resource":"r"}`),
			Now: stepNow, Seed: api.NewSeed([32]byte{1}), Facts: facts})
		return b
	}
	first := api.Step(context.Background(), env(nil))
	var need api.StepOutput
	json.Unmarshal(first, &need)
	if need.Status != "need" || !need.ReadOnly || len(need.Stmts) != 2 {
		t.Fatalf("first step: %s", first)
	}
	res, err := db.Exec(context.Background(), api.FromWire(need.Stmts)...)
	facts := []api.Fact{api.NewFact(need.Key, res, err)}
	a, b := api.Step(context.Background(), env(facts)), api.Step(context.Background(), env(facts))
	if string(a) != string(b) || !strings.Contains(string(a), `"code":"AGENT_NOT_FOUND"`) {
		t.Fatalf("replays differ or are wrong:\n%s\n%s", a, b)
	}
	facts[0].Key = "0000"
	if out := string(api.Step(context.Background(), env(facts))); !strings.Contains(out, "FACTS_MISMATCH") {
		t.Errorf("foreign facts accepted: %s", out)
	}
}

func TestStepRejectsBadEnvelopes(t *testing.T) {
	seed := api.NewSeed([32]byte{})
	for _, c := range []struct{ env, code string }{
		{"", "UNSUPPORTED_CODEC"},
		{"\x01binary", "UNSUPPORTED_CODEC"},
		{"{not json", "BAD_ENVELOPE"},
		{`{"op":"authorize","now":1,"seed":"short"}`, "BAD_ENVELOPE"},
		{`{"op":"authorize","seed":"` + seed + `"}`, "BAD_ENVELOPE"},
		{`{"op":"fly","now":1,"seed":"` + seed + `"}`, "VALIDATION_FAILED"},
		{`{"op":"authorize","now":1,"seed":"` + seed + `","input":[]}`, "VALIDATION_FAILED"},
		{`{"op":"authorize","now":1,"seed":"` + seed + `","config":{"dialect":"oracle"}}`, "BAD_ENVELOPE"},
		{`{"op":"authorize","now":1,"seed":"` + seed + `","input":{"agentId":"a","action":"read","resource":"r"},"facts":[{"key":"k","results":[]}]}`, "FACTS_MISMATCH"},
		// Nesting deep enough to exhaust the stack of a recursive reader (64 MiB of brackets is
		// within the envelope limit) is refused at a fixed depth.
		{`{"op":"verify","now":1,"seed":"` + seed + `","x":` + strings.Repeat("[", 8<<20) + strings.Repeat("]", 8<<20) + `}`, "BAD_ENVELOPE"},
		{`{"op":"verify","now":1,"seed":"` + seed + `","input":` + strings.Repeat(`{"a":`, 1<<20) + "1" + strings.Repeat("}", 1<<20) + `}`, "BAD_ENVELOPE"},
	} {
		var out api.StepOutput
		raw := api.Step(context.Background(), []byte(c.env))
		if err := json.Unmarshal(raw, &out); err != nil || out.Status != "error" || out.Error.Code != c.code {
			t.Errorf("%q: %s", c.env, raw)
		}
	}
}

// FuzzStep: any envelope gets an envelope back, never a panic.
func FuzzStep(f *testing.F) {
	seed := api.NewSeed([32]byte{})
	f.Add(`{"op":"handle","now":1700000000000,"seed":"` + seed + `","input":{"method":"GET","path":"/health"}}`)
	f.Add(`{"op":"authorize","now":1700000000000,"seed":"` + seed + `","input":{"agentId":"a","action":"read","resource":"r"},"facts":[{"key":"x","results":[{"columns":["a"],"rows":[[{"int":"9223372036854775807"},{"blob":"AA=="},{"float":1.5},null,"s"]]}]}]}`)
	f.Add(`{"op":"migrate","now":1,"seed":"` + seed + `","facts":[{"key":"k","error":{"kind":"unique","message":"m","index":7}}]}`)
	f.Fuzz(func(t *testing.T, env string) {
		var out api.StepOutput
		raw := api.Step(context.Background(), []byte(env))
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("output is not an envelope: %q", raw)
		}
		switch out.Status {
		case "need", "done":
		case "error":
			if out.Error == nil || out.Error.Code == "" {
				t.Fatalf("error without code: %s", raw)
			}
		default:
			t.Fatalf("status %q", out.Status)
		}
	})
}

// StepInPlace decodes in the envelope's own memory. What the core keeps after a step (compiled
// permission sets are remembered process-wide) must not share that memory: a host may reuse the
// buffer, and keeping it alive would keep whole envelopes alive. The step function here
// scribbles over each envelope once its step is done; decisions made afterwards from the
// remembered set must be unaffected.
func TestStepKeepsNothingOfItsEnvelope(t *testing.T) {
	db := migrated(t)
	key := createKey(t, db)
	scribbling := func(ctx context.Context, env []byte) ([]byte, error) {
		b := bytes.Clone(env)
		out := api.StepInPlace(ctx, b)
		for i := range b {
			b[i] = 'x'
		}
		return out, nil
	}
	run := func(op string, input any) api.StepOutput {
		t.Helper()
		out, _ := driveWith(t, scribbling, db, op, input, op, api.StepConfig{})
		if out.Status != "done" {
			t.Fatalf("%s: %+v", op, out.Error)
		}
		return out
	}
	// A permission list no other test uses, so this test's first decision compiles it.
	out := run("handle", map[string]any{"method": "POST", "path": "/agents",
		"headers": map[string]string{"authorization": "Bearer " + key, "content-type": "application/json"},
		"body":    `{"ownerId":"u","name":"n","type":"autonomous","permissions":[{"resource":"scribble:keeps:*","actions":["read","list"]}]}`})
	var created struct{ Body string }
	json.Unmarshal(out.Result, &created)
	var agent struct{ ID string }
	json.Unmarshal([]byte(created.Body), &agent)
	for i := range 3 {
		if out := run("authorize", map[string]any{"agentId": agent.ID, "action": "list", "resource": "scribble:keeps:x"}); !strings.Contains(string(out.Result), `"allowed":true`) {
			t.Fatalf("decision %d: %s", i, out.Result)
		}
	}
}
