package libsql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	libsqlclient "github.com/tursodatabase/libsql-client-go/libsql"

	"github.com/kavachdev/kavach/storage"
)

func init() {
	storage.Register("libsql", OpenLibSQL)
}

const (
	remoteMaxConns       = 10
	remoteConnectTimeout = 10 * time.Second
	// remoteAnswerTimeout bounds the wait for a server's answer to one request over HTTP, so a
	// server that accepts a batch and never answers fails it (as unavailable: it may have been
	// applied) instead of hanging its caller. Kavach's batches take milliseconds.
	remoteAnswerTimeout = 30 * time.Second
)

// Remote is a libSQL server (Turso, or a self-hosted sqld) reached through
// github.com/tursodatabase/libsql-client-go. The "libsql" provider uses it for WebSocket URLs
// (wss://, ws://); HTTP URLs go to HranaHTTP, which sends a batch in one request. Remote works
// over HTTP too, at n+2 round trips per batch. Its SQL is SQLite's.
//
// Atomicity: a batch of one statement is sent alone (the server runs it in its own transaction).
// A longer batch runs on one connection (one server stream) between BEGIN and COMMIT, and a
// failing statement is followed by ROLLBACK. A batch is never sent as one multi-statement string:
// the client turns such a string into a Hrana batch without BEGIN, which is not atomic, and
// WebSocket servers reject it. Batches that write start with BEGIN IMMEDIATE, so they hold the
// write lock from the start instead of failing when a read transaction cannot be upgraded.
type Remote struct {
	remoteBase
	db       *sql.DB
	maxConns int
}

// remoteBase is what both remote clients share: the URL as configured (only ever shown through
// redactedURL), the auth token (to redact), and the handle's state.
type remoteBase struct {
	url    string
	token  string
	writer chan struct{} // holds a token while a write batch of this handle is in flight
	closed atomic.Bool
}

// PlansEveryStatement tells writers that the server prepares each statement anew (see
// storage.PlansEveryStatement).
func (db *remoteBase) PlansEveryStatement() bool { return true }

func newRemoteBase(url, token string) remoteBase {
	return remoteBase{url: url, token: token, writer: make(chan struct{}, 1)}
}

// lockWrite waits for this handle's turn to send a write batch. A libSQL server has one writer,
// so several write transactions at once only queue on its lock, and sqld 0.24 queues them badly:
// under load its waiting connections were seen to spin at full CPU for minutes with none of them
// progressing. One write at a time per handle costs no throughput, as embedded SQLite shows.
func (db *remoteBase) lockWrite(ctx context.Context) error {
	select {
	case db.writer <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (db *remoteBase) unlockWrite() { <-db.writer }

// OpenRemote prepares a client for the libSQL database at cfg.URL with cfg.AuthToken (an auth
// token may instead be in the URL as ?authToken=, ?auth_token= or ?jwt=). It contacts nothing:
// storage.Open checks that the server answers with a real query (see storage.OpenChecker), since
// the client's own ping contacts nothing over HTTP.
func OpenRemote(ctx context.Context, cfg storage.Config) (*Remote, error) {
	raw := strings.TrimSpace(cfg.URL)
	clean, token, tls, err := parseRemoteURL(raw, cfg.AuthToken)
	if err != nil {
		return nil, err
	}
	db := &Remote{remoteBase: newRemoteBase(raw, token)}
	var opts []libsqlclient.Option
	if token != "" {
		opts = append(opts, libsqlclient.WithAuthToken(token))
	}
	if tls != nil {
		opts = append(opts, libsqlclient.WithTls(*tls))
	}
	connector, err := libsqlclient.NewConnector(clean, opts...)
	if err != nil {
		return nil, fmt.Errorf("kavach: invalid libsql database url %s: %s", db.quotedURL(), db.redact(storage.OneLine(err.Error())))
	}
	db.db = sql.OpenDB(boundedConnector{connector})
	n := cfg.MaxOpenConns
	if n <= 0 {
		n = remoteMaxConns
	}
	db.maxConns = n
	db.db.SetMaxOpenConns(n)
	db.db.SetMaxIdleConns(n)
	// sqld drops an idle Hrana stream after 10 s; a connection kept longer only costs a failed
	// request before database/sql replaces it.
	db.db.SetConnMaxIdleTime(9 * time.Second)
	return db, nil
}

// parseRemoteURL checks the URL and takes the auth token and the tls switch out of it: the
// client wants both as options.
func parseRemoteURL(raw, configToken string) (clean, token string, tls *bool, err error) {
	example := "e.g. libsql://my-db.turso.io or http://127.0.0.1:8080"
	u, perr := url.Parse(raw)
	if perr != nil {
		detail := "malformed url"
		var ue *url.Error
		if errors.As(perr, &ue) {
			detail = ue.Err.Error()
		}
		return "", "", nil, fmt.Errorf("kavach: invalid libsql database url %s: %s; %s", storage.QuoteURL(raw), detail, example)
	}
	switch u.Scheme {
	case "libsql", "https", "http", "wss", "ws":
	default:
		return "", "", nil, fmt.Errorf("kavach: libsql database url %s must start with libsql://, https://, http://, wss:// or ws://; %s",
			storage.QuoteURL(raw), example)
	}
	if u.Host == "" {
		return "", "", nil, fmt.Errorf("kavach: libsql database url %s has no host; %s", storage.QuoteURL(raw), example)
	}
	if u.User != nil {
		return "", "", nil, fmt.Errorf("kavach: libsql database url %s carries user information; pass the auth token as database.authToken (KAVACH_DATABASE_AUTH_TOKEN) instead",
			storage.QuoteURL(raw))
	}
	q := u.Query()
	for _, k := range []string{"authToken", "auth_token", "jwt"} {
		if v := q.Get(k); v != "" {
			if token != "" && token != v {
				return "", "", nil, fmt.Errorf("kavach: libsql database url %s carries two different auth tokens", storage.QuoteURL(raw))
			}
			token = v
		}
		q.Del(k)
	}
	if token != "" && configToken != "" && token != configToken {
		return "", "", nil, fmt.Errorf("kavach: libsql database url %s carries an auth token and database.authToken sets a different one; keep one of them",
			storage.QuoteURL(raw))
	}
	if token == "" {
		token = configToken
	}
	if q.Has("tls") {
		switch q.Get("tls") {
		case "0":
			tls = new(bool)
		case "1":
			tls = new(bool)
			*tls = true
		default:
			return "", "", nil, fmt.Errorf("kavach: libsql database url %s: tls must be 0 or 1", storage.QuoteURL(raw))
		}
		if u.Scheme != "libsql" {
			return "", "", nil, fmt.Errorf("kavach: libsql database url %s: ?tls= only applies to libsql:// urls (use http:// or ws:// for plain text)",
				storage.QuoteURL(raw))
		}
		if !*tls && u.Port() == "" {
			return "", "", nil, fmt.Errorf("kavach: libsql database url %s: libsql:// with ?tls=0 needs an explicit port", storage.QuoteURL(raw))
		}
		q.Del("tls")
	}
	for k := range q {
		return "", "", nil, fmt.Errorf("kavach: libsql database url %s has unknown parameter %q (known: authToken, tls)", storage.QuoteURL(raw), k)
	}
	u.RawQuery = ""
	return u.String(), token, tls, nil
}

// boundedConnector bounds connection set-up by the context and a timeout. The WebSocket client
// ignores the context and waits up to two minutes for an unresponsive server.
type boundedConnector struct{ driver.Connector }

func (c boundedConnector) Connect(ctx context.Context) (driver.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, remoteConnectTimeout)
	defer cancel()
	type result struct {
		c   driver.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		conn, err := c.Connector.Connect(ctx)
		ch <- result{conn, err}
	}()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, fmt.Errorf("connecting: %w", ctx.Err())
	}
}

// Dialect implements storage.DB.
func (db *Remote) Dialect() storage.Dialect { return storage.SQLite }

// Close implements storage.DB.
func (db *Remote) Close() error {
	if db.closed.Swap(true) {
		return nil
	}
	err := db.db.Close()
	if err != nil && strings.Contains(err.Error(), "failed to close WebSocket") {
		// sqld drops the socket without answering the close frame; the connection is closed
		// all the same.
		err = nil
	}
	return err
}

type remoteStmt struct {
	sql       string
	args      []any
	rows      bool // returns rows: run with Query
	write     bool
	returning bool
	txControl bool // BEGIN, COMMIT, ROLLBACK and the like: they open or end a transaction
	params    int  // number of ? placeholders; -1 if the statement uses numbered or named ones
}

// Exec implements storage.DB.
func (db *Remote) Exec(ctx context.Context, stmts ...storage.Stmt) ([]storage.Result, error) {
	batch, write, err := db.prepare(ctx, stmts)
	if err != nil || len(batch) == 0 {
		return nil, err
	}
	if write {
		defer db.unlockWrite()
	}
	results := make([]storage.Result, len(batch))
	if len(batch) == 1 {
		// A statement refused because another stream holds the write lock did nothing: retry.
		if cerr := retryBusy(ctx, func() bool {
			err = db.runAlone(ctx, batch[0], &results[0], write)
			return err != nil && isBusy(err)
		}); cerr != nil {
			return nil, cerr
		}
		if err != nil {
			return nil, db.stmtError(0, stmts[0].SQL, err)
		}
		return results, nil
	}
	conn, err := db.begin(ctx, write)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	for i, s := range batch {
		if err := runRemote(ctx, conn, s, &results[i]); err != nil {
			db.rollback(ctx, conn, err)
			return nil, db.stmtError(i, stmts[i].SQL, err)
		}
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		db.rollback(ctx, conn, err)
		return nil, db.classify(err)
	}
	return results, nil
}

// runAlone runs one statement on a connection of its own.
//
// Through *sql.DB, database/sql would send it again on another connection after the driver
// returned driver.ErrBadConn, which promises that nothing reached the server. libsql-client-go
// returns it also when the answer was lost after the statement was sent, so a write could run
// twice (seen with an audit batch whose answer was lost: the batch ran again). Here a statement
// is sent again on another connection only when the driver could not write the request
// (sentNothing) or when it only reads.
func (db *Remote) runAlone(ctx context.Context, s remoteStmt, out *storage.Result, write bool) error {
	conn, err := db.onConn(ctx, func(c *sql.Conn) error { return runRemote(ctx, c, s, out) },
		func(err error) bool { return !write || sentNothing(err) })
	if conn != nil {
		conn.Close()
	}
	return err
}

// onConn runs run on a connection of its own, which it returns when run succeeds. When the
// connection turns out to be broken (a pooled one may have died while idle) and again(err)
// allows, run is tried on another connection, up to four in all.
func (db *Remote) onConn(ctx context.Context, run func(*sql.Conn) error, again func(error) bool) (*sql.Conn, error) {
	var err error
	for range 4 {
		var conn *sql.Conn
		if conn, err = db.db.Conn(ctx); err != nil {
			return nil, err
		}
		if err = run(conn); err == nil {
			return conn, nil
		}
		broken := db.discardIfBroken(conn, err)
		conn.Close()
		if !broken || !again(err) {
			break
		}
	}
	return nil, err
}

// sentNothing reports whether err, from libsql-client-go's WebSocket connection, happened while
// writing the request (coder/websocket's wsjson says "failed to write"), before anything reached
// the server.
func sentNothing(err error) bool {
	return errors.Is(err, driver.ErrBadConn) && strings.Contains(err.Error(), "failed to write")
}

// begin starts a transaction on a connection of its own. While another stream holds the write
// lock, BEGIN fails without having done anything, so it is tried again.
func (db *Remote) begin(ctx context.Context, write bool) (*sql.Conn, error) {
	stmt := "BEGIN"
	if write {
		stmt = "BEGIN IMMEDIATE"
	}
	var conn *sql.Conn
	var err error
	if cerr := retryBusy(ctx, func() bool {
		conn, err = db.beginOnce(ctx, stmt)
		return isBusy(err)
	}); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, db.classify(err)
	}
	return conn, nil
}

// beginOnce runs stmt on a connection of its own. A pooled connection may have died while idle
// (a WebSocket to a server that restarted): BEGIN then fails without having done anything, so
// another connection is tried (onConn).
func (db *Remote) beginOnce(ctx context.Context, stmt string) (*sql.Conn, error) {
	return db.onConn(ctx, func(c *sql.Conn) error {
		_, err := c.ExecContext(ctx, stmt)
		return err
	}, func(error) bool { return true })
}

// stmtError is remoteBase.stmtError; a lost connection also drops the idle ones.
func (db *Remote) stmtError(i int, sql string, err error) error {
	err = db.remoteBase.stmtError(i, sql, err)
	if errors.Is(err, storage.ErrUnavailable) {
		db.dropIdle()
	}
	return err
}

// rollback ends a failed batch's transaction. If that cannot be done the connection is dropped:
// the server rolls back a transaction whose stream is closed.
func (db *Remote) rollback(ctx context.Context, conn *sql.Conn, cause error) {
	if db.discardIfBroken(conn, cause) {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := conn.ExecContext(rctx, "ROLLBACK"); err != nil && !strings.Contains(err.Error(), "no transaction is active") {
		conn.Raw(func(any) error { return driver.ErrBadConn })
	}
}

// discardIfBroken makes database/sql drop conn if err says the connection is unusable. The idle
// connections are dropped too: when one connection broke because the server went away (a
// restart), so did the others, and each would otherwise cost a later batch a failure.
func (db *Remote) discardIfBroken(conn *sql.Conn, err error) bool {
	if !remoteConnError(err) {
		return false
	}
	conn.Raw(func(any) error { return driver.ErrBadConn })
	db.dropIdle()
	return true
}

func (db *Remote) dropIdle() {
	db.db.SetMaxIdleConns(0)
	db.db.SetMaxIdleConns(db.maxConns)
}

type remoteQueryer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func runRemote(ctx context.Context, q remoteQueryer, s remoteStmt, out *storage.Result) error {
	if !s.rows {
		r, err := q.ExecContext(ctx, s.sql, s.args...)
		if err != nil {
			return err
		}
		n, err := r.RowsAffected()
		out.RowsAffected = n
		return err
	}
	rows, err := q.QueryContext(ctx, s.sql, s.args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	out.Columns = cols
	out.Rows = [][]any{}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		row := make([]any, len(cols))
		for i, v := range vals {
			row[i] = remoteValue(v)
			vals[i] = nil
		}
		out.Rows = append(out.Rows, row)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if s.returning {
		out.RowsAffected = int64(len(out.Rows))
	}
	return nil
}

// remoteArg converts an argument for a libSQL server: the contract's types, finite floats only.
func remoteArg(a any) (any, error) {
	v, err := storage.NormalizeArg(a)
	if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) { // JSON, which both protocols speak, has no such numbers
		return nil, fmt.Errorf("%v cannot be sent to a libSQL server", f)
	}
	return v, err
}

// remoteValue normalises what the client returns. It gives int64, float64, string, []byte and
// nil, except for columns declared DATETIME or TIMESTAMP, whose text it parses into time.Time;
// those are given back as text in SQLite's own format.
func remoteValue(v any) any {
	switch x := v.(type) {
	case []byte:
		if x == nil {
			return []byte{}
		}
		return x
	case time.Time:
		return x.UTC().Format("2006-01-02 15:04:05")
	case int:
		return int64(x)
	case bool:
		if x {
			return int64(1)
		}
		return int64(0)
	}
	return v
}

// scanRemoteSQL classifies a statement from its first keyword (and a RETURNING clause) and
// rejects text holding more than one statement. Literals, quoted names and comments are skipped.
// The semicolons inside CREATE TRIGGER … BEGIN … END do not end it; as for sqlite3_complete, the
// first END followed by a semicolon does.
func scanRemoteSQL(s string) (remoteStmt, error) {
	rs := remoteStmt{sql: s, write: true}
	end, empty := false, true
	words, firstWord, trigger, last := 0, "", false, "" // last: the word just before, or ""
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			i++
		case c == '-' && i+1 < len(s) && s[i+1] == '-':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			if j := strings.Index(s[i+2:], "*/"); j >= 0 {
				i += j + 4
			} else {
				i = len(s)
			}
		case end:
			return rs, errors.New("more than one statement in one Stmt; send them as separate statements of the batch")
		case c == ';':
			end = !trigger || last == "END"
			i++
		case c == '?':
			empty, last = false, ""
			i++
			if i < len(s) && s[i] >= '0' && s[i] <= '9' {
				rs.params = -1
			} else if rs.params >= 0 {
				rs.params++
			}
		case (c == ':' || c == '@' || c == '$') && i+1 < len(s) && (s[i+1] == '_' || s[i+1] >= 'a' && s[i+1] <= 'z' || s[i+1] >= 'A' && s[i+1] <= 'Z'):
			empty, last = false, ""
			rs.params = -1
			i++
		case c == '\'' || c == '"' || c == '`' || c == '[':
			empty, last = false, ""
			q := c
			if q == '[' {
				q = ']'
			}
			for i++; i < len(s); i++ {
				if s[i] == q {
					if q != ']' && i+1 < len(s) && s[i+1] == q {
						i++
						continue
					}
					break
				}
			}
			i++
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(s) && (s[j] == '_' || s[j] == '$' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			word := strings.ToUpper(s[i:j])
			empty = false
			last = word
			if words++; words == 1 {
				firstWord = word
				switch word {
				case "SELECT", "VALUES", "WITH", "PRAGMA", "EXPLAIN":
					rs.rows, rs.write = true, false
				case "BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE":
					rs.txControl = true
				}
			} else if words <= 3 && word == "TRIGGER" && firstWord == "CREATE" { // CREATE [TEMP] TRIGGER
				trigger = true
			} else if word == "RETURNING" {
				rs.rows, rs.returning = true, true
			}
			i = j
		default:
			empty, last = false, ""
			i++
		}
	}
	if empty {
		return rs, errors.New("empty statement")
	}
	return rs, nil
}

// classify maps the client's errors, which carry only the server's message, to the storage
// error kinds, and makes them one line without the auth token.
func (db *remoteBase) classify(err error) error {
	if err == nil {
		return nil
	}
	msg := db.redact(storage.OneLine(err.Error()))
	msg = strings.TrimPrefix(msg, "failed to execute SQL: ")
	e := &remoteErr{msg: msg, err: err}
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return e
	case strings.Contains(msg, "UNIQUE constraint failed") || strings.Contains(msg, "PRIMARY KEY constraint failed"):
		return storage.Classified(storage.ErrUnique, e)
	case strings.Contains(msg, "FOREIGN KEY constraint failed"):
		return storage.Classified(storage.ErrForeignKey, e)
	case strings.Contains(msg, "constraint failed"):
		return storage.Classified(storage.ErrConstraint, e)
	case remoteConnError(err), strings.Contains(msg, "error code 401"), strings.Contains(msg, "error code 403"),
		strings.Contains(msg, "handshake error"), strings.Contains(msg, "error code 5"), strings.Contains(msg, "SQLITE_BUSY"), strings.Contains(msg, "database is locked"):
		var opErr *net.OpError
		if errors.As(err, &opErr) {
			e.detail = db.redact(opErr.Error())
		} else {
			e.detail = msg
		}
		e.msg = "libsql database " + db.quotedURL() + " is unavailable: " + e.detail
		return storage.Classified(storage.ErrUnavailable, e)
	}
	return e
}

// remoteConnError reports whether err means the connection or server is unusable.
func remoteConnError(err error) bool {
	var netErr net.Error
	var urlErr *url.Error
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.As(err, &netErr) || errors.As(err, &urlErr) || strings.Contains(err.Error(), "connection refused") ||
		strings.Contains(err.Error(), "stream is closed")
}

type remoteErr struct {
	msg    string
	detail string // the cause alone, for messages that name the server themselves
	err    error
}

func (e *remoteErr) Error() string { return e.msg }
func (e *remoteErr) Unwrap() error { return e.err }

func (db *remoteBase) redact(s string) string { return storage.Redact(s, db.token) }

func (db *remoteBase) quotedURL() string { return storage.QuoteURL(db.url) }

// OpenError implements storage.OpenChecker: it turns a failure of the first query into one line
// saying what went wrong, with which server, and what to do.
func (db *remoteBase) OpenError(err error) error {
	var se *storage.StmtError
	if errors.As(err, &se) {
		err = se.Err
	}
	msg := err.Error()
	var re *remoteErr
	if errors.As(err, &re) && re.detail != "" {
		msg = re.detail
	}
	switch {
	case strings.Contains(msg, "error code 401") || strings.Contains(msg, "error code 403") || strings.Contains(msg, "handshake error"):
		return &remoteErr{msg: "kavach: libsql server at " + db.quotedURL() + " rejected the auth token (" + msg +
			"); set a valid token in database.authToken or KAVACH_DATABASE_AUTH_TOKEN", err: err}
	case strings.Contains(msg, "error code 404"):
		return &remoteErr{msg: "kavach: libsql server at " + db.quotedURL() + " has no such database (" + msg +
			"); check the database name in the url", err: err}
	case errors.Is(err, storage.ErrUnavailable):
		return &remoteErr{msg: "kavach: cannot reach libsql server at " + db.quotedURL() + ": " + msg +
			"; check that the server is running and that the url is right", err: err}
	}
	return &remoteErr{msg: "kavach: libsql server at " + db.quotedURL() + ": " + msg, err: err}
}

// prepare does what both clients do before sending a batch: it refuses a closed handle or a
// context already done, checks the statements and converts their arguments, and for a batch
// that writes (write is true) waits for the handle's turn to write, which the caller gives back
// with unlockWrite. No statements give an empty batch.
func (db *remoteBase) prepare(ctx context.Context, stmts []storage.Stmt) (batch []remoteStmt, write bool, err error) {
	if db.closed.Load() {
		return nil, false, storage.ErrClosed
	}
	if len(stmts) == 0 {
		return nil, false, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	batch = make([]remoteStmt, len(stmts))
	for i, s := range stmts {
		rs, err := scanRemoteSQL(s.SQL)
		if err != nil {
			return nil, false, &storage.StmtError{Index: i, SQL: s.SQL, Err: err}
		}
		if rs.params >= 0 && rs.params != len(s.Args) {
			// Neither protocol's server checks the count: it binds what it is given.
			return nil, false, &storage.StmtError{Index: i, SQL: s.SQL, Err: fmt.Errorf("statement has %d placeholders but %d arguments", rs.params, len(s.Args))}
		}
		rs.args = make([]any, len(s.Args))
		for j, a := range s.Args {
			if rs.args[j], err = remoteArg(a); err != nil {
				return nil, false, &storage.StmtError{Index: i, SQL: s.SQL, Err: fmt.Errorf("argument %d: %w", j+1, err)}
			}
		}
		batch[i] = rs
		write = write || rs.write
	}
	if write {
		if err := db.lockWrite(ctx); err != nil {
			return nil, false, err
		}
	}
	return batch, write, nil
}

// stmtError reports the failure of statement i. A lost server is not the statement's fault: it
// is reported without an index.
func (db *remoteBase) stmtError(i int, sql string, err error) error {
	err = db.classify(err)
	if errors.Is(err, storage.ErrUnavailable) {
		return err
	}
	return &storage.StmtError{Index: i, SQL: sql, Err: err}
}

// retryBusy calls try until it reports that the server was not busy (another stream held the
// write lock, so the attempt did nothing), for at most busyRetryFor, backing off from 5 ms to
// 200 ms. It returns ctx's error if ctx ends while waiting.
func retryBusy(ctx context.Context, try func() (busy bool)) error {
	deadline := time.Now().Add(busyRetryFor)
	for wait := 5 * time.Millisecond; try() && time.Now().Before(deadline); wait = min(2*wait, 200*time.Millisecond) {
		if err := storage.Sleep(ctx, wait); err != nil {
			return err
		}
	}
	return nil
}
