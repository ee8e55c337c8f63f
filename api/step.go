package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/kavachdev/kavach"
	"github.com/kavachdev/kavach/storage"
)

// The step protocol (DESIGN.md, "Running everywhere") runs Kavach where the code cannot do its
// own I/O: inside WebAssembly, driven by a host whose database calls are asynchronous. The host
// calls Step with an envelope; the core runs the operation against a database that answers only
// from the facts in the envelope. The first batch it cannot answer ends the run with a "need";
// the host executes that batch (one round trip), appends the results to the facts and calls
// again. The run that finds everything it asks for returns "done" with the result and the
// effects: writes nobody waits for (audit rows), which the host executes after answering.
//
// A run is deterministic given the envelope: time is "now", randomness comes from "seed", so
// re-running with more facts repeats the same batches and ids. The first byte of an envelope is a
// codec tag; '{' is JSON, the only codec so far.

// StepABIVersion is the version of the envelope format and of the module's exports.
const StepABIVersion = 1

// MaxEnvelopeBytes bounds an input envelope. The module's kavach_alloc refuses a larger buffer
// (it answers 0), so an oversized request cannot exhaust an instance's memory; hosts check it
// before calling.
const MaxEnvelopeBytes = 64 << 20

// StepInput is the envelope a host sends.
type StepInput struct {
	Op     string          `json:"op"`
	Input  json.RawMessage `json:"input"`
	Facts  []Fact          `json:"facts"`
	Now    int64           `json:"now"`  // Unix milliseconds; the same in every round of an operation
	Seed   string          `json:"seed"` // 32 bytes, base64; the same in every round of an operation
	Config StepConfig      `json:"config"`
}

// StepConfig configures the core for a step. Hosts send the same config in every round.
type StepConfig struct {
	Dialect        string   `json:"dialect,omitempty"` // sqlite (default), postgres, mysql
	Envelope       string   `json:"envelope,omitempty"`
	InsecureNoAuth bool     `json:"insecureNoAuth,omitempty"`
	BasePath       string   `json:"basePath,omitempty"`
	TrustedProxies []string `json:"trustedProxies,omitempty"`
	Agents         struct {
		MaxPerUser            int    `json:"maxPerUser,omitempty"`
		TokenExpiry           string `json:"tokenExpiry,omitempty"`
		RequireExistingOwners bool   `json:"requireExistingOwners,omitempty"`
	} `json:"agents"`
}

// Fact is the outcome of one batch the host executed: its results, or the error it failed with.
type Fact struct {
	Key     string       `json:"key"`
	Results []FactResult `json:"results,omitempty"`
	Error   *FactError   `json:"error,omitempty"`
}

// FactResult is one statement's result.
type FactResult struct {
	Columns      []string  `json:"columns,omitempty"`
	Rows         [][]Value `json:"rows,omitempty"`
	RowsAffected int64     `json:"rowsAffected,omitempty"`
}

// FactError is a failed batch. Kind is unique, foreignKey, constraint, unavailable or other.
type FactError struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
	Index   int    `json:"index"` // the failing statement, when known
}

// StepOutput is the envelope a step returns.
type StepOutput struct {
	Status   string          `json:"status"` // need, done or error
	Key      string          `json:"key,omitempty"`
	Stmts    []WireStmt      `json:"stmts,omitempty"`
	ReadOnly bool            `json:"readOnly,omitempty"` // the needed batch only reads
	Result   json.RawMessage `json:"result,omitempty"`
	Effects  []WireStmt      `json:"effects,omitempty"`
	Error    *StepError      `json:"error,omitempty"`
}

// WireStmt is a statement as hosts receive it.
type WireStmt struct {
	SQL  string  `json:"sql"`
	Args []Value `json:"args"`
}

// StepError is a failed step.
type StepError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Value is a database value on the wire: null, a string, an integer as a JSON number (or
// {"int":"<decimal>"} beyond ±2^53, which JavaScript numbers cannot hold), {"float":x} and
// {"blob":"<base64>"}. It holds int64, float64, string, []byte or nil.
type Value struct{ V any }

const maxSafeInt = 1<<53 - 1

// MarshalJSON implements the wire form.
func (v Value) MarshalJSON() ([]byte, error) {
	switch x := v.V.(type) {
	case nil:
		return []byte("null"), nil
	case string:
		return json.Marshal(x)
	case int64:
		if x >= -maxSafeInt && x <= maxSafeInt {
			return strconv.AppendInt(nil, x, 10), nil
		}
		return []byte(`{"int":"` + strconv.FormatInt(x, 10) + `"}`), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return json.Marshal(map[string]string{"float": strconv.FormatFloat(x, 'g', -1, 64)})
		}
		return json.Marshal(map[string]float64{"float": x})
	case []byte:
		return []byte(`{"blob":"` + base64.StdEncoding.EncodeToString(x) + `"}`), nil
	case bool:
		if x {
			return []byte("1"), nil
		}
		return []byte("0"), nil
	case int:
		return Value{int64(x)}.MarshalJSON()
	case int32:
		return Value{int64(x)}.MarshalJSON()
	}
	return nil, fmt.Errorf("step: value of type %T cannot be sent", v.V)
}

// UnmarshalJSON implements the wire form.
func (v *Value) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0:
		return errors.New("empty value")
	case string(b) == "null":
		v.V = nil
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v.V = s
	case b[0] == '{':
		var o struct {
			Int   *string          `json:"int"`
			Float *json.RawMessage `json:"float"`
			Blob  *string          `json:"blob"`
		}
		if err := json.Unmarshal(b, &o); err != nil {
			return err
		}
		switch {
		case o.Int != nil:
			n, err := strconv.ParseInt(*o.Int, 10, 64)
			if err != nil {
				return fmt.Errorf("value %s: %v", b, err)
			}
			v.V = n
		case o.Float != nil:
			var f float64
			if err := json.Unmarshal(*o.Float, &f); err != nil {
				var s string
				if json.Unmarshal(*o.Float, &s) != nil {
					return fmt.Errorf("value %s is not a float", b)
				}
				if f, err = strconv.ParseFloat(s, 64); err != nil {
					return fmt.Errorf("value %s is not a float", b)
				}
			}
			v.V = f
		case o.Blob != nil:
			d, err := base64.StdEncoding.DecodeString(*o.Blob)
			if err != nil {
				return fmt.Errorf("value %s: %v", b, err)
			}
			v.V = d
		default:
			return fmt.Errorf("value %s has none of int, float, blob", b)
		}
	default:
		s := string(b)
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			v.V = n
		} else if f, err := strconv.ParseFloat(s, 64); err == nil {
			v.V = f // a number with a fraction or exponent
		} else {
			return fmt.Errorf("value %s is not a database value", b)
		}
	}
	return nil
}

// FromWire converts statements received from the protocol, for hosts that execute them with a
// storage.DB.
func FromWire(ws []WireStmt) []storage.Stmt {
	out := make([]storage.Stmt, len(ws))
	for i, w := range ws {
		args := make([]any, len(w.Args))
		for j, a := range w.Args {
			args[j] = a.V
		}
		out[i] = storage.Stmt{SQL: w.SQL, Args: args}
	}
	return out
}

// NewFact records the outcome of executing a needed batch, for hosts with a storage.DB.
func NewFact(key string, res []storage.Result, err error) Fact {
	f := Fact{Key: key}
	if err != nil {
		kind := "other"
		switch {
		case errors.Is(err, storage.ErrUnique):
			kind = "unique"
		case errors.Is(err, storage.ErrForeignKey):
			kind = "foreignKey"
		case errors.Is(err, storage.ErrConstraint):
			kind = "constraint"
		case errors.Is(err, storage.ErrUnavailable), errors.Is(err, storage.ErrClosed):
			kind = "unavailable"
		}
		fe := &FactError{Kind: kind, Message: err.Error()}
		var se *storage.StmtError
		if errors.As(err, &se) {
			fe.Index = se.Index
		}
		f.Error = fe
		return f
	}
	f.Results = make([]FactResult, len(res))
	for i, r := range res {
		fr := FactResult{Columns: r.Columns, RowsAffected: r.RowsAffected}
		if r.Rows != nil {
			fr.Rows = make([][]Value, len(r.Rows))
			for j, row := range r.Rows {
				vs := make([]Value, len(row))
				for c, x := range row {
					vs[c] = Value{x}
				}
				fr.Rows[j] = vs
			}
		}
		f.Results[i] = fr
	}
	return f
}

// BatchKey identifies a batch by its statements and arguments: the same key always means the
// same batch, which is how a replayed run checks that its facts belong to it. It is a 64-bit
// FNV-1a hash of the statements' text and typed arguments (not a security measure: the host
// executing the statements is trusted anyway).
func BatchKey(stmts []WireStmt) string {
	h := newBatchHash()
	for _, s := range stmts {
		h.stmt(s.SQL, valuesAsAny(s.Args))
	}
	return string(h.appendKey(nil))
}

// batchHash computes BatchKey; the core's statements are hashed as they are, without being
// converted to WireStmts first.
type batchHash uint64

func newBatchHash() batchHash { return 14695981039346656037 }

func hashBytes[T string | []byte](h batchHash, b T) batchHash {
	for i := 0; i < len(b); i++ {
		h ^= batchHash(b[i])
		h *= 1099511628211
	}
	return h
}

func (h *batchHash) stmt(sql string, args []any) {
	x := hashBytes(*h, sql)
	var buf [32]byte
	for _, a := range args {
		switch v := a.(type) {
		case nil:
			x = hashBytes(x, []byte{0})
		case string:
			x = hashBytes(hashBytes(x, []byte{1}), v)
		case int64:
			x = hashBytes(x, strconv.AppendInt(append(buf[:0], 2), v, 10))
		case int:
			x = hashBytes(x, strconv.AppendInt(append(buf[:0], 2), int64(v), 10))
		case float64:
			x = hashBytes(x, strconv.AppendFloat(append(buf[:0], 3), v, 'g', -1, 64))
		case []byte:
			x = hashBytes(hashBytes(x, []byte{4}), v)
		case bool:
			b := byte(0)
			if v {
				b = 1
			}
			x = hashBytes(x, []byte{5, b})
		}
		x = hashBytes(x, []byte{0xff})
	}
	*h = hashBytes(x, []byte{0xfe})
}

func (h batchHash) appendKey(b []byte) []byte { return strconv.AppendUint(b, uint64(h), 16) }

// batchKey is BatchKey of the statements as the core made them.
func batchKey(stmts []storage.Stmt, buf []byte) []byte {
	h := newBatchHash()
	for _, s := range stmts {
		h.stmt(s.SQL, s.Args)
	}
	return h.appendKey(buf)
}

// Value is laid out exactly as an interface value (a struct with one field of type any), so
// slices of Values are read as slices of interface values without copying them.
var _ = [1]struct{}{}[unsafe.Sizeof(Value{})-unsafe.Sizeof(any(nil))]

func valuesAsAny(vs []Value) []any {
	return unsafe.Slice((*any)(unsafe.Pointer(unsafe.SliceData(vs))), len(vs))
}

// errNeed ends a run at the first batch the facts do not answer. It is classified as
// unavailable storage, so the core's fail-closed paths treat it like any database failure, and
// as deferred, so the core does not wait to ask again; the step reports the need instead of the
// core's result.
var errNeed = storage.Classified(storage.ErrUnavailable, storage.Classified(storage.ErrDeferred, errors.New("step: batch not in facts")))

// factsDB answers batches from the facts of an envelope, in order.
type factsDB struct {
	dialect  storage.Dialect
	facts    []Fact
	next     int
	needed   bool // need holds the first batch the facts did not answer
	need     []storage.Stmt
	needKey  string
	mismatch error
	results  []storage.Result // where results are carved from; each batch gets its own part
}

func (f *factsDB) Dialect() storage.Dialect { return f.dialect }
func (f *factsDB) Close() error             { return nil }

func (f *factsDB) Exec(_ context.Context, stmts ...storage.Stmt) ([]storage.Result, error) {
	if f.needed || f.mismatch != nil {
		return nil, errNeed
	}
	var buf [16]byte
	key := batchKey(stmts, buf[:0])
	if f.next >= len(f.facts) {
		f.needed, f.need, f.needKey = true, stmts, string(key)
		return nil, errNeed
	}
	fact := f.facts[f.next]
	f.next++
	if fact.Key != string(key) {
		f.mismatch = fmt.Errorf("fact %d has key %s but the operation asked for batch %s: facts must come from this operation's own needs, replayed with the same input, now and seed", f.next-1, fact.Key, string(key))
		return nil, errNeed
	}
	if e := fact.Error; e != nil {
		kind := map[string]error{"unique": storage.ErrUnique, "foreignKey": storage.ErrForeignKey,
			"constraint": storage.ErrConstraint, "unavailable": storage.ErrUnavailable}[e.Kind]
		return nil, &storage.StmtError{Index: e.Index, SQL: stmts[min(max(e.Index, 0), len(stmts)-1)].SQL, Err: storage.Classified(kind, errors.New(e.Message))}
	}
	if len(fact.Results) != len(stmts) {
		f.mismatch = fmt.Errorf("fact %d has %d results for a batch of %d statements", f.next-1, len(fact.Results), len(stmts))
		return nil, errNeed
	}
	if len(f.results)+len(stmts) > cap(f.results) {
		f.results = make([]storage.Result, 0, max(len(stmts), 2*cap(f.results)))
	}
	out := f.results[len(f.results) : len(f.results)+len(stmts) : len(f.results)+len(stmts)]
	f.results = f.results[:len(f.results)+len(stmts)]
	for i, r := range fact.Results {
		out[i] = storage.Result{Columns: r.Columns, RowsAffected: r.RowsAffected}
		if r.Columns != nil {
			// The rows are handed over as they are (a fact is used once), read as the [][]any
			// they are laid out as.
			out[i].Rows = [][]any{}
			if r.Rows != nil {
				out[i].Rows = *(*[][]any)(unsafe.Pointer(&r.Rows))
			}
		}
	}
	return out, nil
}

// effects is the audit sink of a step: rows are returned to the host, which writes them after
// answering.
type effects struct {
	dialect storage.Dialect
	stmts   []storage.Stmt
}

func (e *effects) Append(_ context.Context, r *kavach.AuditRow) (bool, error) {
	e.stmts = append(e.stmts, r.Stmts(e.dialect)...)
	return true, nil
}

// handleInput is the input of the "handle" operation: one HTTP request.
type handleInput struct {
	Method     string            `json:"method"`
	Path       string            `json:"path"`
	Query      string            `json:"query"`
	Headers    map[string]string `json:"headers"`
	Body       string            `json:"body"`
	BodyBase64 string            `json:"bodyBase64"`
	RemoteIP   string            `json:"remoteIp"`
}

// handleOutput is the result of "handle": the HTTP response.
type handleOutput struct {
	Status     int         `json:"status"`
	Headers    [][2]string `json:"headers"`
	Body       string      `json:"body,omitempty"`
	BodyBase64 string      `json:"bodyBase64,omitempty"`
}

// authorizeInput is the input of the "authorize" and "authorizeToken" operations.
type authorizeInput struct {
	AgentID   string         `json:"agentId"`
	Token     string         `json:"token"`
	Action    string         `json:"action"`
	Resource  string         `json:"resource"`
	Arguments map[string]any `json:"arguments"`
	IP        string         `json:"ip"`
	UserAgent string         `json:"userAgent"`
}

// appendDecision writes a decision as the authorize operations return it: the Decision JSON
// plus the agent's id.
func appendDecision(b []byte, d *kavach.Decision) []byte {
	b = append(b, `{"allowed":`...)
	b = strconv.AppendBool(b, d.Allowed)
	if d.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendString(b, d.Reason)
	}
	b = append(b, `,"code":`...)
	b = appendString(b, string(d.Code))
	b = append(b, `,"auditId":`...)
	b = appendString(b, d.AuditID)
	if d.AgentID != "" {
		b = append(b, `,"agentId":`...)
		b = appendString(b, d.AgentID)
	}
	return append(b, '}')
}

var discardLog nopLogger

// Step runs one round of an operation. It never panics and always returns an envelope.
//
// Operations: "handle" (an HTTP request through the API), "authorize" and "authorizeToken" (the
// hot paths, without HTTP), "migrate" (create or upgrade the schema) and "verify" (check it).
func Step(ctx context.Context, envelope []byte) []byte {
	return StepInPlace(ctx, bytes.Clone(envelope))
}

// StepInPlace is Step for a caller that hands the envelope over, as the WebAssembly module does
// with the buffer the host wrote it into: the step may write to it and refer to it, so the
// caller must not use it again. It saves copying the envelope.
func StepInPlace(ctx context.Context, envelope []byte) (out []byte) {
	if len(envelope) == 0 || envelope[0] != '{' {
		return stepError("UNSUPPORTED_CODEC", "the first byte of an envelope names its codec; only '{' (JSON) is supported")
	}
	defer func() {
		if p := recover(); p != nil {
			out = stepError("INTERNAL_ERROR", fmt.Sprintf("step panicked: %v", p))
		}
	}()
	d := &decoding{}
	in, err := decodeEnvelope(envelope, d)
	if err != nil {
		return stepError("BAD_ENVELOPE", "envelope: "+err.Error())
	}
	st := &d.step
	if !decodeSeed(&st.seed, in.Seed) {
		return stepError("BAD_ENVELOPE", "seed must be 32 bytes in base64")
	}
	if in.Now <= 0 {
		return stepError("BAD_ENVELOPE", "now must be the current time in Unix milliseconds")
	}
	dialect := storage.SQLite
	if in.Config.Dialect != "" {
		if dialect, err = storage.ParseDialect(in.Config.Dialect); err != nil {
			return stepError("BAD_ENVELOPE", err.Error())
		}
	}
	db, sink := &st.db, &st.sink
	*db = factsDB{dialect: dialect, facts: in.Facts, results: st.results[:0]}
	*sink = effects{dialect: dialect, stmts: st.effects[:0]}
	st.now = time.UnixMilli(in.Now).UTC()
	st.rng.Seed(st.seed)
	k, err := kavach.New(ctx, kavach.Config{
		DB: db, Audit: sink, NoCache: true, NoSchemaCheck: true, Logger: discardLog,
		Clock:   st.clock,
		Entropy: &st.rng,
		Agents: kavach.AgentsConfig{MaxPerUser: in.Config.Agents.MaxPerUser, TokenExpiry: in.Config.Agents.TokenExpiry,
			RequireExistingOwners: in.Config.Agents.RequireExistingOwners},
	})
	if err != nil {
		return stepError("BAD_ENVELOPE", err.Error())
	}
	result, err := runOp(ctx, k, in)
	switch {
	case db.mismatch != nil:
		return stepError("FACTS_MISMATCH", db.mismatch.Error())
	case db.needed:
		return appendOutput(make([]byte, 0, 64+stmtsSize(db.need)), &StepOutput{Status: "need", Key: db.needKey, ReadOnly: readOnly(db.need)}, db.need, nil)
	case err != nil:
		ke := kavach.AsError(err)
		return stepError(string(ke.Code), ke.Message)
	}
	return appendOutput(make([]byte, 0, 64+len(result)+stmtsSize(sink.stmts)), &StepOutput{Status: "done", Result: result}, nil, sink.stmts)
}

// stepState is what one step allocates for the core, in one piece.
type stepState struct {
	db      factsDB
	sink    effects
	rng     rand.ChaCha8
	seed    [32]byte
	now     time.Time
	results [4]storage.Result // the first of db.results
	effects [2]storage.Stmt   // the first of sink.stmts: an authorize records its decision in two
}

func (st *stepState) clock() time.Time { return st.now }

// decodeSeed decodes a step's seed as base64.StdEncoding.DecodeString does, without allocating
// for a seed of the usual length, and reports whether it is 32 bytes.
func decodeSeed(dst *[32]byte, s string) bool {
	var b []byte
	if len(s) <= 44 {
		var buf [33]byte // base64.StdEncoding.DecodedLen(44); Decode only reads its source
		n, err := base64.StdEncoding.Decode(buf[:], unsafe.Slice(unsafe.StringData(s), len(s)))
		if err != nil {
			return false
		}
		b = buf[:n]
	} else {
		var err error
		if b, err = base64.StdEncoding.DecodeString(s); err != nil {
			return false
		}
	}
	return copy(dst[:], b) == 32 && len(b) == 32
}

func runOp(ctx context.Context, k *kavach.Kavach, in *StepInput) (json.RawMessage, error) {
	switch in.Op {
	case "handle":
		var hi handleInput
		if err := json.Unmarshal(in.Input, &hi); err != nil {
			return nil, badInput(err)
		}
		body := []byte(hi.Body)
		if hi.BodyBase64 != "" {
			b, err := base64.StdEncoding.DecodeString(hi.BodyBase64)
			if err != nil {
				return nil, badInput(err)
			}
			body = b
		}
		hdr := MapHeader{}
		for name, v := range hi.Headers {
			hdr[strings.ToLower(name)] = v
		}
		opt := Options{Envelope: in.Config.Envelope, InsecureNoAuth: in.Config.InsecureNoAuth, BasePath: in.Config.BasePath, Logger: discardLog}
		for _, p := range in.Config.TrustedProxies {
			pfx, err := parsePrefix(p)
			if err != nil {
				return nil, badInput(err)
			}
			opt.TrustedProxies = append(opt.TrustedProxies, pfx)
		}
		resp := New(k, opt).Serve(ctx, &Request{Method: hi.Method, Path: hi.Path, RawQuery: hi.Query, Header: hdr, Body: body, RemoteIP: hi.RemoteIP})
		if resp.Stream != nil {
			var buf bytes.Buffer
			if err := resp.Stream(&buf); err != nil {
				return nil, err
			}
			resp.Body = buf.Bytes()
		}
		ho := handleOutput{Status: resp.Status, Headers: make([][2]string, len(resp.Header))}
		for i, f := range resp.Header {
			ho.Headers[i] = [2]string{f.Name, f.Value}
		}
		if utf8.Valid(resp.Body) {
			ho.Body = string(resp.Body)
		} else {
			ho.BodyBase64 = base64.StdEncoding.EncodeToString(resp.Body)
		}
		return marshal(&ho)
	case "authorize", "authorizeToken":
		ai, err := decodeAuthorizeInput(in.Input)
		if err != nil {
			return nil, badInput(err)
		}
		req := kavach.Request{Action: ai.Action, Resource: ai.Resource, Arguments: ai.Arguments, IP: ai.IP, UserAgent: ai.UserAgent}
		var d kavach.Decision
		if in.Op == "authorize" {
			d, err = k.Authorize(ctx, ai.AgentID, req)
		} else {
			d, err = k.AuthorizeToken(ctx, ai.Token, req)
		}
		if err != nil {
			return nil, err
		}
		return appendDecision(make([]byte, 0, 160+len(d.Reason)), &d), nil
	case "migrate", "verify":
		s, err := kavach.Schema()
		if err != nil {
			return nil, err
		}
		if in.Op == "migrate" {
			err = storage.Migrate(ctx, k.DB(), s, kavach.Migrations, k.Now().Unix())
		} else {
			err = storage.Verify(ctx, k.DB(), s)
		}
		if err != nil {
			var se *storage.SchemaError
			if errors.As(err, &se) {
				return nil, &kavach.Error{Code: kavach.CodeSchema, Message: se.Error()}
			}
			return nil, err
		}
		return json.RawMessage(`{"ok":true}`), nil
	}
	return nil, &kavach.Error{Code: kavach.CodeValidation, Message: fmt.Sprintf("unknown operation %q (handle, authorize, authorizeToken, migrate, verify)", in.Op)}
}

func badInput(err error) error {
	return &kavach.Error{Code: kavach.CodeValidation, Message: "input: " + err.Error()}
}

func readOnly(stmts []storage.Stmt) bool {
	for _, s := range stmts {
		if q := strings.TrimSpace(s.SQL); len(q) < 6 || !strings.EqualFold(q[:6], "SELECT") {
			return false
		}
	}
	return true
}

func stepError(code, msg string) []byte {
	return appendOutput(nil, &StepOutput{Status: "error", Error: &StepError{Code: code, Message: msg}}, nil, nil)
}
