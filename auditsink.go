package kavach

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kavachdev/kavach/internal/jsonw"
	"github.com/kavachdev/kavach/storage"
)

// AuditSink records audit rows. Append returns once the row has been durably written, or once
// it has been recorded as an effect that the host promises to write (the WebAssembly build
// returns its effects with the operation's result). recorded is false when a conditional row
// was not written because its agent changed (AuditRow.Version).
type AuditSink interface {
	Append(ctx context.Context, r *AuditRow) (recorded bool, err error)
}

// AuditRow is one decision to record: a row of kavach_audit_logs. Empty TenantID, Reason, IP and
// UserAgent are stored as NULL.
type AuditRow struct {
	ID, AgentID, UserID, TenantID string
	Action, Resource, Parameters  string
	Result, Reason                string
	DurationMs                    int64
	IP, UserAgent                 string
	Timestamp                     int64
	// Version, when not 0, is the agent version the decision was made from: the row is written
	// only while the agent is still at it, so that a decision made from a cached agent is never
	// recorded (and so never returned) after the agent changed.
	Version int64
}

const auditInsertColumns = "id, agent_id, user_id, tenant_id, action, resource, parameters, result, reason, duration_ms, ip, user_agent, timestamp"

func (r *AuditRow) values() []any {
	return []any{r.ID, r.AgentID, r.UserID, nullable(r.TenantID), r.Action, r.Resource, r.Parameters, r.Result, nullable(r.Reason),
		r.DurationMs, nullable(r.IP), nullable(r.UserAgent), r.Timestamp}
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Stmts returns the statements that write r alone in dialect d, in one batch; the first one's
// RowsAffected says whether the row was written.
//
// On the SQLite family the second statement makes the row its agent's chain head (schema.sql).
// The insert is OR IGNORE: a statement that can insert several rows (INSERT … SELECT) and may
// abort otherwise keeps a statement journal of every page it changes. Nothing but a version
// mismatch can make it insert nothing (the id is new, every NOT NULL column has a value). The
// head moves only if the row went in: changes() is the row count of the insert just before it on
// the same connection. Written again after a lost answer, both are no-ops.
func (r *AuditRow) Stmts(d storage.Dialect) []storage.Stmt {
	args := r.values()
	if d != storage.SQLite {
		if r.Version == 0 {
			return []storage.Stmt{{SQL: "INSERT INTO kavach_audit_logs (" + auditInsertColumns + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", Args: args}}
		}
		return []storage.Stmt{{SQL: "INSERT INTO kavach_audit_logs (" + auditInsertColumns + ") SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM kavach_agents WHERE id = ? AND version = ?",
			Args: append(args, r.AgentID, r.Version)}}
	}
	insert := sqliteInsert
	args = append(args, r.AgentID)
	if r.Version != 0 {
		insert = sqliteInsertAtVersion
		args = append(args, r.Version)
	}
	return []storage.Stmt{
		{SQL: insert, Args: args},
		{SQL: sqliteMoveHead, Args: []any{r.AgentID, r.ID, r.Timestamp}},
	}
}

// The statements of AuditRow.Stmts on the SQLite family, as constants: the writer looks each up
// in its cache of prepared statements by its text, once per row.
const (
	sqliteInsert = "INSERT OR IGNORE INTO kavach_audit_logs (" + auditInsertColumns + ", prev_id, prev_ts) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, h.last_id, h.last_ts " +
		"FROM kavach_agents a LEFT JOIN kavach_audit_heads h ON h.agent_id = a.id WHERE a.id = ?"
	sqliteInsertAtVersion = sqliteInsert + " AND a.version = ?"
	sqliteMoveHead        = "INSERT INTO kavach_audit_heads (agent_id, last_id, last_ts) SELECT ?, ?, ? WHERE changes() > 0 " +
		"ON CONFLICT (agent_id) DO UPDATE SET last_id = excluded.last_id, last_ts = MAX(excluded.last_ts, kavach_audit_heads.last_ts)"
)

// batchStmts returns the statements that write rows in one batch, and how to tell from their
// results which rows were written.
//
// Embedded SQLite gets each row's own statements: its writer runs them in one transaction at a
// few microseconds each, from statements prepared once; a merged statement measured three
// times slower there. Everywhere else (fewStatements for a libSQL server, which plans every
// statement it is sent; Postgres and MySQL) a batch is one INSERT … SELECT for all the rows (of
// at most maxMergedBytes of values each): every statement costs a round of the protocol and of
// the planner, and MySQL answers each with a packet of its own, which was most of what a batch
// cost. Postgres reads the rows from one JSON parameter (so the statement text is always the
// same), MySQL from a UNION ALL of one SELECT per row, and libSQL hands the JSON to the trigger
// of kavach_audit_batches (auditBatches). The rows are joined with their agents' versions; when
// fewer rows went in than were sent, written returns nil and the caller asks which did (on
// libSQL the statement fails instead, and the caller writes each row alone).
func batchStmts(d storage.Dialect, rows []*AuditRow, fewStatements bool) (stmts []storage.Stmt, written func([]storage.Result) []bool) {
	if d == storage.SQLite && !fewStatements {
		for _, r := range rows {
			stmts = append(stmts, r.Stmts(d)...)
		}
		return stmts, func(res []storage.Result) []bool {
			out := make([]bool, len(rows))
			for i := range rows {
				out[i] = res[2*i].RowsAffected > 0
			}
			return out
		}
	}
	for start, end := 0, 0; start < len(rows); start = end {
		size := 0
		for end = start; end < len(rows) && (end == start || size < maxMergedBytes); end++ {
			r := rows[end]
			size += 256 + len(r.Parameters) + len(r.Reason) + len(r.Resource) + len(r.UserAgent)
		}
		stmts = append(stmts, mergedStmts(d, rows[start:end], size)...)
	}
	return stmts, func(res []storage.Result) []bool {
		if d != storage.SQLite { // kavach_audit_batches writes every row or fails (auditRefused)
			var n int64
			for _, r := range res {
				n += r.RowsAffected
			}
			if n != int64(len(rows)) {
				return nil
			}
		}
		out := make([]bool, len(rows))
		for i := range out {
			out[i] = true
		}
		return out
	}
}

// mergedStmts writes rows, about size bytes of values, in one statement: an INSERT … SELECT, or
// on the SQLite family an insert into kavach_audit_batches.
func mergedStmts(d storage.Dialect, rows []*AuditRow, size int) []storage.Stmt {
	if d == storage.MySQL {
		var b strings.Builder
		args := make([]any, 0, 14*len(rows))
		b.WriteString(mergedInsert + "(")
		for i, r := range rows {
			if i > 0 {
				b.WriteString(" UNION ALL ")
			}
			b.WriteString("SELECT ? AS id, ? AS agent_id, ? AS user_id, ? AS tenant_id, ? AS action, ? AS resource, ? AS parameters, ? AS result, " +
				"? AS reason, ? AS duration_ms, ? AS ip, ? AS user_agent, ? AS ts, ? AS version")
			args = append(append(args, r.values()...), r.Version)
		}
		b.WriteString(") AS v" + mysqlMergedJoin)
		return []storage.Stmt{{SQL: b.String(), Args: args}}
	}
	b := make([]byte, 0, size)
	b = append(b, '[')
	for i, r := range rows {
		if i > 0 {
			b = append(b, ',')
		}
		b = r.appendJSON(b)
	}
	rowsJSON := string(append(b, ']'))
	if d == storage.SQLite {
		return []storage.Stmt{{SQL: "INSERT INTO kavach_audit_batches (rows) VALUES (?)", Args: []any{rowsJSON}}}
	}
	return []storage.Stmt{{SQL: mergedInsert + "json_to_recordset(?::json) AS v(id text, agent_id text, user_id text, tenant_id text, action text, " +
		"resource text, parameters text, result text, reason text, duration_ms bigint, ip text, user_agent text, ts bigint, version bigint)" + pgMergedJoin,
		Args: []any{rowsJSON}}}
}

// mergedInsert comes before the rows of a merged insert on Postgres and MySQL (v); the join after
// them keeps the rows whose agent exists and, for a conditional row, is still at its version.
const (
	mergedInsert = "INSERT INTO kavach_audit_logs (" + auditInsertColumns + ") SELECT v.id, v.agent_id, v.user_id, v.tenant_id, v.action, v.resource, " +
		"v.parameters, v.result, v.reason, v.duration_ms, v.ip, v.user_agent, v.ts FROM "
	mysqlMergedJoin = " JOIN kavach_agents AS a ON a.id = v.agent_id AND (v.version = 0 OR a.version = v.version)"
	// Postgres guesses that a function returns 100 rows, and would join them by hashing the whole
	// agents table, a scan of every agent per batch. OFFSET 0 keeps the lateral subquery apart,
	// so each row looks its agent up by key.
	pgMergedJoin = " CROSS JOIN LATERAL (SELECT 1 FROM kavach_agents AS a WHERE a.id = v.agent_id AND (v.version = 0 OR a.version = v.version) OFFSET 0) AS a"
)

// chainTime is the chain time of audit row l (schema.sql): the larger of its timestamp and the
// chain time of the row before it.
const chainTime = "MAX(l.timestamp, COALESCE(l.prev_ts, 0))"

// auditBatches is the view through which a libSQL server (storage.PlansEveryStatement) is sent a
// batch of audit rows: one short statement, INSERT INTO kavach_audit_batches (rows) VALUES (?),
// with the rows as a JSON array (AuditRow.appendJSON). Its INSTEAD OF trigger runs
// sqliteBulkInsert and sqliteBulkHeads on them inside the server.
//
// A batch is then one statement in its own transaction, where it was BEGIN, two statements and
// COMMIT. Over WebSocket every statement is a round trip of its own, so a batch takes one round
// trip instead of four: 5,400 → 10,100 decisions/s against a local sqld. (Over HTTP the four
// were already one request, and sqld runs either form in about the same time.)
//
// The trigger writes every row or none: if any row is refused because its agent changed (or is
// gone), or is already there, it aborts the statement with auditRefused, and the writer records
// each row on its own (groupCommit.commit), which tells the refused ones apart.
//
// Its DDL is CREATE … IF NOT EXISTS, which leaves an existing trigger as it is: a change to the
// trigger's statements needs a migration that drops it and creates it again (migration 3 has
// them as they are now; TestMigrationsMatchAuditBatches fails when the two differ).
var auditBatches = &storage.View{
	Name:    "kavach_audit_batches",
	Dialect: storage.SQLite,
	DDL: []string{
		"CREATE VIEW IF NOT EXISTS kavach_audit_batches AS SELECT NULL AS rows WHERE 0",
		"CREATE TRIGGER IF NOT EXISTS kavach_audit_batches_insert INSTEAD OF INSERT ON kavach_audit_batches BEGIN " +
			strings.ReplaceAll(sqliteBulkInsert, "json_each(?)", "json_each(NEW.rows)") + "; " +
			"SELECT RAISE(ABORT, '" + auditRefused + "') WHERE changes() < json_array_length(NEW.rows); " +
			strings.ReplaceAll(sqliteBulkHeads, "json_each(?)", "json_each(NEW.rows)") + "; END",
	},
}

// auditRefused is the error of a batch of audit rows of which some row was not written.
const auditRefused = "kavach: audit batch refused: an agent changed since its decision"

// sqliteBulkInsert writes the rows of a JSON array (AuditRow.appendJSON) on the SQLite family:
// each accepted row links to the previous accepted row of its agent in the array, the first to
// the agent's chain head, and its prev_ts is the chain time before it. sqliteBulkHeads then
// makes each agent's last row its head, if the insert wrote anything (changes()). Both run in
// the trigger of auditBatches, with NEW.rows for the parameter.
const (
	sqliteBulkInsert = "INSERT OR IGNORE INTO kavach_audit_logs (" + auditInsertColumns + ", prev_id, prev_ts) " +
		"SELECT r.id, r.agent_id, r.user_id, r.tenant_id, r.action, r.resource, r.parameters, r.result, r.reason, r.duration_ms, r.ip, r.user_agent, r.ts, " +
		"COALESCE(LAG(r.id) OVER w, h.last_id), " +
		"CASE WHEN LAG(r.id) OVER w IS NULL THEN h.last_ts " +
		"ELSE MAX(COALESCE(h.last_ts, 0), MAX(r.ts) OVER (PARTITION BY r.agent_id ORDER BY r.pos ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)) END " +
		"FROM (SELECT j.key AS pos, j.value ->> 'id' AS id, j.value ->> 'agent_id' AS agent_id, j.value ->> 'user_id' AS user_id, " +
		"j.value ->> 'tenant_id' AS tenant_id, j.value ->> 'action' AS action, j.value ->> 'resource' AS resource, " +
		"j.value ->> 'parameters' AS parameters, j.value ->> 'result' AS result, j.value ->> 'reason' AS reason, " +
		"j.value ->> 'duration_ms' AS duration_ms, j.value ->> 'ip' AS ip, j.value ->> 'user_agent' AS user_agent, " +
		"j.value ->> 'ts' AS ts, j.value ->> 'version' AS version FROM json_each(?) AS j) AS r " +
		"JOIN kavach_agents AS a ON a.id = r.agent_id AND (r.version = 0 OR a.version = r.version) " +
		"LEFT JOIN kavach_audit_heads AS h ON h.agent_id = r.agent_id " +
		"WINDOW w AS (PARTITION BY r.agent_id ORDER BY r.pos) ORDER BY r.pos"
	sqliteBulkHeads = "INSERT INTO kavach_audit_heads (agent_id, last_id, last_ts) " +
		"SELECT agent_id, id, chain_ts FROM (SELECT l.agent_id, l.id, " + chainTime + " AS chain_ts, " +
		"ROW_NUMBER() OVER (PARTITION BY l.agent_id ORDER BY j.key DESC) AS n " +
		"FROM json_each(?) AS j CROSS JOIN kavach_audit_logs AS l ON l.id = j.value ->> 'id') WHERE n = 1 AND changes() > 0 " +
		"ON CONFLICT (agent_id) DO UPDATE SET last_id = excluded.last_id, last_ts = MAX(excluded.last_ts, kavach_audit_heads.last_ts)"
)

// appendJSON appends r as the JSON object batchStmts hands Postgres and the SQLite family; empty
// optional fields are left out, which reads as NULL.
func (r *AuditRow) appendJSON(b []byte) []byte {
	field := func(b []byte, name, v string) []byte {
		if v == "" {
			return b
		}
		b = append(append(append(b, ",\""...), name...), "\":"...)
		return jsonw.AppendString(b, v)
	}
	b = append(b, `{"id":`...)
	b = jsonw.AppendString(b, r.ID)
	b = field(b, "agent_id", r.AgentID)
	b = field(b, "user_id", r.UserID)
	b = field(b, "tenant_id", r.TenantID)
	b = field(b, "action", r.Action)
	b = field(b, "resource", r.Resource)
	b = field(b, "parameters", r.Parameters)
	b = field(b, "result", r.Result)
	b = field(b, "reason", r.Reason)
	b = field(b, "ip", r.IP)
	b = field(b, "user_agent", r.UserAgent)
	b = strconv.AppendInt(append(b, `,"duration_ms":`...), r.DurationMs, 10)
	b = strconv.AppendInt(append(b, `,"ts":`...), r.Timestamp, 10)
	b = strconv.AppendInt(append(b, `,"version":`...), r.Version, 10)
	return append(b, '}')
}

// maxMergedBytes bounds the values of one merged insert, well under MySQL's smallest
// max_allowed_packet (4 MiB).
const maxMergedBytes = 1 << 20

// groupCommit is the native AuditSink: concurrent appends share one batch, one transaction and
// one commit, and each caller returns only after the batch holding its row has committed.
//
// There is no background goroutine. The first caller to find no batch in flight becomes the
// leader and commits everything queued, its own row included; callers arriving meanwhile queue
// and wait. When the leader's batch is done it hands leadership to the first waiter, whose row
// heads the next batch. A lone caller therefore commits its own row directly, with no hand-off
// between goroutines, and under load batches grow with the number of waiting callers.
type groupCommit struct {
	db            storage.DB
	log           Logger
	fewStatements bool // storage.PlansEveryStatement
	maxBatch      int
	timeout       time.Duration
	// inflight counts decisions between their start and their audit row (maintained by
	// Kavach.authorize). A leader that sees fewer rows queued than decisions in flight lets the
	// others run for a moment first, so they join its batch: a commit costs about as much for
	// ten rows as for one, since each row mostly dirties its own index page either way.
	inflight atomic.Int32

	mu      sync.Mutex
	queue   []*pending
	leading bool
	closed  bool

	// The leader's scratch space.
	rows  []*AuditRow
	batch []*pending
	self  *pending // the leader's own row, which it does not wake
}

// leadBudget bounds how long one caller keeps committing other callers' rows.
const leadBudget = 2 * time.Millisecond

type pending struct {
	row      *AuditRow
	recorded bool
	err      error
	wake     chan bool // receives false when done, true when made leader
}

var pendingPool = sync.Pool{New: func() any { return &pending{wake: make(chan bool, 1)} }}

func newGroupCommit(db storage.DB, log Logger) *groupCommit {
	return &groupCommit{db: db, log: log, fewStatements: storage.PlansEveryStatement(db), maxBatch: 256, timeout: 30 * time.Second}
}

func (g *groupCommit) Append(ctx context.Context, r *AuditRow) (bool, error) {
	p := pendingPool.Get().(*pending)
	p.row, p.recorded, p.err = r, false, nil
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		pendingPool.Put(p)
		return false, storage.ErrClosed
	}
	g.queue = append(g.queue, p)
	if g.leading {
		g.mu.Unlock()
		if lead := <-p.wake; lead {
			g.self = p
			g.lead(ctx)
		}
	} else {
		g.leading = true
		g.self = p
		g.mu.Unlock()
		g.lead(ctx)
	}
	recorded, err := p.recorded, p.err
	p.row = nil
	pendingPool.Put(p)
	return recorded, err
}

// lead commits batches from the head of the queue, the first holding the caller's own row.
// While more rows are waiting it keeps committing, for up to leadBudget, instead of handing over
// at once: a hand-off costs a goroutine wake-up, during which the database would sit idle.
// Then it passes leadership to the first waiter, so no caller leads for long.
func (g *groupCommit) lead(ctx context.Context) {
	deadline := time.Now().Add(leadBudget)
	for {
		g.gather()
		g.mu.Lock()
		n := min(len(g.queue), g.maxBatch)
		batch := append(g.batch[:0], g.queue[:n]...)
		rest := copy(g.queue, g.queue[n:])
		clear(g.queue[rest:])
		g.queue = g.queue[:rest]
		g.mu.Unlock()

		g.commit(ctx, batch)
		for _, p := range batch {
			if p != g.self {
				p.wake <- false
			}
		}
		clear(batch)
		g.batch = batch

		g.mu.Lock()
		if len(g.queue) == 0 {
			g.leading = false
			g.mu.Unlock()
			return
		}
		if time.Now().After(deadline) {
			g.queue[0].wake <- true
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
	}
}

// gather yields to other goroutines, a few times at most, while decisions in flight have not yet
// queued their rows. A lone caller never waits.
func (g *groupCommit) gather() {
	for range maxGatherYields {
		g.mu.Lock()
		queued := len(g.queue)
		g.mu.Unlock()
		if queued >= g.maxBatch || queued >= int(g.inflight.Load()) {
			return
		}
		runtime.Gosched()
	}
}

const maxGatherYields = 8

func (g *groupCommit) commit(ctx context.Context, batch []*pending) {
	// A caller giving up must not cancel the other callers' rows.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.timeout)
	defer cancel()
	d := g.db.Dialect()
	g.rows = g.rows[:0]
	for _, p := range batch {
		g.rows = append(g.rows, p.row)
	}
	stmts, written := batchStmts(d, g.rows, g.fewStatements)
	clear(g.rows)
	res, err := g.db.Exec(ctx, stmts...)
	switch {
	case err == nil:
		if ok := written(res); ok != nil {
			for i, p := range batch {
				p.recorded = ok[i]
			}
			return
		}
		// Some rows were refused (their agent changed): find out which went in.
		in, err := g.present(ctx, batch, false)
		for _, p := range batch {
			p.recorded, p.err = in[p.row.ID], err
		}
		return
	case errors.Is(err, storage.ErrUnavailable):
		// The connection failed, maybe after the batch was applied and before its answer came
		// back. The rows that are there now were written (and so are recorded: writing them
		// again would fail or, on the SQLite family, record the decision twice). If some are,
		// the batch was applied and the others were refused. If none is, each row is written
		// alone below. If the database cannot be asked either, every row fails at once instead
		// of each waiting for the outage on its own.
		in, qerr := g.present(ctx, batch, true)
		if qerr != nil {
			g.log.Error("kavach: an audit batch may or may not have been written (the connection failed and the database cannot be asked); its decisions are denied",
				"rows", len(batch), "first", batch[0].row.ID, "err", err, "check", qerr)
			for _, p := range batch {
				p.err = err
			}
			return
		}
		if len(in) > 0 {
			for _, p := range batch {
				p.recorded = in[p.row.ID]
			}
			return
		}
	case len(batch) == 1 && !strings.Contains(err.Error(), auditRefused):
		batch[0].err = err
		return
	}
	// One bad row must not deny everyone in its batch: write each row alone. (A batch some of
	// whose agents changed comes here too: each row's own statements tell which were refused.)
	for i, p := range batch {
		res, err := g.db.Exec(ctx, p.row.Stmts(d)...)
		switch {
		case err == nil:
			p.recorded = res[0].RowsAffected > 0
		case errors.Is(err, storage.ErrUnavailable):
			in, qerr := g.present(ctx, batch[i:i+1], true)
			if qerr != nil {
				for _, q := range batch[i:] {
					q.err = err
				}
				return
			}
			if p.recorded = in[p.row.ID]; !p.recorded {
				p.err = err
			}
		default:
			p.err = err
		}
	}
}

// present returns which of batch's rows are in the audit log; afterOutage, it asks as
// askAfterOutage does.
func (g *groupCommit) present(ctx context.Context, batch []*pending, afterOutage bool) (map[string]bool, error) {
	ids := make([]any, len(batch))
	for i, p := range batch {
		ids[i] = p.row.ID
	}
	stmt := storage.Stmt{SQL: "SELECT id FROM kavach_audit_logs WHERE id IN (" + strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ") + ")", Args: ids}
	var res []storage.Result
	var err error
	if afterOutage {
		res, err = askAfterOutage(ctx, g.db, stmt)
	} else {
		res, err = g.db.Exec(ctx, stmt)
	}
	if err != nil {
		return nil, err
	}
	in := make(map[string]bool, len(res[0].Rows))
	for _, r := range res[0].Rows {
		in[asString(r[0])] = true
	}
	return in, nil
}

// Close makes later appends fail; appends in flight complete.
func (g *groupCommit) Close() error {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	return nil
}
