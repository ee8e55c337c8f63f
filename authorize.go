package kavach

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"
	"unicode/utf8"

	"github.com/kavachdev/kavach/policy"
	"github.com/kavachdev/kavach/storage"
)

// Request is one action an agent wants to take.
type Request struct {
	Action   string
	Resource string
	// Arguments are the call's arguments; top-level strings are checked by allowedArgPatterns
	// and the whole object is recorded in the audit row.
	Arguments map[string]any
	// IP is the address the agent acts from, checked by ipAllowlist and recorded.
	IP        string
	UserAgent string
}

// Decision is the answer to a Request. Every decision about an existing agent writes exactly one
// audit row, and the decision is returned only after that row is committed; AuditID is its id.
// Decisions about unknown agents or tokens have an empty AuditID (there is no agent to record).
type Decision struct {
	Allowed bool         `json:"allowed"`
	Reason  string       `json:"reason,omitempty"`
	Code    DecisionCode `json:"code"`
	AuditID string       `json:"auditId"`
	// AgentID is the agent the decision is about ("" if none was found).
	AgentID string `json:"-"`
}

const (
	maxArgumentsLen = 64 << 10
	maxUserAgentLen = 512
	// A decision made from a cached snapshot is retried this many times when the snapshot turns
	// out to be stale before it is made from a fresh read.
	staleRetries = 3
)

// Authorize decides whether the agent with agentID may take req's action on req's resource.
//
// The error is non-nil only for an invalid request (a missing or malformed action, resource or
// IP). Everything else, including a failing database, is a Decision: storage errors deny, never
// allow.
func (k *Kavach) Authorize(ctx context.Context, agentID string, req Request) (Decision, error) {
	if err := checkID("agentId", agentID); err != nil {
		return Decision{}, err
	}
	return k.authorize(ctx, subject{id: agentID}, req)
}

// AuthorizeToken decides like Authorize for the agent that holds token.
func (k *Kavach) AuthorizeToken(ctx context.Context, token string, req Request) (Decision, error) {
	return k.authorize(ctx, subject{token: token}, req)
}

// AuthorizeTokenAs is AuthorizeToken for a caller that claims to be agentID: if the token
// belongs to another agent it returns an error matching ErrForbidden and decides nothing.
func (k *Kavach) AuthorizeTokenAs(ctx context.Context, token, agentID string, req Request) (Decision, error) {
	return k.authorize(ctx, subject{token: token, expectID: agentID}, req)
}

// subject names the agent a decision is about: by id, or by token (optionally checked against
// an expected id).
type subject struct {
	id, token, hash, expectID string
}

type prepared struct {
	in     policy.Input
	params string // audit parameters JSON
	ip, ua string
}

func (k *Kavach) prepare(req *Request) (*prepared, error) {
	if err := policy.ValidateAction(req.Action); err != nil {
		return nil, validationError("action", "%v", err)
	}
	if err := policy.ValidateResource(req.Resource); err != nil {
		return nil, validationError("resource", "%v", err)
	}
	p := &prepared{in: policy.Input{Action: req.Action, Resource: req.Resource, Arguments: req.Arguments}, params: "{}"}
	if req.Arguments != nil {
		b, err := json.Marshal(req.Arguments)
		if err != nil {
			return nil, validationError("arguments", "cannot be encoded as JSON: %v", err)
		}
		if len(b) > maxArgumentsLen {
			return nil, validationError("arguments", "are %d bytes of JSON; the limit is %d", len(b), maxArgumentsLen)
		}
		p.params = string(b)
	}
	if req.IP != "" {
		ip, err := netip.ParseAddr(req.IP)
		if err != nil {
			return nil, validationError("ip", "%q is not an IP address", req.IP)
		}
		p.in.IP = ip.Unmap().WithZone("")
		p.ip = p.in.IP.String()
	}
	if req.UserAgent != "" {
		ua := req.UserAgent
		if len(ua) > maxUserAgentLen {
			n := maxUserAgentLen
			for n > 0 && !utf8.RuneStart(ua[n]) {
				n--
			}
			ua = ua[:n]
		}
		p.ua = printable(ua)
	}
	return p, nil
}

func (k *Kavach) authorize(ctx context.Context, sub subject, req Request) (Decision, error) {
	p, err := k.prepare(&req)
	if err != nil {
		return Decision{}, err
	}
	if sub.token != "" {
		if !IsAgentToken(sub.token) {
			return Decision{Code: policy.InvalidToken, Reason: "Invalid or expired agent token"}, nil
		}
		sub.hash = hashSecret(sub.token)
	}
	if k.group != nil {
		k.group.inflight.Add(1)
		defer k.group.inflight.Add(-1)
	}
	for attempt := 0; ; attempt++ {
		start := k.now()
		snap, cached, err := k.load(ctx, &sub, attempt < staleRetries)
		if err != nil {
			k.log.Error("kavach: authorize: reading agent failed; denying", "err", err)
			return Decision{Code: policy.StorageError, Reason: "Authorization failed closed: the agent could not be read"}, nil
		}
		if snap == nil {
			if sub.token != "" {
				return Decision{Code: policy.InvalidToken, Reason: "Invalid or expired agent token"}, nil
			}
			return Decision{Code: policy.AgentNotFound, Reason: fmt.Sprintf("Agent %q not found", sub.id)}, nil
		}
		if sub.expectID != "" && snap.row.id != sub.expectID {
			return Decision{}, errorf(CodeForbidden, "this agent token belongs to another agent; an agent may only authorize itself")
		}
		out := k.decide(ctx, snap, p, start)
		auditID, err := k.ids.uuid(start)
		if err != nil {
			return Decision{Code: policy.StorageError, Reason: "Authorization failed closed: " + err.Error(), AgentID: snap.row.id}, nil
		}
		recorded, err := k.sink.Append(ctx, k.auditRow(auditID, snap, p, out, start, cached))
		if err != nil {
			k.log.Error("kavach: authorize: writing the audit row failed; denying", "agent", snap.row.id, "err", err)
			return Decision{Code: policy.StorageError, Reason: "Authorization failed closed: the decision could not be recorded", AgentID: snap.row.id}, nil
		}
		if !recorded && cached {
			// The agent changed after the snapshot was taken: decide again from the database.
			k.cache.invalidate(snap.row.id)
			if attempt <= staleRetries {
				continue
			}
			return Decision{Code: policy.StorageError, Reason: "Authorization failed closed: the agent kept changing while being decided", AgentID: snap.row.id}, nil
		}
		return Decision{Allowed: out.Allowed, Reason: out.Reason, Code: out.Code, AuditID: auditID, AgentID: snap.row.id}, nil
	}
}

// load returns the agent's snapshot and whether it came from the cache; nil if there is no such
// agent. Natively (with a cache) every snapshot counts as cached once stored, because the audit
// insert that follows is conditional on its version either way.
func (k *Kavach) load(ctx context.Context, sub *subject, useCache bool) (*snapshot, bool, error) {
	conditional := k.cache != nil
	if useCache {
		var s *snapshot
		if sub.hash != "" {
			s = k.cache.getByHash(sub.hash)
		} else {
			s = k.cache.get(sub.id)
		}
		if s != nil {
			return s, conditional, nil
		}
	}
	var stmts []storage.Stmt
	if sub.hash != "" {
		stmts = []storage.Stmt{
			{SQL: "SELECT " + agentColumns + " FROM kavach_agents WHERE token_hash = ?", Args: []any{sub.hash}},
			{SQL: "SELECT p.agent_id, p.resource, p.actions, p.constraints FROM kavach_permissions p JOIN kavach_agents a ON p.agent_id = a.id WHERE a.token_hash = ? ORDER BY p.id", Args: []any{sub.hash}},
		}
	} else {
		stmts = selectAgentByID(sub.id)
	}
	res, err := k.db.Exec(ctx, stmts...)
	if err != nil {
		return nil, false, err
	}
	if len(res[0].Rows) == 0 {
		return nil, false, nil
	}
	s := &snapshot{row: scanAgent(res[0].Rows[0])}
	if sub.hash != "" && !sameHash(s.row.tokenHash, sub.hash) {
		return nil, false, nil
	}
	s.set, s.setErr = compiledSets.compile(res[1].Rows)
	k.cache.put(s)
	return s, conditional, nil
}

// decide applies the agent's state and permissions to the request.
func (k *Kavach) decide(ctx context.Context, s *snapshot, p *prepared, now time.Time) policy.Outcome {
	switch s.row.effectiveStatus(now.Unix()) {
	case Active:
	case Revoked:
		return policy.Outcome{Code: policy.AgentRevoked, Reason: fmt.Sprintf("Agent %q is revoked", s.row.name), Permission: -1}
	case Expired:
		return policy.Outcome{Code: policy.AgentExpired, Reason: fmt.Sprintf("Agent %q is expired", s.row.name), Permission: -1}
	default:
		return policy.Outcome{Code: policy.AgentRevoked, Reason: fmt.Sprintf("Agent %q has unknown status %q", s.row.name, s.row.status), Permission: -1}
	}
	if s.setErr != nil {
		return policy.Outcome{Code: policy.StorageError, Reason: "Authorization failed closed: the agent's stored permissions are invalid: " + s.setErr.Error(), Permission: -1}
	}
	in := p.in
	in.Agent, in.Now = s.row.name, now
	var consume policy.Consume
	if s.set.HasRateLimits() {
		consume = func(rl policy.RateLimit) (bool, error) { return k.consumeRate(ctx, s.row.id, rl, now) }
	}
	out, err := s.set.Evaluate(&in, consume)
	if err != nil {
		k.log.Error("kavach: authorize: rate limit check failed; denying", "agent", s.row.id, "err", err)
	}
	return out
}

// consumeRate counts one call against a rate-limited permission, atomically: the upsert only
// happens while the calls in the trailing hour (5-minute buckets) are below the cap, so nodes
// sharing a database never exceed it together. Buckets older than an hour are deleted in the
// same batch. The first statement locks the agent row, which serialises concurrent counters
// for one agent on Postgres and MySQL (SQLite serialises all writes).
func (k *Kavach) consumeRate(ctx context.Context, agentID string, rl policy.RateLimit, now time.Time) (bool, error) {
	ts := now.Unix()
	window := ts - ts%300
	since := ts - 3600
	id, err := k.ids.uuid(now)
	if err != nil {
		return false, err
	}
	d := k.dialect
	res, err := k.db.Exec(ctx,
		storage.Stmt{SQL: "UPDATE kavach_agents SET last_active_at = ? WHERE id = ?", Args: []any{ts, agentID}},
		storage.Stmt{SQL: "DELETE FROM kavach_rate_limits WHERE agent_id = ? AND resource = ? AND window_start < ?", Args: []any{agentID, rl.Key, since}},
		storage.Stmt{
			SQL: "INSERT INTO kavach_rate_limits (id, agent_id, resource, window_start, count) SELECT ?, ?, ?, ?, 1 FROM kavach_agents WHERE id = ? AND " +
				"(SELECT COALESCE(SUM(count), 0) FROM kavach_rate_limits WHERE agent_id = ? AND resource = ? AND window_start >= ?) < ?" +
				d.OnConflictUpdate([]string{"agent_id", "resource", "window_start"}, "count = "+d.Current("kavach_rate_limits", "count")+" + 1"),
			Args: []any{id, agentID, rl.Key, window, agentID, agentID, rl.Key, since, int64(rl.PerHour)},
		},
	)
	if err != nil {
		return false, err
	}
	return res[2].RowsAffected > 0, nil
}

// auditRow is the audit row recording decision out, made at start from snapshot s. When
// conditional, the row is recorded only while the agent is still at the snapshot's version.
func (k *Kavach) auditRow(id string, s *snapshot, p *prepared, out policy.Outcome, start time.Time, conditional bool) *AuditRow {
	r := &AuditRow{ID: id, AgentID: s.row.id, UserID: s.row.ownerID, TenantID: s.row.tenantID, Action: p.in.Action, Resource: p.in.Resource,
		Parameters: p.params, Result: "denied", IP: p.ip, UserAgent: p.ua, Timestamp: start.Unix()}
	switch {
	case out.Allowed:
		r.Result = "allowed"
	case out.Code == policy.RateLimited:
		r.Result = "rate_limited"
	}
	if !out.Allowed {
		r.Reason = out.Reason
	}
	if d := k.now().Sub(start).Milliseconds(); d > 0 {
		r.DurationMs = d
	}
	if conditional {
		r.Version = s.row.version
	}
	return r
}
