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
	res, err := a.k.db.Exec(ctx, storage.Stmt{
		SQL:  "SELECT " + auditColumns + " FROM kavach_audit_logs" + where + " ORDER BY timestamp DESC, id DESC LIMIT ? OFFSET ?",
		Args: append(args, int64(limit), int64(offset)),
	})
	if err != nil {
		return nil, storageError("querying audit log", err)
	}
	out := make([]AuditEntry, len(res[0].Rows))
	for i, r := range res[0].Rows {
		out[i] = scanAudit(r)
	}
	return out, nil
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
	for {
		cond, cargs := where, append([]any{}, args...)
		if !first {
			// Keyset paging: strictly older than the last entry written.
			k := "(timestamp < ? OR (timestamp = ? AND id < ?))"
			if cond == "" {
				cond = " WHERE " + k
			} else {
				cond += " AND " + k
			}
			cargs = append(cargs, afterTS, afterTS, afterID)
		}
		res, err := a.k.db.Exec(ctx, storage.Stmt{
			SQL:  "SELECT " + auditColumns + " FROM kavach_audit_logs" + cond + " ORDER BY timestamp DESC, id DESC LIMIT ?",
			Args: append(cargs, int64(exportPage)),
		})
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
		}
		if len(rows) < exportPage {
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
