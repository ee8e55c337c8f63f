package libsql

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kavachdev/kavach/internal/jsonw"
	"github.com/kavachdev/kavach/storage"
)

// HranaHTTP is a libSQL server (Turso, or a self-hosted sqld) reached over HTTP with Hrana's
// HTTP API v2, for libsql://, https:// and http:// URLs. Kavach speaks the protocol itself here
// rather than through libsql-client-go, whose database/sql driver sends one HTTP request per
// statement: a batch of n statements cost it n+2 round trips (measured against a local sqld:
// about 350 two-statement write batches per second at any concurrency). Turso's own JavaScript
// client batches the way this type does.
//
// A batch is one request, one round trip: a Hrana batch whose first step is BEGIN (IMMEDIATE if
// it writes), whose statements each run only if the step before succeeded, then COMMIT if the
// last statement succeeded, then ROLLBACK if COMMIT did not succeed. Either every statement
// takes effect or none does. A single statement is sent alone and runs in its own transaction.
//
// Requests reuse the server's streams. A request without a baton makes sqld open a stream with a
// database connection of its own, which cost about 1.5 ms of every request on loopback (SELECT 1:
// 1.9 ms against 0.4 ms on a stream already open). So a request that ended with its stream
// outside any transaction hands the baton the server returned to the next request; batons idle
// for longer than hranaStreamIdle are dropped, before the server's own expiry.
type HranaHTTP struct {
	remoteBase
	pipeline string // the /v2/pipeline endpoint
	client   *http.Client

	streamsMu sync.Mutex
	streams   []hranaStream // idle streams, the most recently used last
	maxIdle   int
}

// hranaStream is an open stream on the server, between two requests.
type hranaStream struct {
	baton    string
	pipeline string // where its next request goes (the server may name another base URL)
	used     time.Time
}

// hranaStreamIdle is how long an idle stream is kept. sqld ends a stream idle for 10 s, and a
// request with the baton of an ended stream is refused before it runs anything (and then sent
// again on a new stream), so this only avoids that extra round trip.
const hranaStreamIdle = 5 * time.Second

// takeStream returns an idle stream to send a request on, or a new one (an empty baton).
func (db *HranaHTTP) takeStream() hranaStream {
	db.streamsMu.Lock()
	defer db.streamsMu.Unlock()
	for n := len(db.streams); n > 0; n = len(db.streams) {
		st := db.streams[n-1]
		db.streams = db.streams[:n-1]
		if time.Since(st.used) < hranaStreamIdle {
			return st
		}
	}
	return hranaStream{pipeline: db.pipeline}
}

// putStream keeps a stream for a later request.
func (db *HranaHTTP) putStream(st hranaStream) {
	db.streamsMu.Lock()
	defer db.streamsMu.Unlock()
	if len(db.streams) < db.maxIdle && !db.closed.Load() {
		st.used = time.Now()
		db.streams = append(db.streams, st)
	}
}

// dropStreams forgets every idle stream.
func (db *HranaHTTP) dropStreams() {
	db.streamsMu.Lock()
	defer db.streamsMu.Unlock()
	clear(db.streams)
	db.streams = db.streams[:0]
}

// busyRetryFor bounds how long a batch is retried when the server reports its database busy
// before the batch did anything (another stream holds the write lock).
const busyRetryFor = 5 * time.Second

// OpenLibSQL opens a libSQL server by URL: Hrana over HTTP for libsql://, https:// and http://,
// and libsql-client-go's WebSocket client for wss:// and ws://.
func OpenLibSQL(ctx context.Context, cfg storage.Config) (storage.DB, error) {
	raw := strings.TrimSpace(cfg.URL)
	if strings.HasPrefix(raw, "ws://") || strings.HasPrefix(raw, "wss://") {
		r, err := OpenRemote(ctx, cfg)
		if err != nil {
			return nil, err
		}
		return r, nil
	}
	h, err := OpenHranaHTTP(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return h, nil
}

// OpenHranaHTTP prepares a client for a libSQL server over HTTP. It contacts nothing:
// storage.Open checks that the server answers (see storage.OpenChecker).
func OpenHranaHTTP(ctx context.Context, cfg storage.Config) (*HranaHTTP, error) {
	raw := strings.TrimSpace(cfg.URL)
	clean, token, tls, err := parseRemoteURL(raw, cfg.AuthToken)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(clean)
	if err != nil {
		return nil, fmt.Errorf("kavach: invalid libsql database url %s", storage.QuoteURL(raw))
	}
	switch u.Scheme {
	case "libsql":
		u.Scheme = "https"
		if tls != nil && !*tls {
			u.Scheme = "http"
		}
	case "http", "https":
	default:
		return nil, fmt.Errorf("kavach: libsql database url %s: Hrana over HTTP needs libsql://, https:// or http://", storage.QuoteURL(raw))
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/v2/pipeline"
	n := cfg.MaxOpenConns
	if n <= 0 {
		n = remoteMaxConns
	}
	db := &HranaHTTP{
		remoteBase: newRemoteBase(raw, token),
		pipeline:   u.String(),
		maxIdle:    n,
		client: &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: remoteConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   remoteConnectTimeout,
			ResponseHeaderTimeout: remoteAnswerTimeout,
			ForceAttemptHTTP2:     true,
			// Ask for answers as they are: sqld gzips an answer when asked, and its answers are
			// small JSON. Compressing them took about a fifth of sqld's CPU per request (SELECT 1:
			// 530–660 µs against 400 µs), and the client's decompressing was not free either.
			DisableCompression:    true,
			MaxConnsPerHost:       n,
			MaxIdleConns:          n,
			MaxIdleConnsPerHost:   n,
			IdleConnTimeout:       60 * time.Second,
			ExpectContinueTimeout: time.Second,
		}},
	}
	return db, nil
}

// Dialect implements storage.DB.
func (db *HranaHTTP) Dialect() storage.Dialect { return storage.SQLite }

// Close implements storage.DB.
func (db *HranaHTTP) Close() error {
	if !db.closed.Swap(true) {
		db.dropStreams() // the server ends them when they have been idle for a while
		db.client.CloseIdleConnections()
	}
	return nil
}

// Exec implements storage.DB.
func (db *HranaHTTP) Exec(ctx context.Context, stmts ...storage.Stmt) ([]storage.Result, error) {
	batch, write, err := db.prepare(ctx, stmts)
	if err != nil || len(batch) == 0 {
		return nil, err
	}
	if write {
		defer db.unlockWrite()
	}
	var results []storage.Result
	if cerr := retryBusy(ctx, func() (busy bool) {
		results, busy, err = db.send(ctx, batch, stmts, write)
		return busy
	}); cerr != nil {
		return nil, cerr
	}
	return results, err
}

// send posts one pipeline request, on an idle stream if there is one. busy reports that the
// server refused the batch before it did anything because the database was locked, so it may be
// sent again.
func (db *HranaHTTP) send(ctx context.Context, batch []remoteStmt, stmts []storage.Stmt, write bool) (_ []storage.Result, busy bool, _ error) {
	return db.sendOn(ctx, db.takeStream(), batch, stmts, write)
}

// sendOn is send on stream st.
func (db *HranaHTTP) sendOn(ctx context.Context, st hranaStream, batch []remoteStmt, stmts []storage.Stmt, write bool) (_ []storage.Result, busy bool, _ error) {
	resp, err := db.post(ctx, st.pipeline, hranaRequest(st.baton, batch, write))
	if err != nil {
		return nil, false, db.classify(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, false, db.classify(err)
	}
	if resp.StatusCode == http.StatusBadRequest && st.baton != "" {
		// The server refuses a baton it no longer knows (the stream ended) before running
		// anything: send the request again on a new stream. The other idle streams are most
		// likely gone too (a restarted server knows none of them), so they are dropped rather
		// than each costing a refused round trip.
		db.dropStreams()
		return db.sendOn(ctx, hranaStream{pipeline: db.pipeline}, batch, stmts, write)
	}
	if resp.StatusCode != http.StatusOK {
		// The same wording libsql-client-go uses, which OpenError and classify recognise.
		return nil, false, db.classify(fmt.Errorf("error code %d: %s", resp.StatusCode, strings.TrimSpace(string(raw))))
	}
	var pr struct {
		Baton   *string `json:"baton"`
		BaseURL *string `json:"base_url"`
		Results []struct {
			Type     string `json:"type"`
			Response struct {
				Result json.RawMessage `json:"result"`
			} `json:"response"`
			Error *hranaError `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(raw, &pr); err != nil || len(pr.Results) == 0 {
		return nil, false, db.classify(fmt.Errorf("malformed response from the libsql server: %.200s", raw))
	}
	// A stream is kept only after a request that succeeded: it then ended outside a transaction
	// (a batch commits; a single statement runs in its own transaction unless it is BEGIN or the
	// like, whose streams are left to the server to end).
	keep := func() {
		if pr.Baton == nil || *pr.Baton == "" || len(batch) == 1 && batch[0].txControl {
			return
		}
		next := hranaStream{baton: *pr.Baton, pipeline: st.pipeline}
		if pr.BaseURL != nil && *pr.BaseURL != "" {
			next.pipeline = strings.TrimSuffix(*pr.BaseURL, "/") + "/v2/pipeline"
		}
		db.putStream(next)
	}
	first := pr.Results[0]
	if first.Type != "ok" {
		e := first.Error.err()
		i := 0
		if len(batch) > 1 {
			// The server rejected the whole batch before running it (it parses every step
			// first), so the message does not say which statement was wrong: ask it.
			if i = db.unparsable(ctx, batch); i < 0 {
				return nil, isBusy(e), db.classify(e)
			}
		}
		return nil, isBusy(e), db.stmtError(i, stmts[i].SQL, e)
	}
	out := make([]storage.Result, len(batch))
	if len(batch) == 1 {
		var r hranaResult
		if err := json.Unmarshal(first.Response.Result, &r); err != nil {
			return nil, false, db.classify(fmt.Errorf("malformed statement result: %v", err))
		}
		if err := r.into(batch[0], &out[0]); err != nil {
			return nil, false, db.stmtError(0, stmts[0].SQL, err)
		}
		keep()
		return out, false, nil
	}
	var br struct {
		StepResults []*hranaResult `json:"step_results"`
		StepErrors  []*hranaError  `json:"step_errors"`
	}
	if err := json.Unmarshal(first.Response.Result, &br); err != nil || len(br.StepResults) != len(batch)+3 || len(br.StepErrors) != len(batch)+3 {
		return nil, false, db.classify(fmt.Errorf("malformed batch result from the libsql server: %.200s", first.Response.Result))
	}
	// Steps: 0 BEGIN, 1..n the statements, n+1 COMMIT, n+2 ROLLBACK.
	if e := br.StepErrors[0]; e != nil {
		return nil, isBusy(e.err()), db.classify(e.err())
	}
	for i := range batch {
		if e := br.StepErrors[i+1]; e != nil {
			return nil, false, db.stmtError(i, stmts[i].SQL, e.err())
		}
		if br.StepResults[i+1] == nil {
			return nil, false, db.classify(fmt.Errorf("statement %d of the batch did not run", i))
		}
		if err := br.StepResults[i+1].into(batch[i], &out[i]); err != nil {
			return nil, false, db.stmtError(i, stmts[i].SQL, err)
		}
	}
	if e := br.StepErrors[len(batch)+1]; e != nil {
		return nil, false, db.classify(e.err())
	}
	if br.StepResults[len(batch)+1] == nil {
		return nil, false, db.classify(errors.New("the batch was not committed"))
	}
	keep()
	return out, false, nil
}

// unparsable returns the index of the first statement the server cannot prepare, using one
// pipeline of describe requests (which run nothing), or -1.
func (db *HranaHTTP) unparsable(ctx context.Context, batch []remoteStmt) int {
	b := []byte(`{"baton":null,"requests":[`)
	for i, s := range batch {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"type":"describe","sql":`...)
		b = jsonw.AppendString(b, s.sql)
		b = append(b, '}')
	}
	b = append(b, `,{"type":"close"}]}`...)
	resp, err := db.post(ctx, db.pipeline, b)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var pr struct {
		Results []struct {
			Type string `json:"type"`
		} `json:"results"`
	}
	if json.NewDecoder(resp.Body).Decode(&pr) != nil {
		return -1
	}
	for i, r := range pr.Results {
		if i < len(batch) && r.Type != "ok" {
			return i
		}
	}
	return -1
}

// post sends one pipeline request to the endpoint pipeline.
func (db *HranaHTTP) post(ctx context.Context, pipeline string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, pipeline, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if db.token != "" {
		req.Header.Set("Authorization", "Bearer "+db.token)
	}
	return db.client.Do(req)
}

func isBusy(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "SQLITE_BUSY") || strings.Contains(err.Error(), "database is locked"))
}

type hranaError struct {
	Message string `json:"message"`
	Code    string `json:"code"`
}

func (e *hranaError) err() error {
	if e == nil {
		return errors.New("the libsql server reported an error without a message")
	}
	if e.Code != "" && !strings.Contains(e.Message, e.Code) {
		return fmt.Errorf("%s (%s)", e.Message, e.Code)
	}
	return errors.New(e.Message)
}

type hranaResult struct {
	Cols []struct {
		Name *string `json:"name"`
	} `json:"cols"`
	Rows             [][]hranaValue `json:"rows"`
	AffectedRowCount int64          `json:"affected_row_count"`
}

func (r *hranaResult) into(s remoteStmt, out *storage.Result) error {
	if !s.rows {
		out.RowsAffected = r.AffectedRowCount
		return nil
	}
	out.Columns = make([]string, len(r.Cols))
	for i, c := range r.Cols {
		if c.Name != nil {
			out.Columns[i] = *c.Name
		}
	}
	out.Rows = make([][]any, len(r.Rows))
	for i, row := range r.Rows {
		vals := make([]any, len(row))
		for j, v := range row {
			x, err := v.value()
			if err != nil {
				return fmt.Errorf("row %d, column %d: %w", i, j, err)
			}
			vals[j] = x
		}
		out.Rows[i] = vals
	}
	if s.returning {
		out.RowsAffected = int64(len(out.Rows))
	}
	return nil
}

type hranaValue struct {
	Type   string          `json:"type"`
	Value  json.RawMessage `json:"value"`
	Base64 string          `json:"base64"`
}

func (v hranaValue) value() (any, error) {
	switch v.Type {
	case "null":
		return nil, nil
	case "integer":
		var s string
		if err := json.Unmarshal(v.Value, &s); err != nil {
			s = string(v.Value) // some servers send a bare number
		}
		return strconv.ParseInt(s, 10, 64)
	case "float":
		var f float64
		err := json.Unmarshal(v.Value, &f)
		return f, err
	case "text":
		var s string
		err := json.Unmarshal(v.Value, &s)
		return s, err
	case "blob":
		b, err := base64.StdEncoding.DecodeString(v.Base64)
		if err != nil {
			b, err = base64.RawStdEncoding.DecodeString(v.Base64)
		}
		if b == nil {
			b = []byte{}
		}
		return b, err
	}
	return nil, fmt.Errorf("unknown value type %q", v.Type)
}

// hranaRequest builds the pipeline request for a batch on the stream of baton (a new stream if
// it is empty). The stream stays open for the next request.
func hranaRequest(baton string, batch []remoteStmt, write bool) []byte {
	b := make([]byte, 0, 256*len(batch)+128)
	if baton == "" {
		b = append(b, `{"baton":null,"requests":[`...)
	} else {
		b = append(b, `{"baton":`...)
		b = append(jsonw.AppendString(b, baton), `,"requests":[`...)
	}
	if len(batch) == 1 {
		b = append(b, `{"type":"execute","stmt":`...)
		b = appendHranaStmt(b, batch[0].sql, batch[0].args, batch[0].rows)
		b = append(b, '}')
	} else {
		begin := "BEGIN"
		if write {
			begin = "BEGIN IMMEDIATE"
		}
		b = append(b, `{"type":"batch","batch":{"steps":[{"stmt":`...)
		b = appendHranaStmt(b, begin, nil, false)
		b = append(b, '}')
		for i, s := range batch {
			b = append(b, `,{"condition":{"type":"ok","step":`...)
			b = strconv.AppendInt(b, int64(i), 10)
			b = append(b, `},"stmt":`...)
			b = appendHranaStmt(b, s.sql, s.args, s.rows)
			b = append(b, '}')
		}
		n := int64(len(batch))
		b = append(b, `,{"condition":{"type":"ok","step":`...)
		b = strconv.AppendInt(b, n, 10)
		b = append(b, `},"stmt":`...)
		b = appendHranaStmt(b, "COMMIT", nil, false)
		b = append(b, `},{"condition":{"type":"not","cond":{"type":"ok","step":`...)
		b = strconv.AppendInt(b, n+1, 10)
		b = append(b, `}},"stmt":`...)
		b = appendHranaStmt(b, "ROLLBACK", nil, false)
		b = append(b, `}]}}`...)
	}
	return append(b, `]}`...)
}

func appendHranaStmt(b []byte, sql string, args []any, wantRows bool) []byte {
	b = append(b, `{"sql":`...)
	b = jsonw.AppendString(b, sql)
	b = append(b, `,"args":[`...)
	for i, a := range args {
		if i > 0 {
			b = append(b, ',')
		}
		switch x := a.(type) {
		case nil:
			b = append(b, `{"type":"null"}`...)
		case int64:
			b = append(b, `{"type":"integer","value":"`...)
			b = strconv.AppendInt(b, x, 10)
			b = append(b, `"}`...)
		case float64:
			b = append(b, `{"type":"float","value":`...)
			b = strconv.AppendFloat(b, x, 'g', -1, 64)
			b = append(b, '}')
		case string:
			b = append(b, `{"type":"text","value":`...)
			b = jsonw.AppendString(b, x)
			b = append(b, '}')
		case []byte:
			b = append(b, `{"type":"blob","base64":"`...)
			b = base64.StdEncoding.AppendEncode(b, x)
			b = append(b, `"}`...)
		}
	}
	b = append(b, `],"want_rows":`...)
	b = strconv.AppendBool(b, wantRows)
	return append(b, '}')
}
