package wasmhost_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/kavachdev/kavach/api"
	"github.com/kavachdev/kavach/host/wasmhost"
)

// BenchmarkStart: a new process starting from a warm compilation cache, as New starts: compiling
// (a new runtime, the module read from the cache) and making the first instance (the module's Go
// runtime starting, the ABI check). ns/op is the whole start; ms/compile and ms/first-instance
// are its two parts. Closing the module afterwards is not timed.
func BenchmarkStart(b *testing.B) {
	dir := b.TempDir()
	m, err := wasmhost.New(context.Background(), wasmhost.Config{Wasm: wasmBytes, CacheDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	m.Close(context.Background())
	var compile, first time.Duration
	n := 0
	for b.Loop() {
		t0 := time.Now()
		m, err := wasmhost.Compile(context.Background(), wasmhost.Config{Wasm: wasmBytes, CacheDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := m.Grow(context.Background()); err != nil {
			b.Fatal(err)
		}
		compile, first, n = compile+t1.Sub(t0), first+time.Since(t1), n+1
		b.StopTimer()
		m.Close(context.Background())
		b.StartTimer()
	}
	b.ReportMetric(float64(compile.Microseconds())/1000/float64(n), "ms/compile")
	b.ReportMetric(float64(first.Microseconds())/1000/float64(n), "ms/first-instance")
}

// BenchmarkInstantiate: one more instance of a compiled module (the pool growing).
func BenchmarkInstantiate(b *testing.B) {
	m := newModule(b, wasmhost.Config{Instances: 1})
	for b.Loop() {
		if err := m.Grow(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthorizeStep: the final step of an authorize decision (JSON envelope with its facts
// given), natively and through the module.
func BenchmarkAuthorizeStep(b *testing.B) {
	db := memDB(b)
	key := prepare(b, nativeStep, db)
	create := map[string]any{"method": "POST", "path": "/agents", "headers": map[string]string{"authorization": "Bearer " + key, "content-type": "application/json"},
		"body": `{"ownerId":"u","name":"bench","type":"autonomous","permissions":[{"resource":"mcp:slack:*","actions":["read","write"]},{"resource":"mcp:jira:issues","actions":["read"]},{"resource":"db:analytics:*:read","actions":["query"]},{"resource":"fs:tmp:*","actions":["read","write","delete"]},{"resource":"mcp:github:*","actions":["read"]}]}`}
	in, _ := json.Marshal(create)
	out, _, err := api.Drive(context.Background(), nativeStep, db, api.StepInput{Op: "handle", Input: in, Now: now, Seed: api.NewSeed([32]byte{1})}, 8)
	if err != nil {
		b.Fatal(err)
	}
	var res struct{ Body string }
	json.Unmarshal(out.Result, &res)
	var agent struct{ ID string }
	json.Unmarshal([]byte(res.Body), &agent)
	// Record the facts of an authorize, then replay its final step.
	env := api.StepInput{Op: "authorize", Input: json.RawMessage(`{"agentId":"` + agent.ID + `","action":"read","resource":"mcp:github:repos"}`), Now: now, Seed: api.NewSeed([32]byte{2})}
	first, _ := json.Marshal(env)
	var need api.StepOutput
	json.Unmarshal(api.Step(context.Background(), first), &need)
	rows, err := db.Exec(context.Background(), api.FromWire(need.Stmts)...)
	env.Facts = []api.Fact{api.NewFact(need.Key, rows, err)}
	final, _ := json.Marshal(env)
	var done api.StepOutput
	if json.Unmarshal(api.Step(context.Background(), final), &done); done.Status != "done" {
		b.Fatalf("final step: %+v", done)
	}
	m := newModule(b, wasmhost.Config{Instances: 1})
	for _, c := range []struct {
		name string
		step api.StepFunc
	}{{"native", nativeStep}, {"wasm", m.Step}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.step(context.Background(), final); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// The target is a ratio, and this machine's speed drifts between two benchmarks run one
	// after the other by more than the margin: here the two steps alternate, batch by batch, so
	// both see the same machine. Each batch of one also finds the processor's caches holding
	// the other's code and data; native steps measured 9–11 µs here against 7–8 µs alone, so
	// this ratio reads lower than the two benchmarks above.
	const ratioBatch = 256
	b.Run("ratio", func(b *testing.B) {
		var native, wasm time.Duration
		for b.Loop() {
			t0 := time.Now()
			for range ratioBatch {
				nativeStep(context.Background(), final)
			}
			t1 := time.Now()
			for range ratioBatch {
				if _, err := m.Step(context.Background(), final); err != nil {
					b.Fatal(err)
				}
			}
			native, wasm = native+t1.Sub(t0), wasm+time.Since(t1)
		}
		b.ReportMetric(float64(native.Nanoseconds())/float64(ratioBatch*b.N)/1e3, "native-µs")
		b.ReportMetric(float64(wasm.Nanoseconds())/float64(ratioBatch*b.N)/1e3, "wasm-µs")
		b.ReportMetric(float64(wasm)/float64(native), "x-native")
	})
}
