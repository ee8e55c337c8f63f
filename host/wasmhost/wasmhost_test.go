package wasmhost_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/kavachdev/kavach/api"
	"github.com/kavachdev/kavach/api/apitest"
	"github.com/kavachdev/kavach/host/wasmhost"
	"github.com/kavachdev/kavach/internal/wasmbuild"
	"github.com/kavachdev/kavach/storage"
	"github.com/kavachdev/kavach/storage/libsql"
)

var wasmBytes []byte

// TestMain builds the module once from the current sources, as `make wasm` does.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kavach-wasm")
	if err != nil {
		panic(err)
	}
	out := filepath.Join(dir, "kavach.wasm")
	if err := wasmbuild.Build(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if wasmBytes, err = os.ReadFile(out); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const now = int64(1764068400000)

var nativeStep api.StepFunc = func(ctx context.Context, env []byte) ([]byte, error) { return api.Step(ctx, env), nil }

// cacheDir is shared by the package's tests so the module is compiled once per run.
var cacheDir = filepath.Join(os.TempDir(), "kavach-wasmhost-test-cache")

func newModule(t testing.TB, cfg wasmhost.Config) *wasmhost.Module {
	t.Helper()
	cfg.Wasm = wasmBytes
	if cfg.CacheDir == "" {
		cfg.CacheDir = cacheDir
	}
	m, err := wasmhost.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

func memDB(t testing.TB) storage.DB {
	t.Helper()
	db, err := libsql.OpenEmbedded(context.Background(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// prepare migrates db through step and inserts a known admin key.
func prepare(t testing.TB, step api.StepFunc, db storage.DB) string {
	t.Helper()
	out, _, err := api.Drive(context.Background(), step, db, api.StepInput{Op: "migrate", Now: now, Seed: api.NewSeed([32]byte{9})}, 16)
	if err != nil || out.Status != "done" {
		t.Fatalf("migrate: %v %+v", err, out.Error)
	}
	const key = "kvk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB"
	sum := sha256.Sum256([]byte(key))
	if _, err := db.Exec(context.Background(), storage.Stmt{SQL: "INSERT INTO kavach_api_keys (id, name, key_hash, key_prefix, created_at) VALUES ('k', 'test', ?, ?, 0)", Args: []any{fmt.Sprintf("%x", sum), key[:12]}}); err != nil {
		t.Fatal(err)
	}
	return key
}

// The whole API scenario through the module, compared response by response with the native build
// running the same steps.
func TestScenarioThroughTheModuleMatchesNative(t *testing.T) {
	m := newModule(t, wasmhost.Config{})
	run := func(step api.StepFunc) []apitest.Exchange {
		db := memDB(t)
		key := prepare(t, step, db)
		clock := now
		ex, err := apitest.Run(apitest.StepDo(step, db, api.StepConfig{}, func() int64 { return clock }), key, func(i int) { clock = now + int64(i)*1000 })
		if err != nil {
			t.Fatal(err)
		}
		return ex
	}
	native, wasm := run(nativeStep), run(m.Step)
	if err := apitest.Diff(native, wasm); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d exchanges identical natively and in the module", len(wasm))
}

func TestConformanceVectorsInTheModule(t *testing.T) {
	m := newModule(t, wasmhost.Config{})
	vectors, err := apitest.LoadVectors()
	if err != nil || len(vectors) < 50 {
		t.Fatalf("%d vectors, %v", len(vectors), err)
	}
	for i, v := range vectors {
		got, err := m.Step(context.Background(), v.Envelope)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, v.Output) {
			t.Fatalf("vector %d (%s):\n got %s\nwant %s", i, v.Name, got, v.Output)
		}
	}
}

func TestRunAgainstABackend(t *testing.T) {
	db := memDB(t)
	m := newModule(t, wasmhost.Config{DB: db})
	if _, err := m.Run(context.Background(), "migrate", nil); err != nil {
		t.Fatal(err)
	}
	key := prepare(t, m.Step, db)
	resp := m.Serve(context.Background(), &api.Request{Method: "POST", Path: "/agents", Header: api.MapHeader{"authorization": "Bearer " + key, "content-type": "application/json"},
		Body: []byte(`{"ownerId":"u","name":"n","type":"autonomous","permissions":[{"resource":"a:*","actions":["read"]}]}`), RemoteIP: "127.0.0.1"})
	var agent struct{ ID, Token string }
	if err := json.Unmarshal(resp.Body, &agent); resp.Status != 201 || err != nil {
		t.Fatalf("create: %d %s", resp.Status, resp.Body)
	}
	res, err := m.Run(context.Background(), "authorizeToken", map[string]any{"token": agent.Token, "action": "read", "resource": "a:b"})
	if err != nil || !strings.Contains(string(res), `"allowed":true`) {
		t.Fatalf("authorize: %s %v", res, err)
	}
	rows, _ := db.Exec(context.Background(), storage.Stmt{SQL: "SELECT COUNT(*) FROM kavach_audit_logs"})
	if rows[0].Rows[0][0] != int64(1) {
		t.Errorf("the effect was not written: %v", rows[0].Rows)
	}
}

// A failing instance is discarded with a clean error; the pool keeps serving.
func TestTrapsAndCancellationDiscardTheInstanceOnly(t *testing.T) {
	m := newModule(t, wasmhost.Config{Instances: 2, MemoryLimitMiB: 48})
	ok := func() {
		t.Helper()
		out, err := m.Step(context.Background(), []byte(`{"op":"verify","now":1,"seed":"`+api.NewSeed([32]byte{})+`"}`))
		if err != nil || !bytes.Contains(out, []byte(`"status":"need"`)) {
			t.Fatalf("a healthy call failed: %s %v", out, err)
		}
	}
	ok()
	// More memory than the instance may have: the module cannot grow and traps.
	huge := append([]byte(`{"op":"verify","input":"`), bytes.Repeat([]byte("x"), 60<<20)...)
	if _, err := m.Step(context.Background(), append(huge, `"}`...)); !errors.Is(err, wasmhost.ErrTrap) {
		t.Errorf("an envelope beyond the memory limit: %v", err)
	}
	ok()
	// An envelope over the protocol's limit is refused before it reaches an instance.
	if _, err := m.Step(context.Background(), make([]byte, api.MaxEnvelopeBytes+1)); !errors.Is(err, wasmhost.ErrEnvelopeTooLarge) || errors.Is(err, wasmhost.ErrTrap) {
		t.Errorf("an envelope over the limit: %v", err)
	}
	ok()
	// A context already done interrupts the call.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Step(ctx, []byte(`{"op":"verify"}`)); err == nil {
		t.Error("a cancelled call succeeded")
	}
	ok()
	// Malformed envelopes are answered, not trapped on.
	for _, env := range []string{"", "garbage", `{"op":`} {
		out, err := m.Step(context.Background(), []byte(env))
		if err != nil || !bytes.Contains(out, []byte(`"status":"error"`)) {
			t.Errorf("%q: %s %v", env, out, err)
		}
	}
	// Concurrent calls share the pool of two instances.
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() { defer wg.Done(); ok() }()
	}
	wg.Wait()
}

// TestModuleRefusesOversizedBuffers: kavach_alloc answers 0 for a buffer over the envelope limit
// instead of allocating it (a 4 GiB request used to exhaust the instance's memory and trap), and
// the instance goes on working.
func TestModuleRefusesOversizedBuffers(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	mod, err := r.InstantiateWithConfig(ctx, wasmBytes, wazero.NewModuleConfig().WithStartFunctions("_initialize"))
	if err != nil {
		t.Fatal(err)
	}
	alloc := mod.ExportedFunction("kavach_alloc")
	for _, size := range []uint64{api.MaxEnvelopeBytes + 1, 1<<32 - 1} {
		res, err := alloc.Call(ctx, size)
		if err != nil || res[0] != 0 {
			t.Errorf("kavach_alloc(%d) = %v, %v; want 0", size, res, err)
		}
	}
	res, err := alloc.Call(ctx, 64)
	if err != nil || res[0] == 0 {
		t.Errorf("kavach_alloc(64) after refusals = %v, %v", res, err)
	}
	// A refused buffer (pointer 0) given to kavach_call is answered, not trapped on.
	res, err = mod.ExportedFunction("kavach_call").Call(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := mod.Memory().Read(uint32(res[0]>>32), uint32(res[0]))
	if !bytes.Contains(out, []byte("BAD_ENVELOPE")) {
		t.Errorf("kavach_call(0, 10) = %s", out)
	}
}

func TestCompilationCacheMakesLaterStartsFast(t *testing.T) {
	dir := t.TempDir()
	start := func() time.Duration {
		t0 := time.Now()
		m, err := wasmhost.New(context.Background(), wasmhost.Config{Wasm: wasmBytes, CacheDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		d := time.Since(t0)
		m.Close(context.Background())
		return d
	}
	cold, warm := start(), start()
	if warm >= cold {
		t.Errorf("warm start %v is not faster than cold %v", warm, cold)
	}
	t.Logf("compile+instantiate: cold %v, warm %v", cold, warm)
}
