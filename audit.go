package kavach

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/kavachdev/kavach/policy"
	"github.com/kavachdev/kavach/storage"
)

// AuditEntry is one recorded decision.
type AuditEntry struct {
	ID         string
	AgentID    string
	UserID     string
	TenantID   string
	Action     string
	Resource   string
	Parameters json.RawMessage // the request's arguments as recorded
	Result     string          // allowed, denied or rate_limited
	Reason     string
	DurationMs int64
	TokensCost *int64
	IP         string
	UserAgent  string
	Timestamp  time.Time
}

// MarshalJSON writes the reference's AuditEntry shape (plus tenantId, ip and userAgent, which the
// reference stores but does not return).
func (e *AuditEntry) MarshalJSON() ([]byte, error) {
	type wire struct {
		ID         string          `json:"id"`
		AgentID    string          `json:"agentId"`
		UserID     string          `json:"userId"`
		TenantID   string          `json:"tenantId,omitempty"`
		Action     string          `json:"action"`
		Resource   string          `json:"resource"`
		Parameters json.RawMessage `json:"parameters"`
		Result     string          `json:"result"`
		Reason     string          `json:"reason,omitempty"`
		DurationMs int64           `json:"durationMs"`
		TokensCost *int64          `json:"tokensCost,omitempty"`
		IP         string          `json:"ip,omitempty"`
		UserAgent  string          `json:"userAgent,omitempty"`
		Timestamp  string          `json:"timestamp"`
	}
	params := e.Parameters
	if len(params) == 0 || !json.Valid(params) {
		params = json.RawMessage("{}")
	}
	return json.Marshal(wire{e.ID, e.AgentID, e.UserID, e.TenantID, e.Action, e.Resource, params, e.Result, e.Reason,
		e.DurationMs, e.TokensCost, e.IP, e.UserAgent, formatTime(e.Timestamp)})
}

// AuditFilter selects audit entries. Empty fields do not filter; all filters are applied in the
// database before Limit and Offset.
type AuditFilter struct {
	AgentID string
	UserID  string
	Since   time.Time // entries at or after
	Until   time.Time // entries at or before
	Actions []string
	Result  string // allowed, denied or rate_limited
	// Limit is the page size (default 100, at most 1000); Offset skips entries. Entries come
	// newest first; entries within one second keep the order they were recorded in.
	Limit  int
	Offset int
}

// Audit reads the audit trail.
type Audit struct{ k *Kavach }

const auditColumns = "id, agent_id, user_id, tenant_id, action, resource, parameters, result, reason, duration_ms, tokens_cost, ip, user_agent, timestamp"

// Validate reports the first invalid field of f.
func (f *AuditFilter) Validate() error {
	_, _, err := f.where()
	return err
}

func (f *AuditFilter) where() (string, []any, error) {
	var conds []string
	var args []any
	if f.AgentID != "" {
		if err := checkID("agentId", f.AgentID); err != nil {
			return "", nil, err
		}
		conds, args = append(conds, "agent_id = ?"), append(args, f.AgentID)
	}
	if f.UserID != "" {
		if err := checkID("userId", f.UserID); err != nil {
			return "", nil, err
		}
		conds, args = append(conds, "user_id = ?"), append(args, f.UserID)
	}
	if !f.Since.IsZero() {
		conds, args = append(conds, "timestamp >= ?"), append(args, f.Since.Unix())
	}
	if !f.Until.IsZero() {
		conds, args = append(conds, "timestamp <= ?"), append(args, f.Until.Unix())
	}
	if len(f.Actions) > 0 {
		if len(f.Actions) > 50 {
			return "", nil, validationError("actions", "at most 50 actions may be given")
		}
		marks := make([]string, len(f.Actions))
		for i, a := range f.Actions {
			if err := policy.ValidateAction(a); err != nil {
				return "", nil, validationError("actions", "%v", err)
			}
			marks[i] = "?"
			args = append(args, a)
		}
		conds = append(conds, "action IN ("+strings.Join(marks, ", ")+")")
	}
	switch f.Result {
	case "":
	case "allowed", "denied", "rate_limited":
		conds, args = append(conds, "result = ?"), append(args, f.Result)
	default:
		return "", nil, validationError("result", "must be allowed, denied or rate_limited, not %q", f.Result)
	}
	if len(conds) == 0 {
		return "", nil, nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args, nil
}

func scanAudit(r []any) AuditEntry {
	e := AuditEntry{
		ID: asString(r[0]), AgentID: asString(r[1]), UserID: asString(r[2]), TenantID: asString(r[3]),
		Action: asString(r[4]), Resource: asString(r[5]), Parameters: json.RawMessage(asString(r[6])),
		Result: asString(r[7]), Reason: asString(r[8]), DurationMs: asInt(r[9]),
		IP: asString(r[11]), UserAgent: asString(r[12]), Timestamp: unix(asInt(r[13])),
	}
	if r[10] != nil {
		c := asInt(r[10])
		e.TokensCost = &c
	}
	return e
}

// Query returns one page of entries matching f, newest first.
func (a *Audit) Query(ctx context.Context, f AuditFilter) ([]AuditEntry, error) {
	where, args, err := f.where()
	if err != nil {
		return nil, err
	}
	limit, offset, err := page(f.Limit, f.Offset)
	if err != nil {
		return nil, err
	}
	var st storage.Stmt
	if a.chained(f) {
		st = a.chainStmt(f, nil, auditColumns, where, args)
	} else {
		st.SQL = "SELECT " + auditColumns + " FROM kavach_audit_logs" + where + " ORDER BY timestamp DESC, id DESC"
		st.Args = args
	}
	st.SQL += " LIMIT ? OFFSET ?"
	st.Args = append(st.Args, int64(limit), int64(offset))
	res, err := a.k.db.Exec(ctx, st)
	if err != nil {
		return nil, storageError("querying audit log", err)
	}
	out := make([]AuditEntry, len(res[0].Rows))
	for i, r := range res[0].Rows {
		out[i] = scanAudit(r)
	}
	return out, nil
}

// chained reports whether entries matching f are found by following agents' chains: on the
// SQLite family (which has no index by agent or user, see schema.sql) when f names an agent or a
// user.
func (a *Audit) chained(f AuditFilter) bool {
	return a.k.dialect == storage.SQLite && (f.AgentID != "" || f.UserID != "")
}

// chainStmt selects cols of the entries matching where, newest first, by walking chains; the
// caller adds LIMIT. SQLite computes a recursive query as its reader asks for rows (as long as
// the outer query reads nothing else, so the rows travel through the recursion whole), and a
// page costs a primary-key lookup per entry walked, however long the log.
//
// With an agent, the walk follows that agent's chain from its head, or from the entry from
// (an id) when it is not nil. With only a user, it merges the chains of all the user's agents:
// a recursive query with ORDER BY takes rows from its queue in that order, and the queue holds
// the next entry of each chain, so the entries come out by chain time, newest first. With Since,
// a chain is not followed past a link older than Since, which is safe because chain time never
// decreases along a chain and a row's timestamp is at most its chain time (schema.sql).
func (a *Audit) chainStmt(f AuditFilter, from any, cols, where string, args []any) storage.Stmt {
	const row = "SELECT l.*, " + chainTime + " AS chain_ts FROM "
	next := row + "chain CROSS JOIN kavach_audit_logs AS l ON l.id = chain.prev_id"
	var start string
	var cargs []any
	switch {
	case from != nil:
		start = row + "kavach_audit_logs AS l WHERE l.id = ?"
		cargs = append(cargs, from)
	case f.AgentID != "":
		start = row + "kavach_audit_heads AS h CROSS JOIN kavach_audit_logs AS l ON l.id = h.last_id WHERE h.agent_id = ?"
		cargs = append(cargs, f.AgentID)
	default:
		start = row + "kavach_agents AS ag CROSS JOIN kavach_audit_heads AS h ON h.agent_id = ag.id " +
			"CROSS JOIN kavach_audit_logs AS l ON l.id = h.last_id WHERE ag.owner_id = ?"
		cargs = append(cargs, f.UserID)
	}
	if !f.Since.IsZero() {
		next += " WHERE chain.prev_ts >= ?"
		cargs = append(cargs, f.Since.Unix())
	}
	if f.AgentID == "" {
		next += " ORDER BY chain_ts DESC, id DESC"
	}
	// CROSS JOIN fixes the join order: the chain drives, each entry is one primary-key lookup.
	return storage.Stmt{
		SQL:  "WITH RECURSIVE chain AS (" + start + " UNION ALL " + next + ") SELECT " + cols + " FROM chain" + where,
		Args: append(cargs, args...),
	}
}

// ExportFormat is json or csv.
type ExportFormat string

const (
	ExportJSON ExportFormat = "json"
	ExportCSV  ExportFormat = "csv"
)

// csvHeader keeps the reference's columns first, so files stay readable by its tooling.
var csvHeader = []string{"id", "agentId", "userId", "action", "resource", "result", "reason", "durationMs", "tokensCost", "timestamp", "tenantId", "ip", "userAgent", "parameters"}

const exportPage = 1000

// Export writes every entry matching f (Limit and Offset are ignored) to w, newest first, reading
// the database a page at a time so memory stays flat however large the log is. JSON is an array
// of entries; CSV follows RFC 4180 (CRLF line ends, fields quoted when they need it).
func (a *Audit) Export(ctx context.Context, f AuditFilter, format ExportFormat, w io.Writer) error {
	if format != ExportJSON && format != ExportCSV {
		return validationError("format", "must be \"json\" or \"csv\", not %q", format)
	}
	where, args, err := f.where()
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 32<<10)
	var cw *csv.Writer
	if format == ExportCSV {
		cw = csv.NewWriter(bw)
		cw.UseCRLF = true
		if err := cw.Write(csvHeader); err != nil {
			return err
		}
	} else if _, err := bw.WriteString("["); err != nil {
		return err
	}
	first := true
	var afterTS int64
	var afterID string
	// An agent's entries are exported by walking its chain on the SQLite family, a page at a time:
	// each page starts at the link after the last entry of the one before. Everything else pages
	// through the time index by keyset: strictly older than the last entry written.
	walk := a.k.dialect == storage.SQLite && f.AgentID != ""
	var next any
	for {
		var st storage.Stmt
		if walk {
			st = a.chainStmt(f, next, auditColumns+", prev_id", where, args)
		} else {
			cond, cargs := where, append([]any{}, args...)
			if !first {
				k := "(timestamp < ? OR (timestamp = ? AND id < ?))"
				if cond == "" {
					cond = " WHERE " + k
				} else {
					cond += " AND " + k
				}
				cargs = append(cargs, afterTS, afterTS, afterID)
			}
			st = storage.Stmt{SQL: "SELECT " + auditColumns + " FROM kavach_audit_logs" + cond + " ORDER BY timestamp DESC, id DESC", Args: cargs}
		}
		st.SQL += " LIMIT ?"
		st.Args = append(st.Args, int64(exportPage))
		res, err := a.k.db.Exec(ctx, st)
		if err != nil {
			return storageError("exporting audit log", err)
		}
		rows := res[0].Rows
		for _, r := range rows {
			e := scanAudit(r)
			if cw != nil {
				cost := ""
				if e.TokensCost != nil {
					cost = strconv.FormatInt(*e.TokensCost, 10)
				}
				params := string(e.Parameters)
				if params == "" {
					params = "{}"
				}
				if err := cw.Write([]string{e.ID, e.AgentID, e.UserID, e.Action, e.Resource, e.Result, e.Reason,
					strconv.FormatInt(e.DurationMs, 10), cost, formatTime(e.Timestamp), e.TenantID, e.IP, e.UserAgent, params}); err != nil {
					return err
				}
			} else {
				b, err := json.MarshalIndent(&e, "  ", "  ")
				if err != nil {
					return err
				}
				sep := ",\n  "
				if first {
					sep = "\n  "
				}
				bw.WriteString(sep)
				bw.Write(b)
			}
			first = false
		}
		if len(rows) > 0 {
			last := rows[len(rows)-1]
			afterTS, afterID = asInt(last[13]), asString(last[0])
			if walk {
				next = last[14]
			}
		}
		if len(rows) < exportPage || walk && next == nil {
			break
		}
		if cw != nil {
			cw.Flush()
		}
		if err := bw.Flush(); err != nil {
			return err
		}
	}
	if cw != nil {
		cw.Flush()
		if err := cw.Error(); err != nil {
			return err
		}
	} else {
		if !first {
			bw.WriteString("\n")
		}
		bw.WriteString("]\n")
	}
	return bw.Flush()
}
