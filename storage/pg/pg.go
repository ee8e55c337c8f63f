// Package pg is the Postgres storage backend (provider "postgres"), on github.com/jackc/pgx/v5
// with a pgxpool connection pool.
//
// Import it for its side effect of registering the provider:
//
//	import _ "github.com/kavachdev/kavach/storage/pg"
//
// URLs are postgres://user:password@host:5432/dbname (or postgresql://…) with any of libpq's
// parameters (sslmode, connect_timeout, …) and pgxpool's (pool_max_conns, …).
//
// A batch goes to the server in one round trip: pgx pipelines every statement's Bind/Execute
// and ends them with one Sync, and Postgres runs everything before a Sync as one implicit
// transaction, so a failing statement rolls back the ones before it. A batch made only of
// SELECTs additionally runs in one REPEATABLE READ transaction (BEGIN and COMMIT go in the same
// pipeline), so its statements see one snapshot, as they do on SQLite. A batch containing DDL runs
// statement by statement inside BEGIN … COMMIT, because a statement cannot be prepared before the
// table it names exists. Writes use READ COMMITTED, the isolation the core's conditional
// statements (UPDATE … WHERE used_at IS NULL, INSERT … SELECT … WHERE) are written for: a
// statement that waited for a row lock re-checks its condition against the committed row.
package pg

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kavachdev/kavach/storage"
)

func init() {
	storage.Register("postgres", func(ctx context.Context, cfg storage.Config) (storage.DB, error) {
		return Open(ctx, cfg)
	})
}

const (
	defaultMaxConns       = 10
	defaultConnectTimeout = 5 * time.Second
	maxAttempts           = 5 // for batches that hit a deadlock or serialization failure
)

// DB is a Postgres database. It is safe for concurrent use.
type DB struct {
	pool     *pgxpool.Pool
	url      string // as configured; only ever shown through storage.RedactURL
	password string // to redact from messages
	sql      rewriteCache
	castMu   sync.RWMutex
	casts    map[string]bool // statements whose parameters need explicit casts (SQLSTATE 42P18)
	closed   atomic.Bool
}

// Open makes a connection pool for the Postgres database at cfg.URL. It contacts nothing:
// storage.Open checks that the server answers (see storage.OpenChecker).
func Open(ctx context.Context, cfg storage.Config) (*DB, error) {
	u := strings.TrimSpace(cfg.URL)
	if !strings.HasPrefix(u, "postgres://") && !strings.HasPrefix(u, "postgresql://") {
		return nil, fmt.Errorf("kavach: postgres database url %s must start with postgres:// or postgresql://, e.g. postgres://user:password@127.0.0.1:5432/kavach",
			storage.QuoteURL(u))
	}
	pc, err := pgxpool.ParseConfig(u)
	if err != nil {
		detail := err.Error()
		if i := strings.Index(detail, "`: "); i >= 0 { // drop pgx's echo of the (redacted) URL
			detail = detail[i+3:]
		}
		return nil, fmt.Errorf("kavach: invalid postgres database url %s: %s", storage.QuoteURL(u), storage.OneLine(detail))
	}
	db := &DB{url: u, password: pc.ConnConfig.Password}
	switch {
	case cfg.MaxOpenConns > 0:
		pc.MaxConns = int32(cfg.MaxOpenConns)
	case !strings.Contains(u, "pool_max_conns"):
		pc.MaxConns = defaultMaxConns
	}
	if !strings.Contains(u, "connect_timeout") {
		pc.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	if _, ok := pc.ConnConfig.RuntimeParams["application_name"]; !ok {
		pc.ConnConfig.RuntimeParams["application_name"] = "kavach"
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("kavach: invalid postgres database url %s: %s", storage.QuoteURL(u), storage.OneLine(db.redact(err.Error())))
	}
	db.pool = pool
	return db, nil
}

// Dialect implements storage.DB.
func (db *DB) Dialect() storage.Dialect { return storage.Postgres }

// Close implements storage.DB. Connections in use are closed when their batch finishes.
func (db *DB) Close() error {
	if db.closed.Swap(true) {
		return nil
	}
	db.pool.Close()
	return nil
}

// prepared is one statement of a batch, ready to send.
type prepared struct {
	rewritten
	args []any
}

// Exec implements storage.DB.
func (db *DB) Exec(ctx context.Context, stmts ...storage.Stmt) ([]storage.Result, error) {
	if db.closed.Load() {
		return nil, storage.ErrClosed
	}
	if len(stmts) == 0 {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	batch := make([]prepared, len(stmts))
	for i, s := range stmts {
		r, err := db.sql.get(s.SQL)
		if err != nil {
			return nil, &storage.StmtError{Index: i, SQL: s.SQL, Err: err}
		}
		if r.params != len(s.Args) {
			return nil, &storage.StmtError{Index: i, SQL: s.SQL, Err: fmt.Errorf("statement has %d placeholders but %d arguments", r.params, len(s.Args))}
		}
		args := make([]any, len(s.Args))
		for j, a := range s.Args {
			if args[j], err = storage.NormalizeArg(a); err != nil {
				return nil, &storage.StmtError{Index: i, SQL: s.SQL, Err: fmt.Errorf("argument %d: %w", j+1, err)}
			}
		}
		if db.needsCasts(s.SQL) {
			r = withCasts(r, args)
		}
		batch[i] = prepared{rewritten: r, args: args}
	}
	for attempt := 1; ; attempt++ {
		res, failed, err := db.run(ctx, batch)
		if err == nil {
			return res, nil
		}
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr) && pgErr.Code == "42P18" && failed >= 0 && !db.needsCasts(stmts[failed].SQL):
			// Postgres could not infer a parameter's type (e.g. "? IS NULL"); from now on cast
			// every parameter of that statement to the type of its Go value, and try again:
			// the statement failed while being prepared, so nothing was applied.
			db.castMu.Lock()
			if db.casts == nil || len(db.casts) >= maxRewrites {
				db.casts = map[string]bool{}
			}
			db.casts[stmts[failed].SQL] = true
			db.castMu.Unlock()
			batch[failed].rewritten = withCasts(batch[failed].rewritten, batch[failed].args)
			continue
		case retryable(err) && attempt < maxAttempts:
			if storage.Sleep(ctx, storage.Backoff(attempt)) == nil {
				continue
			}
		}
		// A lost connection is not the statement's fault: it is reported without an index.
		if failed >= 0 && !errors.Is(err, storage.ErrUnavailable) {
			return nil, &storage.StmtError{Index: failed, SQL: stmts[failed].SQL, Err: err}
		}
		return nil, err
	}
}

func (db *DB) needsCasts(sql string) bool {
	db.castMu.RLock()
	defer db.castMu.RUnlock()
	return db.casts[sql]
}

// run sends the batch once. failed is the index of the statement that failed, or -1 when the
// failure is not one statement's (no connection, the commit failed).
func (db *DB) run(ctx context.Context, batch []prepared) (_ []storage.Result, failed int, err error) {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		if db.closed.Load() {
			return nil, -1, storage.ErrClosed
		}
		if ctx.Err() == nil {
			// No new connection can be made: the idle ones are probably dead too.
			db.pool.Reset()
		}
		return nil, -1, db.classify(err, ctx.Err() == nil)
	}
	defer func() {
		if err != nil && conn.Conn().IsClosed() {
			// The connection broke (server restart, network cut): its idle siblings are
			// probably broken too, so drop them rather than fail the next batches one by one.
			db.pool.Reset()
		}
		conn.Release()
	}()
	results := make([]storage.Result, len(batch))
	ddl, reads := false, true
	for _, p := range batch {
		ddl = ddl || p.kind == kindDDL
		reads = reads && p.kind == kindRead
	}
	switch {
	case len(batch) == 1:
		failed, err = db.runOne(ctx, conn.Conn(), batch[0], &results[0], 0)
	case ddl:
		failed, err = db.runInTx(ctx, conn.Conn(), batch, results)
	default:
		failed, err = db.runPipelined(ctx, conn.Conn(), batch, results, reads)
	}
	if err != nil {
		return nil, failed, db.classify(err, conn.Conn().IsClosed())
	}
	return results, -1, nil
}

// runOne runs a single statement; the server wraps it in its own transaction.
func (db *DB) runOne(ctx context.Context, c *pgx.Conn, p prepared, out *storage.Result, index int) (int, error) {
	args := p.args
	if p.kind == kindDDL && len(args) == 0 {
		args = []any{pgx.QueryExecModeSimpleProtocol} // DDL is not worth a prepared statement
	}
	rows, err := c.Query(ctx, p.sql, args...)
	if err != nil {
		return index, err
	}
	return index, collect(rows, out, c)
}

func (db *DB) runInTx(ctx context.Context, c *pgx.Conn, batch []prepared, results []storage.Result) (failed int, err error) {
	if _, err := c.Exec(ctx, "BEGIN"); err != nil {
		return -1, err
	}
	defer func() {
		if err != nil && !c.IsClosed() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			c.Exec(rctx, "ROLLBACK")
			cancel()
		}
	}()
	for i, p := range batch {
		if _, err := db.runOne(ctx, c, p, &results[i], i); err != nil {
			return i, err
		}
	}
	if _, err := c.Exec(ctx, "COMMIT"); err != nil {
		return -1, err
	}
	return -1, nil
}

const beginSnapshot = "BEGIN ISOLATION LEVEL REPEATABLE READ"

func (db *DB) runPipelined(ctx context.Context, c *pgx.Conn, batch []prepared, results []storage.Result, reads bool) (failed int, err error) {
	b := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(batch)+2)}
	if reads {
		b.Queue(beginSnapshot)
	}
	for _, p := range batch {
		b.Queue(p.sql, p.args...)
	}
	if reads {
		b.Queue("COMMIT")
	}
	br := c.SendBatch(ctx, b)
	defer func() {
		if cerr := br.Close(); err == nil && cerr != nil {
			failed, err = -1, cerr
		}
		if err != nil && !c.IsClosed() && c.PgConn().TxStatus() != 'I' {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			c.Exec(rctx, "ROLLBACK")
			cancel()
		}
	}()
	if reads {
		if _, err := br.Exec(); err != nil {
			return statementOf(err, batch), err
		}
	}
	for i := range batch {
		rows, err := br.Query()
		if err != nil {
			return indexOf(err, batch, i), err
		}
		if err := collect(rows, &results[i], c); err != nil {
			return indexOf(err, batch, i), err
		}
	}
	if reads {
		if _, err := br.Exec(); err != nil {
			return -1, err
		}
	}
	return -1, nil
}

// indexOf says which statement an error belongs to. Errors found while preparing the batch
// (before anything ran) name the statement's SQL; the others belong to the statement being read.
func indexOf(err error, batch []prepared, current int) int {
	if i := statementOf(err, batch); i >= 0 {
		return i
	}
	return current
}

func statementOf(err error, batch []prepared) int {
	var pre pgx.ErrPreprocessingBatch
	if errors.As(err, &pre) {
		for i, p := range batch {
			if p.sql == pre.SQL() {
				return i
			}
		}
	}
	return -1
}

// collect reads a statement's rows and command tag into out.
func collect(rows pgx.Rows, out *storage.Result, c *pgx.Conn) error {
	defer rows.Close()
	if fields := rows.FieldDescriptions(); len(fields) > 0 {
		out.Columns = make([]string, len(fields))
		for i, f := range fields {
			out.Columns[i] = f.Name
		}
		out.Rows = [][]any{}
		if err := readRows(rows, &out.Rows, c.TypeMap()); err != nil {
			return err
		}
	} else {
		for rows.Next() {
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if ct := rows.CommandTag(); ct.Insert() || ct.Update() || ct.Delete() || strings.HasPrefix(ct.String(), "MERGE") {
		out.RowsAffected = ct.RowsAffected()
	}
	return nil
}
