// Package wasmhost runs Kavach's WebAssembly module (wasm/, built with `make wasm`) inside a Go
// program with wazero, and serves the module's storage needs from any Kavach storage backend.
//
// The module is compiled once (with an on-disk compilation cache, so a process start costs
// about 0.1 s instead of 2.4; see BenchmarkStart), and calls run on a pool of instances: an
// instance serves one call at a time, because the Go runtime inside it has a single thread. An
// instance that traps, runs out of its memory limit or is interrupted by its context is thrown
// away, and the next call gets a fresh one; other calls continue.
//
//	m, err := wasmhost.New(ctx, wasmhost.Config{Wasm: wasmBytes, CacheDir: dir, DB: db})
//	d, err := m.Run(ctx, "authorize", map[string]any{"agentId": id, "action": "read", "resource": "mcp:github:repos"})
package wasmhost

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	wapi "github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/kavachdev/kavach/api"
	"github.com/kavachdev/kavach/storage"
)

// Config configures a Module.
type Config struct {
	// Wasm is the module's bytes (build/kavach.wasm).
	Wasm []byte
	// CacheDir, when set, keeps compiled code on disk between processes.
	CacheDir string
	// Instances bounds the pool: at most this many calls run at once. Default 4.
	Instances int
	// MemoryLimitMiB bounds each instance's linear memory. Default 128.
	MemoryLimitMiB int
	// DB executes the statements the module needs. Required by Run and Serve, not by Step.
	DB storage.DB
	// Step is the configuration sent with every operation (dialect, API options, agents block).
	// The dialect defaults to DB's.
	Step api.StepConfig
	// MaxRounds bounds the database round trips of one operation. Default 1000 (an audit export
	// reads one page per round).
	MaxRounds int
	// Clock gives the time sent as "now". Default time.Now.
	Clock func() time.Time
	// Stderr receives the module's standard error. Default: discarded.
	Stderr io.Writer
}

// Module is a compiled module with its pool of instances. It is safe for concurrent use.
type Module struct {
	cfg      Config
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	slots    chan struct{} // one token per instance that may exist
	idle     chan *instance
	closing  sync.Once
}

type instance struct {
	mod                    wapi.Module
	alloc, free, call, abi wapi.Function
}

// ErrTrap reports that an instance failed (trapped, exceeded its memory or was interrupted). It
// has been discarded; retrying the call uses a fresh instance.
var ErrTrap = errors.New("wasmhost: the module instance failed")

// ErrEnvelopeTooLarge: the envelope is over api.MaxEnvelopeBytes; no instance was used.
var ErrEnvelopeTooLarge = errors.New("wasmhost: envelope too large")

// New compiles the module (see Compile) and makes its first instance, which checks the module's
// ABI version: the Module is ready to serve.
func New(ctx context.Context, cfg Config) (*Module, error) {
	m, err := Compile(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := m.Grow(ctx); err != nil {
		m.Close(ctx)
		return nil, err
	}
	return m, nil
}

// Compile compiles the module, from the compilation cache when it has it, without making an
// instance: the first call (or Grow) makes one. Most of a process's start is here; see
// BenchmarkStart.
func Compile(ctx context.Context, cfg Config) (*Module, error) {
	if len(cfg.Wasm) == 0 {
		return nil, errors.New("wasmhost: no module bytes (build it with `make wasm`)")
	}
	if cfg.Instances <= 0 {
		cfg.Instances = 4
	}
	if cfg.MemoryLimitMiB <= 0 {
		cfg.MemoryLimitMiB = 128
	}
	if cfg.MaxRounds <= 0 {
		cfg.MaxRounds = 1000
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Step.Dialect == "" && cfg.DB != nil {
		cfg.Step.Dialect = cfg.DB.Dialect().String()
	}
	// Not WithCloseOnContextDone: it makes the compiled code check for termination at every
	// function entry and loop, which slowed Go's code in the module 4 to 40 times (measured:
	// a trivial export 1.25 us instead of 29 ns). Cancellation is handled in Step instead.
	rc := wazero.NewRuntimeConfigCompiler().
		WithMemoryLimitPages(uint32(cfg.MemoryLimitMiB) * 16) // 64 KiB pages
	if cfg.CacheDir != "" {
		cache, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("wasmhost: compilation cache: %w", err)
		}
		rc = rc.WithCompilationCache(cache)
	}
	m := &Module{cfg: cfg, rt: wazero.NewRuntimeWithConfig(ctx, rc),
		slots: make(chan struct{}, cfg.Instances), idle: make(chan *instance, cfg.Instances)}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, m.rt); err != nil {
		m.rt.Close(ctx)
		return nil, err
	}
	var err error
	if m.compiled, err = m.rt.CompileModule(ctx, cfg.Wasm); err != nil {
		m.rt.Close(ctx)
		return nil, fmt.Errorf("wasmhost: compiling the module: %w", err)
	}
	return m, nil
}

func (m *Module) instantiate(ctx context.Context) (*instance, error) {
	stderr := m.cfg.Stderr
	if stderr == nil {
		stderr = io.Discard
	}
	if memoryAllocator != nil {
		ctx = experimental.WithMemoryAllocator(ctx, memoryAllocator)
	}
	mod, err := m.rt.InstantiateModule(ctx, m.compiled, wazero.NewModuleConfig().
		WithName(""). // anonymous, so many instances of one module can coexist
		WithStartFunctions("_initialize").
		WithSysWalltime().WithSysNanotime().WithRandSource(rand.Reader).
		WithEnv("GOGC", "400").WithEnv("GOMEMLIMIT", "64MiB").
		WithStderr(stderr))
	if err != nil {
		return nil, fmt.Errorf("wasmhost: instantiating the module: %w", err)
	}
	in := &instance{mod: mod, alloc: mod.ExportedFunction("kavach_alloc"), free: mod.ExportedFunction("kavach_free"),
		call: mod.ExportedFunction("kavach_call"), abi: mod.ExportedFunction("kavach_abi_version")}
	if in.alloc == nil || in.free == nil || in.call == nil || in.abi == nil {
		mod.Close(ctx)
		return nil, errors.New("wasmhost: the module lacks the kavach_* exports; is it Kavach's module?")
	}
	res, err := in.abi.Call(ctx)
	if err == nil && res[0] != api.StepABIVersion {
		err = fmt.Errorf("wasmhost: the module speaks ABI version %d; this host speaks %d", res[0], api.StepABIVersion)
	}
	if err != nil {
		mod.Close(ctx)
		return nil, err
	}
	return in, nil
}

// acquire takes an idle instance, or makes one if the pool has room, or waits.
func (m *Module) acquire(ctx context.Context) (*instance, error) {
	select {
	case in := <-m.idle:
		return in, nil
	default:
	}
	select {
	case in := <-m.idle:
		return in, nil
	case m.slots <- struct{}{}:
		in, err := m.instantiate(ctx)
		if err != nil {
			<-m.slots
			return nil, err
		}
		return in, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Grow adds one instance to the pool ahead of demand, if the pool has room.
func (m *Module) Grow(ctx context.Context) error {
	select {
	case m.slots <- struct{}{}:
	default:
		// The pool is full: replace an idle instance, which also measures instantiation.
		select {
		case in := <-m.idle:
			in.mod.Close(ctx)
		default:
			return nil
		}
	}
	in, err := m.instantiate(ctx)
	if err != nil {
		<-m.slots
		return err
	}
	m.idle <- in
	return nil
}

// release returns a healthy instance to the pool and discards a failed one.
func (m *Module) release(in *instance, failed error) {
	if failed != nil || in.mod.IsClosed() {
		in.mod.Close(context.Background())
		<-m.slots
		return
	}
	m.idle <- in
}

// Step runs one step of the protocol: it sends envelope to an instance and returns its answer.
// It has the type api.StepFunc, so api.Drive can drive it.
//
// A step does no I/O and ends on its own, so cancellation abandons rather than interrupts it:
// when ctx ends first, Step returns ctx's error at once, and the instance is closed instead of
// returned to the pool when its step finishes.
func (m *Module) Step(ctx context.Context, envelope []byte) ([]byte, error) {
	if len(envelope) > api.MaxEnvelopeBytes {
		return nil, fmt.Errorf("%w: %d bytes; the limit is %d", ErrEnvelopeTooLarge, len(envelope), api.MaxEnvelopeBytes)
	}
	in, err := m.acquire(ctx)
	if err != nil {
		return nil, err
	}
	if ctx.Done() == nil {
		out, err := in.step(ctx, envelope)
		return m.finish(in, out, err)
	}
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := in.step(context.WithoutCancel(ctx), envelope)
		done <- result{out, err}
	}()
	select {
	case r := <-done:
		return m.finish(in, r.out, r.err)
	case <-ctx.Done():
		go func() {
			<-done
			m.release(in, ctx.Err()) // discard: the caller has moved on
		}()
		return nil, fmt.Errorf("%w: %v", ErrTrap, ctx.Err())
	}
}

func (m *Module) finish(in *instance, out []byte, err error) ([]byte, error) {
	if err != nil {
		m.release(in, err)
		return nil, fmt.Errorf("%w: %v", ErrTrap, err)
	}
	m.release(in, nil)
	return out, nil
}

func (in *instance) step(ctx context.Context, envelope []byte) ([]byte, error) {
	res, err := in.alloc.Call(ctx, uint64(len(envelope)))
	if err != nil {
		return nil, err
	}
	ptr := uint32(res[0])
	if ptr == 0 {
		return nil, fmt.Errorf("kavach_alloc refused %d bytes", len(envelope))
	}
	mem := in.mod.Memory()
	if !mem.Write(ptr, envelope) {
		return nil, errors.New("envelope does not fit the module's memory")
	}
	res, err = in.call.Call(ctx, uint64(ptr), uint64(len(envelope)))
	if err != nil {
		return nil, err
	}
	outPtr, outLen := uint32(res[0]>>32), uint32(res[0])
	view, ok := mem.Read(outPtr, outLen)
	if !ok {
		return nil, errors.New("the module returned an output outside its memory")
	}
	out := append([]byte(nil), view...)
	if _, err := in.free.Call(ctx, uint64(ptr)); err != nil {
		return nil, err
	}
	if _, err := in.free.Call(ctx, uint64(outPtr)); err != nil {
		return nil, err
	}
	return out, nil
}

// Run performs one operation ("authorize", "authorizeToken", "handle", "migrate", "verify") to
// the end against the configured DB: it executes each batch the module needs, then the effects,
// and returns the result.
func (m *Module) Run(ctx context.Context, op string, input any) (json.RawMessage, error) {
	if m.cfg.DB == nil {
		return nil, errors.New("wasmhost: Run needs Config.DB")
	}
	raw, err := json.Marshal(input)
	if err != nil {
		return nil, err
	}
	var seed [32]byte
	rand.Read(seed[:])
	out, _, err := api.Drive(ctx, m.Step, m.cfg.DB, api.StepInput{Op: op, Input: raw, Now: m.cfg.Clock().UnixMilli(),
		Seed: api.NewSeed(seed), Config: m.cfg.Step}, m.cfg.MaxRounds)
	if err != nil {
		return nil, err
	}
	if out.Status == "error" {
		return nil, fmt.Errorf("kavach: %s: %s", out.Error.Code, out.Error.Message)
	}
	return out.Result, nil
}

// Serve answers an HTTP request from the module, as the fasthttp server answers it natively.
func (m *Module) Serve(ctx context.Context, r *api.Request) *api.Response {
	headers := map[string]string{}
	for _, name := range []string{"Authorization", "Content-Type", "User-Agent", "X-Forwarded-For"} {
		if v := r.Header.Get(name); v != "" {
			headers[strings.ToLower(name)] = v
		}
	}
	res, err := m.Run(ctx, "handle", map[string]any{"method": r.Method, "path": r.Path, "query": r.RawQuery,
		"headers": headers, "body": string(r.Body), "remoteIp": r.RemoteIP})
	if err != nil {
		return api.Fail(http.StatusServiceUnavailable, err.Error())
	}
	var ho struct {
		Status  int         `json:"status"`
		Headers [][2]string `json:"headers"`
		Body    string      `json:"body"`
	}
	if err := json.Unmarshal(res, &ho); err != nil {
		return api.Fail(http.StatusServiceUnavailable, "the module answered with a malformed response")
	}
	resp := &api.Response{Status: ho.Status, Body: []byte(ho.Body)}
	for _, h := range ho.Headers {
		resp.Header = append(resp.Header, api.Field{Name: h[0], Value: h[1]})
	}
	return resp
}

// Close discards every instance and the compiled module.
func (m *Module) Close(ctx context.Context) error {
	var err error
	m.closing.Do(func() { err = m.rt.Close(ctx) })
	return err
}
