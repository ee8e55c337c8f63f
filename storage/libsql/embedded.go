// Package libsql provides the SQLite family of Kavach storage backends: the embedded default
// (provider "sqlite": a file, or ":memory:") on github.com/ncruces/go-sqlite3, and remote libSQL /
// Turso servers (provider "libsql").
//
// Import it for its side effect of registering the providers:
//
//	import _ "github.com/kavachdev/kavach/storage/libsql"
package libsql

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ncruces/go-sqlite3"
	"github.com/ncruces/go-sqlite3/vfs/memdb"

	"github.com/kavachdev/kavach/storage"
)

func init() {
	storage.Register("sqlite", func(ctx context.Context, cfg storage.Config) (storage.DB, error) {
		return OpenEmbedded(ctx, cfg.URL)
	})
}

const (
	checkpointPages  = 8000 // WAL frames after which the background checkpointer runs
	restartFrames    = 256  // at most this many frames are left for the checkpoint that holds the writer off
	stmtCacheEntries = 256
	busyTimeout      = 5 * time.Second
	// Each reader keeps up to readerCache of pages. An agent's audit trail is read by following
	// its chain, one row per page, and the recent end of the log is what gets read: measured with
	// 1,000,000 rows, the last 100 entries of an agent took 1.1 ms with 8 MiB per reader, 0.62
	// ms with 32 MiB. The cache fills only as pages are read.
	readerCache = 32 << 20
)

// Embedded is an SQLite database in this process: a file in WAL mode, or an isolated in-memory
// database. All writes go through one connection (SQLite allows one writer at a time anyway), so
// a write batch is one IMMEDIATE transaction and never deadlocks with another writer of this
// process; other processes on the same file are waited for up to the busy timeout. Reads run on a
// small pool of connections in parallel with the writer.
//
// Checkpoints are taken off the writer: the writer's automatic checkpoint is disabled and a
// background goroutine checkpoints (PASSIVE) on its own connection whenever the WAL has grown by
// checkpointPages frames. Measured on a 2-core machine this doubles write throughput, because the
// writer never stops to copy pages into the database file and fsync it.
type Embedded struct {
	dsn     string
	memName string // name of the memdb database to delete on Close; "" for files

	wmu    sync.Mutex
	writer *conn

	readers  chan *conn
	nReaders int // readers opened, all of which are in the channel when idle
	roMu     sync.RWMutex
	ro       map[string]bool // statement SQL -> read-only, learnt on first prepare

	opened time.Time

	ckpt   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	closed atomic.Bool
}

// OpenEmbedded opens the SQLite database at path: a file path, a file: URI, or ":memory:" for a
// fresh in-memory database that no other Open call can see. Files are put in WAL mode with
// foreign keys enforced; missing files are created.
func OpenEmbedded(ctx context.Context, path string) (*Embedded, error) {
	// Readers run beside the writer, one per processor (two at least): decisions read only on a
	// cache miss, and a query keeps its reader for about a millisecond.
	readers := min(max(runtime.GOMAXPROCS(0), 2), 8)
	db := &Embedded{readers: make(chan *conn, readers), ro: map[string]bool{}, opened: time.Now()}
	file := true
	switch {
	case path == ":memory:" || path == "file::memory:":
		// Each :memory: database is a memdb database with a unique name, shared by this DB's
		// connections only.
		db.memName = "kavach-" + rand.Text()
		memdb.Create(db.memName, nil)
		db.dsn = "file:/" + db.memName + "?vfs=memdb"
		file = false
	case strings.HasPrefix(path, "file:"):
		db.dsn = path
	default:
		db.dsn = "file:" + (&url.URL{Path: path}).EscapedPath() + "?vfs=" + walVFSName
	}
	pragmas := []string{"busy_timeout(5000)", "foreign_keys(1)"}
	if file {
		// page_size only takes effect before the first table is created, and before WAL.
		pragmas = append(pragmas, "page_size(4096)", "journal_mode(WAL)", "synchronous(NORMAL)")
	}
	sep := "?"
	if strings.Contains(db.dsn, "?") {
		sep = "&"
	}
	for _, p := range pragmas {
		db.dsn += sep + "_pragma=" + p
		sep = "&"
	}

	var err error
	if db.writer, err = db.open(ctx, 32<<20); err != nil {
		db.cleanupMem()
		return nil, fmt.Errorf("kavach: opening sqlite database %q: %w", path, err)
	}
	if err := db.writer.c.BusyHandler(shortWaits(busyTimeout)); err != nil {
		db.writer.close()
		db.cleanupMem()
		return nil, err
	}
	if file {
		if mode, err := db.writer.pragma("journal_mode"); err != nil || mode != "wal" {
			db.writer.close()
			return nil, fmt.Errorf("kavach: sqlite database %q: could not enable WAL (journal_mode is %q): %v", path, mode, err)
		}
	}
	for range readers {
		c, err := db.open(ctx, readerCache)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("kavach: opening sqlite database %q: %w", path, err)
		}
		db.readers <- c
		db.nReaders++
	}
	db.stop = make(chan struct{})
	db.done = make(chan struct{})
	if file {
		db.ckpt = make(chan struct{}, 1)
		if err := db.writer.c.WALAutoCheckpoint(0); err != nil {
			db.Close()
			return nil, err
		}
		db.writer.c.WALHook(func(_ *sqlite3.Conn, _ string, pages int) error {
			if pages >= checkpointPages {
				select {
				case db.ckpt <- struct{}{}:
				default:
				}
			}
			return nil
		})
		go db.checkpointer()
	} else {
		close(db.done)
	}
	return db, nil
}

func (db *Embedded) open(ctx context.Context, cacheBytes int) (*conn, error) {
	// Switching a new file to WAL needs exclusive access, and SQLite reports BUSY there without
	// calling the busy handler, so processes starting together retry instead of failing.
	var c *sqlite3.Conn
	var err error
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		c, err = sqlite3.OpenContext(ctx, db.dsn)
		if err == nil || !errors.Is(err, sqlite3.BUSY) || ctx.Err() != nil || wait >= 100*time.Millisecond && time.Since(db.opened) > 10*time.Second {
			break
		}
		time.Sleep(wait)
	}
	if err != nil {
		return nil, err
	}
	if err := c.Exec(fmt.Sprintf("PRAGMA cache_size = -%d", cacheBytes>>10)); err != nil {
		c.Close()
		return nil, err
	}
	return &conn{c: c, stmts: map[string]*cachedStmt{}}, nil
}

// shortWaits is the writer's busy handler. The writer is kept waiting by the checkpointer's
// RESTART, which finishes in well under a millisecond, and by other processes' writes. SQLite's
// own handler sleeps a millisecond or more between attempts, a stall longer than the wait
// itself; this one starts at 20µs and doubles up to a millisecond, for at most timeout in all.
func shortWaits(timeout time.Duration) func(context.Context, int) bool {
	var start time.Time
	return func(ctx context.Context, count int) bool {
		if count == 0 {
			start = time.Now()
		} else if time.Since(start) >= timeout {
			return false
		}
		d := min(20*time.Microsecond<<min(count, 6), time.Millisecond)
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
}

func (db *Embedded) checkpointer() {
	defer close(db.done)
	var c *sqlite3.Conn
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for {
		select {
		case <-db.stop:
			return
		case <-db.ckpt:
		}
		if c == nil {
			var err error
			if c, err = sqlite3.Open(db.dsn); err != nil {
				slog.Warn("kavach: sqlite checkpointer could not connect", "err", err)
				c = nil
				continue
			}
		}
		// PASSIVE copies the bulk of the WAL while the writer keeps committing. It never resets the
		// WAL, though, and with a writer that commits back to back there is never a moment when
		// the WAL is both fully copied and unused, so SQLite never starts it over: the file grows
		// without bound and every checkpoint re-reads all of it. RESTART finishes the few frames
		// added meanwhile while holding writers off (they wait in their busy handler, shortWaits), after
		// which the next commit writes from the start of the WAL again.
		// PASSIVE runs again while the writer added more than restartFrames meanwhile, so that
		// RESTART has little left to copy while it holds the writer off.
		var err error
		for range 4 {
			var log, done int
			if log, done, err = c.WALCheckpoint("main", sqlite3.CHECKPOINT_PASSIVE); err != nil || log-done <= restartFrames {
				break
			}
		}
		if err == nil {
			_, _, err = c.WALCheckpoint("main", sqlite3.CHECKPOINT_RESTART)
		}
		if err != nil && !errors.Is(err, sqlite3.BUSY) {
			slog.Warn("kavach: sqlite checkpoint failed", "err", err)
		}
	}
}

// Dialect implements storage.DB.
func (db *Embedded) Dialect() storage.Dialect { return storage.SQLite }

// Exec implements storage.DB: a batch of reads runs on a reader connection (in one read
// transaction, so it sees one snapshot); any batch with a write runs on the writer connection in
// one IMMEDIATE transaction.
func (db *Embedded) Exec(ctx context.Context, stmts ...storage.Stmt) ([]storage.Result, error) {
	if db.closed.Load() {
		return nil, storage.ErrClosed
	}
	if len(stmts) == 0 {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if db.readOnly(stmts) {
		var c *conn
		select {
		case c = <-db.readers:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		defer func() { db.readers <- c }()
		return c.run(ctx, stmts, false)
	}
	db.wmu.Lock()
	defer db.wmu.Unlock()
	if db.closed.Load() {
		return nil, storage.ErrClosed
	}
	return db.writer.run(ctx, stmts, true)
}

// readOnly reports whether every statement only reads. SQLite decides this when it prepares a
// statement; the answer is remembered per SQL text. Statements that fail to prepare count as
// writes, so the writer reports their error.
func (db *Embedded) readOnly(stmts []storage.Stmt) bool {
	db.roMu.RLock()
	unknown := false
	for _, s := range stmts {
		ro, ok := db.ro[s.SQL]
		if !ok {
			unknown = true
			break
		}
		if !ro {
			db.roMu.RUnlock()
			return false
		}
	}
	db.roMu.RUnlock()
	if !unknown {
		return true
	}
	c := <-db.readers
	defer func() { db.readers <- c }()
	all := true
	for _, s := range stmts {
		st, err := c.prepare(s.SQL)
		ro := err == nil && st.s.ReadOnly()
		if err == nil {
			db.roMu.Lock()
			if len(db.ro) > 4*stmtCacheEntries {
				clear(db.ro)
			}
			db.ro[s.SQL] = ro
			db.roMu.Unlock()
		}
		all = all && ro
	}
	return all
}

// Close implements storage.DB. It checkpoints and truncates the WAL of a file database.
func (db *Embedded) Close() error {
	if db.closed.Swap(true) {
		return nil
	}
	if db.stop != nil {
		close(db.stop)
		<-db.done
	}
	db.wmu.Lock()
	defer db.wmu.Unlock()
	var errs []error
	if db.writer != nil {
		if db.memName == "" {
			if _, _, err := db.writer.c.WALCheckpoint("main", sqlite3.CHECKPOINT_TRUNCATE); err != nil && !errors.Is(err, sqlite3.BUSY) {
				errs = append(errs, err)
			}
		}
		errs = append(errs, db.writer.close())
	}
	// Readers lent to batches in flight come back when those finish.
	for range db.nReaders {
		select {
		case c := <-db.readers:
			errs = append(errs, c.close())
		case <-time.After(10 * time.Second):
			errs = append(errs, errors.New("kavach: an sqlite read did not finish within 10s of Close"))
		}
	}
	db.cleanupMem()
	return errors.Join(errs...)
}

func (db *Embedded) cleanupMem() {
	if db.memName != "" {
		memdb.Delete(db.memName)
	}
}

// conn is one SQLite connection with its prepared statements. It is used by one goroutine at a
// time.
type conn struct {
	c     *sqlite3.Conn
	stmts map[string]*cachedStmt
}

type cachedStmt struct {
	s       *sqlite3.Stmt
	columns []string // nil for statements that return no columns
}

func (c *conn) close() error {
	for _, st := range c.stmts {
		st.s.Close()
	}
	clear(c.stmts)
	return c.c.Close()
}

func (c *conn) pragma(name string) (string, error) {
	st, _, err := c.c.Prepare("PRAGMA " + name)
	if err != nil {
		return "", err
	}
	defer st.Close()
	if !st.Step() {
		return "", st.Err()
	}
	return st.ColumnText(0), nil
}

func (c *conn) prepare(sql string) (*cachedStmt, error) {
	if st, ok := c.stmts[sql]; ok {
		return st, nil
	}
	s, tail, err := c.c.Prepare(sql)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, errors.New("empty statement")
	}
	if strings.TrimSpace(tail) != "" {
		s.Close()
		// One statement per Stmt: several in one string would bypass batch semantics.
		return nil, errors.New("more than one statement in one Stmt")
	}
	st := &cachedStmt{s: s}
	if n := s.ColumnCount(); n > 0 {
		st.columns = make([]string, n)
		for i := range n {
			st.columns[i] = s.ColumnName(i)
		}
	}
	if len(c.stmts) >= stmtCacheEntries {
		for k, old := range c.stmts {
			old.s.Close()
			delete(c.stmts, k)
		}
	}
	c.stmts[sql] = st
	return st, nil
}

func (c *conn) run(ctx context.Context, stmts []storage.Stmt, write bool) (_ []storage.Result, err error) {
	if ctx.Done() != nil {
		old := c.c.SetInterrupt(ctx)
		defer c.c.SetInterrupt(old)
	}
	tx := len(stmts) > 1
	if tx {
		begin := "BEGIN DEFERRED"
		if write {
			begin = "BEGIN IMMEDIATE"
		}
		if err := c.control(begin); err != nil {
			return nil, classify(err)
		}
		defer func() {
			if err != nil {
				if !c.c.GetAutocommit() {
					c.control("ROLLBACK")
				}
			} else if cerr := c.control("COMMIT"); cerr != nil {
				c.control("ROLLBACK")
				err = classify(cerr)
			}
		}()
	}
	results := make([]storage.Result, len(stmts))
	for i, s := range stmts {
		if err := c.exec(s, &results[i]); err != nil {
			return nil, &storage.StmtError{Index: i, SQL: s.SQL, Err: err}
		}
	}
	return results, nil
}

// control runs a transaction control statement, prepared once per connection.
func (c *conn) control(sql string) error {
	st, err := c.prepare(sql)
	if err != nil {
		return err
	}
	st.s.Step()
	return finish(st.s)
}

// finish ends a statement's run: its error, if any, and the statement reset for its next use.
func finish(s *sqlite3.Stmt) error {
	err := s.Err()
	if rerr := s.Reset(); err == nil {
		err = rerr
	}
	return err
}

func (c *conn) exec(s storage.Stmt, out *storage.Result) error {
	st, err := c.prepare(s.SQL)
	if err != nil {
		return classify(err)
	}
	stmt := st.s
	if n := stmt.BindCount(); n != len(s.Args) {
		return fmt.Errorf("statement has %d placeholders but %d arguments", n, len(s.Args))
	}
	for j, a := range s.Args {
		if err := bind(stmt, j+1, a); err != nil {
			stmt.ClearBindings()
			return err
		}
	}
	if st.columns != nil {
		out.Columns = st.columns
		out.Rows = [][]any{}
	}
	n := len(st.columns)
	for stmt.Step() {
		row := make([]any, n)
		for k := range n {
			switch stmt.ColumnType(k) {
			case sqlite3.INTEGER:
				row[k] = stmt.ColumnInt64(k)
			case sqlite3.FLOAT:
				row[k] = stmt.ColumnFloat(k)
			case sqlite3.TEXT:
				row[k] = stmt.ColumnText(k)
			case sqlite3.BLOB:
				b := stmt.ColumnBlob(k, nil)
				if b == nil {
					b = []byte{}
				}
				row[k] = b
			default:
				row[k] = nil
			}
		}
		out.Rows = append(out.Rows, row)
	}
	if err := finish(stmt); err != nil {
		return classify(err)
	}
	if !stmt.ReadOnly() {
		out.RowsAffected = c.c.Changes()
	}
	return nil
}

func bind(s *sqlite3.Stmt, i int, a any) error {
	switch v := a.(type) {
	case nil:
		return s.BindNull(i)
	case int64:
		return s.BindInt64(i, v)
	case int:
		return s.BindInt64(i, int64(v))
	case int32:
		return s.BindInt64(i, int64(v))
	case float64:
		return s.BindFloat(i, v)
	case string:
		return s.BindText(i, v)
	case []byte:
		if v == nil {
			return s.BindNull(i)
		}
		return s.BindBlob(i, v)
	case bool:
		return s.BindBool(i, v)
	}
	return fmt.Errorf("argument %d has unsupported type %T", i, a)
}

// classify maps SQLite errors to the storage error kinds.
func classify(err error) error {
	switch {
	case errors.Is(err, sqlite3.CONSTRAINT_UNIQUE), errors.Is(err, sqlite3.CONSTRAINT_PRIMARYKEY):
		return storage.Classified(storage.ErrUnique, err)
	case errors.Is(err, sqlite3.CONSTRAINT_FOREIGNKEY):
		return storage.Classified(storage.ErrForeignKey, err)
	case errors.Is(err, sqlite3.CONSTRAINT):
		return storage.Classified(storage.ErrConstraint, err)
	case errors.Is(err, sqlite3.BUSY), errors.Is(err, sqlite3.LOCKED), errors.Is(err, sqlite3.IOERR), errors.Is(err, sqlite3.CANTOPEN):
		return storage.Classified(storage.ErrUnavailable, err)
	case errors.Is(err, sqlite3.INTERRUPT):
		return storage.Classified(context.Canceled, err)
	}
	return err
}
