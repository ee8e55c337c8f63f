package kavach

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kavachdev/kavach/policy"
	"github.com/kavachdev/kavach/storage"
)

// AgentType labels what kind of agent an identity belongs to. It does not change behaviour.
type AgentType string

const (
	Autonomous AgentType = "autonomous"
	Delegated  AgentType = "delegated"
	Service    AgentType = "service"
)

// AgentStatus is an agent's state. An agent whose expiry has passed is reported as expired on
// every path, whatever its stored status.
type AgentStatus string

const (
	Active  AgentStatus = "active"
	Revoked AgentStatus = "revoked"
	Expired AgentStatus = "expired"
)

// Limits on agent fields.
const (
	maxNameLen     = 128
	maxIDLen       = 128
	maxMetadataLen = 16 << 10
	maxListLimit   = 1000
)

// Agent is an agent identity.
type Agent struct {
	ID       string
	OwnerID  string
	TenantID string
	Name     string
	Type     AgentType
	Status   AgentStatus
	// Token is the agent's bearer token. It is only ever set in the results of Create and
	// Rotate: Kavach stores a SHA-256 hash, never the token.
	Token string
	// TokenPrefix is the token's first 11 characters, stored for display.
	TokenPrefix string
	Permissions []Permission
	Metadata    map[string]any
	ExpiresAt   *time.Time
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// MarshalJSON writes the reference's AgentIdentity shape, which every client SDK decodes:
// token is always present ("" except after create and rotate), expiresAt is null when the agent
// does not expire, and times are UTC with milliseconds.
func (a *Agent) MarshalJSON() ([]byte, error) {
	type wire struct {
		ID          string         `json:"id"`
		OwnerID     string         `json:"ownerId"`
		TenantID    string         `json:"tenantId,omitempty"`
		Name        string         `json:"name"`
		Type        AgentType      `json:"type"`
		Token       string         `json:"token"`
		TokenPrefix string         `json:"tokenPrefix"`
		Permissions []Permission   `json:"permissions"`
		Status      AgentStatus    `json:"status"`
		Metadata    map[string]any `json:"metadata"`
		ExpiresAt   *string        `json:"expiresAt"`
		CreatedAt   string         `json:"createdAt"`
		UpdatedAt   string         `json:"updatedAt"`
	}
	w := wire{ID: a.ID, OwnerID: a.OwnerID, TenantID: a.TenantID, Name: a.Name, Type: a.Type, Token: a.Token,
		TokenPrefix: a.TokenPrefix, Permissions: a.Permissions, Status: a.Status, Metadata: a.Metadata,
		CreatedAt: formatTime(a.CreatedAt), UpdatedAt: formatTime(a.UpdatedAt)}
	if w.Permissions == nil {
		w.Permissions = []Permission{}
	}
	if w.Metadata == nil {
		w.Metadata = map[string]any{}
	}
	if a.ExpiresAt != nil {
		s := formatTime(*a.ExpiresAt)
		w.ExpiresAt = &s
	}
	return json.Marshal(w)
}

// NewAgent describes an agent to create.
type NewAgent struct {
	OwnerID     string
	TenantID    string
	Name        string
	Type        AgentType
	Permissions []Permission
	// ExpiresAt must be in the future. Nil means now + agents.tokenExpiry.
	ExpiresAt *time.Time
	// NeverExpires creates an agent without expiry, whatever agents.tokenExpiry says.
	NeverExpires bool
	Metadata     map[string]any
}

// AgentUpdate changes an agent. Nil fields are left as they are.
type AgentUpdate struct {
	Name *string
	// Permissions, when non-nil, replaces every permission (an empty slice removes them all).
	Permissions *[]Permission
	// ExpiresAt sets a new expiry, which must be in the future; ClearExpiry removes it.
	ExpiresAt   *time.Time
	ClearExpiry bool
	Metadata    *map[string]any
}

// ListFilter selects agents. Empty fields do not filter.
type ListFilter struct {
	OwnerID  string
	TenantID string
	Status   AgentStatus
	Type     AgentType
	// Limit is the page size (default 100, at most 1000); Offset skips agents. Agents are
	// listed oldest first.
	Limit  int
	Offset int
}

// Agents manages agent identities.
type Agents struct{ k *Kavach }

func validType(t AgentType) bool { return t == Autonomous || t == Delegated || t == Service }

func checkPermissions(perms []Permission) (*policy.Set, error) {
	set, err := policy.Compile(perms)
	if err != nil {
		return nil, validationError("", "%v", err)
	}
	return set, nil
}

func encodeMetadata(field string, m map[string]any) (any, error) {
	if m == nil {
		return "{}", nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, validationError(field, "cannot be encoded as JSON: %v", err)
	}
	if len(b) > maxMetadataLen {
		return nil, validationError(field, "is %d bytes of JSON; the limit is %d", len(b), maxMetadataLen)
	}
	return string(b), nil
}

func checkID(field, s string) error {
	if s == "" {
		return validationError(field, "is required")
	}
	if len(s) > maxIDLen {
		return validationError(field, "is %d bytes long; the limit is %d", len(s), maxIDLen)
	}
	if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r == ' ' }) {
		return validationError(field, "must be printable text without spaces")
	}
	return nil
}

// printable returns s with each control character and each byte of invalid UTF-8 replaced by
// U+FFFD, for text that is recorded as given (a user agent header) but must be storable on every
// backend: Postgres refuses NUL bytes and invalid UTF-8, MySQL invalid UTF-8.
func printable(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return strings.Map(func(r rune) rune {
				if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
					return utf8.RuneError
				}
				return r
			}, strings.ToValidUTF8(s, "\uFFFD"))
		}
	}
	return s
}

func checkName(field, s string) error {
	if s == "" {
		return validationError(field, "is required")
	}
	if strings.TrimSpace(s) == "" {
		return validationError(field, "must not be blank")
	}
	if len(s) > maxNameLen {
		return validationError(field, "is %d bytes long; the limit is %d", len(s), maxNameLen)
	}
	if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return validationError(field, "contains a control character or invalid UTF-8")
	}
	return nil
}

// Create creates an agent and returns it with its token, the only time the token is shown.
//
// The per-owner limit is enforced by the INSERT itself (it inserts only while the owner has
// fewer active agents than the limit), so concurrent creates on one or several nodes cannot
// exceed it.
func (s *Agents) Create(ctx context.Context, in NewAgent) (*Agent, error) {
	k := s.k
	if err := checkID("ownerId", in.OwnerID); err != nil {
		return nil, err
	}
	if in.TenantID != "" {
		if err := checkID("tenantId", in.TenantID); err != nil {
			return nil, err
		}
	}
	if err := checkName("name", in.Name); err != nil {
		return nil, err
	}
	if in.Type == "" {
		return nil, validationError("type", "is required (autonomous, delegated or service)")
	}
	if !validType(in.Type) {
		return nil, validationError("type", "must be autonomous, delegated or service, not %q", in.Type)
	}
	if _, err := checkPermissions(in.Permissions); err != nil {
		return nil, err
	}
	meta, err := encodeMetadata("metadata", in.Metadata)
	if err != nil {
		return nil, err
	}
	now := k.now()
	var expires *time.Time
	switch {
	case in.NeverExpires:
	case in.ExpiresAt != nil:
		if !in.ExpiresAt.After(now) {
			return nil, validationError("expiresAt", "must be in the future")
		}
		t := in.ExpiresAt.UTC().Truncate(time.Second)
		expires = &t
	case k.tokenTTL > 0:
		t := now.Add(k.tokenTTL).UTC().Truncate(time.Second)
		expires = &t
	}
	permJSON, err := encodePermissions(in.Permissions)
	if err != nil {
		return nil, err
	}
	id, err := k.ids.uuid(now)
	if err != nil {
		return nil, err
	}
	token, err := k.ids.secret(agentTokenPrefix)
	if err != nil {
		return nil, err
	}
	ts := now.Unix()
	var expArg any
	if expires != nil {
		expArg = expires.Unix()
	}
	var tenantArg any
	if in.TenantID != "" {
		tenantArg = in.TenantID
	}

	var batch []storage.Stmt
	if k.provisionUser {
		// A minimal owner row; .invalid is a reserved TLD, so the address can belong to nobody.
		batch = append(batch, storage.Stmt{
			SQL:  "INSERT INTO kavach_users (id, email, created_at, updated_at) VALUES (?, ?, ?, ?)" + k.dialect.OnConflictDoNothing("id"),
			Args: []any{in.OwnerID, in.OwnerID + "@owners.kavach.invalid", ts, ts},
		})
	}
	// Locking the owner's row serialises concurrent creates for one owner on Postgres and MySQL,
	// so the count below sees every committed agent. SQLite serialises all writes anyway.
	batch = append(batch, storage.Stmt{SQL: "UPDATE kavach_users SET updated_at = updated_at WHERE id = ?", Args: []any{in.OwnerID}})
	limitSQL, limitArgs := "", []any(nil)
	if k.maxPerUser > 0 {
		limitSQL = " AND (SELECT COUNT(*) FROM kavach_agents WHERE owner_id = ? AND status = 'active' AND (expires_at IS NULL OR expires_at > ?)) < ?"
		limitArgs = []any{in.OwnerID, ts, int64(k.maxPerUser)}
	}
	tenantSQL, tenantArgs := "", []any(nil)
	if in.TenantID != "" {
		tenantSQL = " AND EXISTS (SELECT 1 FROM kavach_tenants WHERE id = ?)"
		tenantArgs = []any{in.TenantID}
	}
	insertAgent := len(batch)
	args := []any{id, in.OwnerID, tenantArg, in.Name, string(in.Type), hashSecret(token), token[:tokenPrefixLen], expArg, meta, ts, ts, in.OwnerID}
	args = append(append(args, limitArgs...), tenantArgs...)
	batch = append(batch, storage.Stmt{
		SQL: "INSERT INTO kavach_agents (id, owner_id, tenant_id, name, type, status, token_hash, token_prefix, expires_at, metadata, created_at, updated_at, version) " +
			"SELECT ?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, 1 FROM kavach_users WHERE id = ?" + limitSQL + tenantSQL,
		Args: args,
	})
	for _, p := range permJSON {
		pid, err := k.ids.uuid(now)
		if err != nil {
			return nil, err
		}
		batch = append(batch, insertPermission(pid, id, p, ts))
	}
	res, err := k.db.Exec(ctx, batch...)
	if err != nil {
		// A lost answer: if the agent is there, the batch was applied, and the token, which
		// nobody else has, must reach the caller.
		if _, ok := k.landed(ctx, err, "creating agent "+id, storage.Stmt{SQL: "SELECT 1 FROM kavach_agents WHERE id = ?", Args: []any{id}}); !ok {
			return nil, storageError("creating agent", err)
		}
	} else if res[insertAgent].RowsAffected == 0 {
		return nil, k.Agents.whyNotCreated(ctx, in, ts)
	}
	return &Agent{
		ID: id, OwnerID: in.OwnerID, TenantID: in.TenantID, Name: in.Name, Type: in.Type, Status: Active,
		Token: token, TokenPrefix: token[:tokenPrefixLen], Permissions: clonePermissions(in.Permissions),
		Metadata: in.Metadata, ExpiresAt: expires, CreatedAt: unix(ts), UpdatedAt: unix(ts),
	}, nil
}

// whyNotCreated explains a conditional agent insert that inserted nothing.
func (s *Agents) whyNotCreated(ctx context.Context, in NewAgent, ts int64) error {
	stmts := []storage.Stmt{
		{SQL: "SELECT COUNT(*) FROM kavach_users WHERE id = ?", Args: []any{in.OwnerID}},
		{SQL: "SELECT COUNT(*) FROM kavach_tenants WHERE id = ?", Args: []any{in.TenantID}},
	}
	res, err := s.k.db.Exec(ctx, stmts...)
	if err != nil {
		return storageError("creating agent", err)
	}
	switch {
	case asInt(res[0].Rows[0][0]) == 0:
		return errorf(CodeNotFound, "owner %q does not exist; create the user first", in.OwnerID)
	case in.TenantID != "" && asInt(res[1].Rows[0][0]) == 0:
		return errorf(CodeNotFound, "tenant %q does not exist", in.TenantID)
	}
	return errorf(CodeAgentLimit, "owner %q has reached the maximum of %d active agents; revoke one or raise agents.maxPerUser", in.OwnerID, s.k.maxPerUser)
}

type permissionJSON struct{ resource, actions, constraints any }

func encodePermissions(perms []Permission) ([]permissionJSON, error) {
	out := make([]permissionJSON, len(perms))
	for i, p := range perms {
		a, err := json.Marshal(p.Actions)
		if err != nil {
			return nil, err
		}
		out[i] = permissionJSON{resource: p.Resource, actions: string(a)}
		if p.Constraints != nil {
			c, err := json.Marshal(p.Constraints)
			if err != nil {
				return nil, err
			}
			out[i].constraints = string(c)
		}
	}
	return out, nil
}

// insertPermission inserts a permission only if its agent exists, so a batch whose agent insert
// was refused leaves no orphan permissions.
func insertPermission(id, agentID string, p permissionJSON, ts int64) storage.Stmt {
	return storage.Stmt{
		SQL:  "INSERT INTO kavach_permissions (id, agent_id, resource, actions, constraints, created_at) SELECT ?, ?, ?, ?, ?, ? FROM kavach_agents WHERE id = ?",
		Args: []any{id, agentID, p.resource, p.actions, p.constraints, ts, agentID},
	}
}

func clonePermissions(p []Permission) []Permission {
	if p == nil {
		return []Permission{}
	}
	out := make([]Permission, len(p))
	copy(out, p)
	return out
}

// agentRow is a kavach_agents row as the core reads it.
type agentRow struct {
	id, ownerID, tenantID, name, typ, status, tokenPrefix, tokenHash, metadata string
	expiresAt, createdAt, updatedAt, version                                   int64 // expiresAt 0: none
}

const agentColumns = "id, owner_id, tenant_id, name, type, status, token_prefix, token_hash, expires_at, metadata, created_at, updated_at, version"
const permissionColumns = "agent_id, resource, actions, constraints"

func scanAgent(r []any) agentRow {
	return agentRow{
		id: asString(r[0]), ownerID: asString(r[1]), tenantID: asString(r[2]), name: asString(r[3]), typ: asString(r[4]),
		status: asString(r[5]), tokenPrefix: asString(r[6]), tokenHash: asString(r[7]), expiresAt: asInt(r[8]),
		metadata: asString(r[9]), createdAt: asInt(r[10]), updatedAt: asInt(r[11]), version: asInt(r[12]),
	}
}

// effectiveStatus applies expiry: an active agent whose expiry has passed is expired.
func (r *agentRow) effectiveStatus(now int64) AgentStatus {
	if r.status == string(Active) && r.expiresAt != 0 && r.expiresAt <= now {
		return Expired
	}
	return AgentStatus(r.status)
}

// scanPermission reads a row of kavach_permissions (agent_id, resource, actions, constraints).
func scanPermission(r []any) (Permission, error) {
	return permissionOf(asString(r[1]), asString(r[2]), asString(r[3]))
}

// permissionOf decodes the stored text of a permission; the result refers to resource and
// actions.
func permissionOf(resource, actions, c string) (Permission, error) {
	p := Permission{Resource: resource}
	var ok bool
	if p.Actions, ok = simpleStrings(actions); !ok {
		if err := json.Unmarshal([]byte(actions), &p.Actions); err != nil {
			return p, fmt.Errorf("actions of a permission on %q are not a JSON array: %v", p.Resource, err)
		}
	}
	if c != "" && c != "null" {
		p.Constraints = new(Constraints)
		if err := json.Unmarshal([]byte(c), p.Constraints); err != nil {
			return p, fmt.Errorf("constraints of a permission on %q do not decode: %v", p.Resource, err)
		}
	}
	return p, nil
}

// simpleStrings parses a JSON array of strings without escapes, as stored actions always are,
// without encoding/json (whose reflection is slow inside WebAssembly). ok is false for anything
// else, which the caller then decodes properly.
func simpleStrings(s string) ([]string, bool) {
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' || strings.IndexByte(s, '\\') >= 0 {
		return nil, false
	}
	body := strings.TrimSpace(s[1 : len(s)-1])
	if body == "" {
		return []string{}, true
	}
	parts := strings.Split(body, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if len(p) < 2 || p[0] != '"' || p[len(p)-1] != '"' || strings.IndexByte(p[1:len(p)-1], '"') >= 0 {
			return nil, false
		}
		parts[i] = p[1 : len(p)-1]
	}
	return parts, true
}

func (r *agentRow) toAgent(perms []Permission, now int64) (*Agent, error) {
	a := &Agent{
		ID: r.id, OwnerID: r.ownerID, TenantID: r.tenantID, Name: r.name, Type: AgentType(r.typ),
		Status: r.effectiveStatus(now), TokenPrefix: r.tokenPrefix, Permissions: perms,
		CreatedAt: unix(r.createdAt), UpdatedAt: unix(r.updatedAt),
	}
	if a.Permissions == nil {
		a.Permissions = []Permission{}
	}
	if r.expiresAt != 0 {
		t := unix(r.expiresAt)
		a.ExpiresAt = &t
	}
	if r.metadata != "" && r.metadata != "null" {
		if err := json.Unmarshal([]byte(r.metadata), &a.Metadata); err != nil {
			return nil, &Error{Code: CodeSchema, Message: fmt.Sprintf("kavach: metadata of agent %q is not a JSON object: %v", r.id, err)}
		}
	}
	return a, nil
}

func selectAgentByID(id string) []storage.Stmt {
	return []storage.Stmt{
		{SQL: "SELECT " + agentColumns + " FROM kavach_agents WHERE id = ?", Args: []any{id}},
		{SQL: "SELECT " + permissionColumns + " FROM kavach_permissions WHERE agent_id = ? ORDER BY id", Args: []any{id}},
	}
}

// landedAgent is landed for a write to agent id whose answer was lost: check tells whether the
// write was applied, and if it was, the agent as stored comes back as the two results of
// selectAgentByID.
func (k *Kavach) landedAgent(ctx context.Context, err error, what, id string, check storage.Stmt) ([]storage.Result, bool) {
	res, ok := k.landed(ctx, err, what, append([]storage.Stmt{check}, selectAgentByID(id)...)...)
	if !ok {
		return nil, false
	}
	return res[1:], true
}

// agentFromResults builds an agent from the two results of selectAgentByID; nil if absent.
func (k *Kavach) agentFromResults(agent, perms storage.Result) (*Agent, error) {
	if len(agent.Rows) == 0 {
		return nil, nil
	}
	row := scanAgent(agent.Rows[0])
	ps := make([]Permission, 0, len(perms.Rows))
	for _, r := range perms.Rows {
		p, err := scanPermission(r)
		if err != nil {
			return nil, &Error{Code: CodeSchema, Message: "kavach: agent " + row.id + ": " + err.Error()}
		}
		ps = append(ps, p)
	}
	return row.toAgent(ps, k.now().Unix())
}

// Get returns the agent with id, or an error matching ErrNotFound.
func (s *Agents) Get(ctx context.Context, id string) (*Agent, error) {
	if err := checkID("id", id); err != nil {
		return nil, errorf(CodeNotFound, "agent %q not found", id)
	}
	res, err := s.k.db.Exec(ctx, selectAgentByID(id)...)
	if err != nil {
		return nil, storageError("reading agent", err)
	}
	a, err := s.k.agentFromResults(res[0], res[1])
	if err != nil {
		return nil, err
	}
	if a == nil {
		return nil, errorf(CodeNotFound, "agent %q not found", id)
	}
	return a, nil
}

// List returns one page of agents matching f, with their permissions, in one round trip.
func (s *Agents) List(ctx context.Context, f ListFilter) ([]*Agent, error) {
	now := s.k.now().Unix()
	var where []string
	var args []any
	if f.OwnerID != "" {
		if err := checkID("ownerId", f.OwnerID); err != nil {
			return nil, err
		}
		where, args = append(where, "owner_id = ?"), append(args, f.OwnerID)
	}
	if f.TenantID != "" {
		if err := checkID("tenantId", f.TenantID); err != nil {
			return nil, err
		}
		where, args = append(where, "tenant_id = ?"), append(args, f.TenantID)
	}
	if f.Type != "" {
		if !validType(f.Type) {
			return nil, validationError("type", "must be autonomous, delegated or service, not %q", f.Type)
		}
		where, args = append(where, "type = ?"), append(args, string(f.Type))
	}
	switch f.Status {
	case "":
	case Active:
		where, args = append(where, "status = 'active' AND (expires_at IS NULL OR expires_at > ?)"), append(args, now)
	case Expired:
		where, args = append(where, "(status = 'expired' OR (status = 'active' AND expires_at <= ?))"), append(args, now)
	case Revoked:
		where = append(where, "status = 'revoked'")
	default:
		return nil, validationError("status", "must be active, revoked or expired, not %q", f.Status)
	}
	limit, offset, err := page(f.Limit, f.Offset)
	if err != nil {
		return nil, err
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	pageSQL := "SELECT " + agentColumns + " FROM kavach_agents" + cond + " ORDER BY id LIMIT ? OFFSET ?"
	pageArgs := append(append([]any{}, args...), int64(limit), int64(offset))
	// The permissions of exactly that page, joined through the same query as a derived table.
	permSQL := "SELECT p.agent_id, p.resource, p.actions, p.constraints FROM kavach_permissions p JOIN (SELECT id FROM kavach_agents" +
		cond + " ORDER BY id LIMIT ? OFFSET ?) a ON p.agent_id = a.id ORDER BY p.agent_id, p.id"
	res, err := s.k.db.Exec(ctx, storage.Stmt{SQL: pageSQL, Args: pageArgs}, storage.Stmt{SQL: permSQL, Args: pageArgs})
	if err != nil {
		return nil, storageError("listing agents", err)
	}
	perms := map[string][]Permission{}
	for _, r := range res[1].Rows {
		p, err := scanPermission(r)
		if err != nil {
			return nil, &Error{Code: CodeSchema, Message: "kavach: " + err.Error()}
		}
		id := asString(r[0])
		perms[id] = append(perms[id], p)
	}
	out := make([]*Agent, 0, len(res[0].Rows))
	for _, r := range res[0].Rows {
		row := scanAgent(r)
		a, err := row.toAgent(perms[row.id], now)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

func page(limit, offset int) (int, int, error) {
	if limit < 0 {
		return 0, 0, validationError("limit", "must be positive")
	}
	if offset < 0 {
		return 0, 0, validationError("offset", "must not be negative")
	}
	if limit == 0 {
		limit = 100
	}
	if limit > maxListLimit {
		return 0, 0, validationError("limit", "must be at most %d", maxListLimit)
	}
	return limit, offset, nil
}

// Update changes an agent and returns it as stored. Changing the permissions replaces all of
// them atomically.
func (s *Agents) Update(ctx context.Context, id string, u AgentUpdate) (*Agent, error) {
	k := s.k
	if err := checkID("id", id); err != nil {
		return nil, errorf(CodeNotFound, "agent %q not found", id)
	}
	now := k.now()
	ts := now.Unix()
	sets := []string{"updated_at = ?", "version = version + 1"}
	args := []any{ts}
	// outcome holds the conditions that the agent meets once the update is applied, for telling,
	// after a lost answer, whether it was.
	outcome, outArgs := []string{"a.id = ?"}, []any{id}
	set := func(col string, v any) {
		sets, args = append(sets, col+" = ?"), append(args, v)
		outcome, outArgs = append(outcome, "a."+col+" = ?"), append(outArgs, v)
	}
	if u.Name != nil {
		if err := checkName("name", *u.Name); err != nil {
			return nil, err
		}
		set("name", *u.Name)
	}
	switch {
	case u.ClearExpiry:
		sets, outcome = append(sets, "expires_at = NULL"), append(outcome, "a.expires_at IS NULL")
	case u.ExpiresAt != nil:
		if !u.ExpiresAt.After(now) {
			return nil, validationError("expiresAt", "must be in the future")
		}
		set("expires_at", u.ExpiresAt.Unix())
	}
	if u.Metadata != nil {
		meta, err := encodeMetadata("metadata", *u.Metadata)
		if err != nil {
			return nil, err
		}
		set("metadata", meta)
	}
	var permStmts []storage.Stmt
	if u.Permissions != nil {
		if _, err := checkPermissions(*u.Permissions); err != nil {
			return nil, err
		}
		enc, err := encodePermissions(*u.Permissions)
		if err != nil {
			return nil, err
		}
		permStmts = append(permStmts, storage.Stmt{SQL: "DELETE FROM kavach_permissions WHERE agent_id = ?", Args: []any{id}})
		for i, p := range enc {
			pid, err := k.ids.uuid(now)
			if err != nil {
				return nil, err
			}
			permStmts = append(permStmts, insertPermission(pid, id, p, ts))
			if i == 0 { // a row only this update writes
				outcome, outArgs = append(outcome, "EXISTS (SELECT 1 FROM kavach_permissions WHERE id = ?)"), append(outArgs, pid)
			}
		}
		if len(enc) == 0 {
			outcome, outArgs = append(outcome, "NOT EXISTS (SELECT 1 FROM kavach_permissions WHERE agent_id = ?)"), append(outArgs, id)
		}
	}
	batch := []storage.Stmt{{SQL: "UPDATE kavach_agents SET " + strings.Join(sets, ", ") + " WHERE id = ?", Args: append(args, id)}}
	batch = append(batch, permStmts...)
	batch = append(batch, selectAgentByID(id)...)
	res, err := k.db.Exec(ctx, batch...)
	k.cache.invalidate(id) // also after a failure, which may have followed the change
	if err != nil {
		// The answer may have been lost after the update was applied. If the agent is now as
		// the update makes it (with its new permissions, when they changed), the caller gets it:
		// the outcome it asked for is in place, whichever write put it there.
		check := storage.Stmt{SQL: "SELECT 1 FROM kavach_agents a WHERE " + strings.Join(outcome, " AND "), Args: outArgs}
		if stored, ok := k.landedAgent(ctx, err, "updating agent "+id, id, check); ok {
			if a, aerr := k.agentFromResults(stored[0], stored[1]); aerr == nil && a != nil {
				return a, nil
			}
		}
		return nil, storageError("updating agent", err)
	}
	if res[0].RowsAffected == 0 {
		return nil, errorf(CodeNotFound, "agent %q not found", id)
	}
	a, err := k.agentFromResults(res[len(res)-2], res[len(res)-1])
	if err != nil {
		return nil, err
	}
	if a == nil {
		return nil, errorf(CodeNotFound, "agent %q not found", id)
	}
	return a, nil
}

// Revoke permanently revokes an agent. Revoking a revoked agent succeeds and changes nothing.
// Every node sharing the database stops allowing the agent: cached decisions are only returned
// after their audit row was written conditionally on the agent's version.
func (s *Agents) Revoke(ctx context.Context, id string) error {
	k := s.k
	if err := checkID("id", id); err != nil {
		return errorf(CodeNotFound, "agent %q not found", id)
	}
	res, err := k.db.Exec(ctx,
		storage.Stmt{SQL: "UPDATE kavach_agents SET status = 'revoked', updated_at = ?, version = version + 1 WHERE id = ? AND status <> 'revoked'", Args: []any{k.now().Unix(), id}},
		storage.Stmt{SQL: "SELECT COUNT(*) FROM kavach_agents WHERE id = ?", Args: []any{id}},
	)
	k.cache.invalidate(id) // also after a failure, which may have followed the change
	if err != nil {
		// Revoked is the outcome asked for, whether this write or an earlier one made it so.
		if _, ok := k.landed(ctx, err, "revoking agent "+id, storage.Stmt{SQL: "SELECT 1 FROM kavach_agents WHERE id = ? AND status = 'revoked'", Args: []any{id}}); ok {
			return nil
		}
		return storageError("revoking agent", err)
	}
	if asInt(res[1].Rows[0][0]) == 0 {
		return errorf(CodeNotFound, "agent %q not found", id)
	}
	return nil
}

// Rotate gives an active agent a new token and returns the agent with it. The old token stops
// working at once. The expiry is unchanged.
func (s *Agents) Rotate(ctx context.Context, id string) (*Agent, error) {
	k := s.k
	if err := checkID("id", id); err != nil {
		return nil, errorf(CodeNotFound, "agent %q not found", id)
	}
	token, err := k.ids.secret(agentTokenPrefix)
	if err != nil {
		return nil, err
	}
	ts := k.now().Unix()
	batch := []storage.Stmt{{
		SQL:  "UPDATE kavach_agents SET token_hash = ?, token_prefix = ?, updated_at = ?, version = version + 1 WHERE id = ? AND status = 'active' AND (expires_at IS NULL OR expires_at > ?)",
		Args: []any{hashSecret(token), token[:tokenPrefixLen], ts, id, ts},
	}}
	res, err := k.db.Exec(ctx, append(batch, selectAgentByID(id)...)...)
	k.cache.invalidate(id) // also after a failure, which may have followed the change
	if err != nil {
		// A lost answer: if the agent holds the new token's hash, the rotation was applied, and
		// the old token no longer works; the new one must reach the caller.
		check := storage.Stmt{SQL: "SELECT 1 FROM kavach_agents WHERE id = ? AND token_hash = ?", Args: []any{id, hashSecret(token)}}
		stored, ok := k.landedAgent(ctx, err, "rotating the token of agent "+id, id, check)
		if !ok {
			return nil, storageError("rotating agent token", err)
		}
		res = append([]storage.Result{{RowsAffected: 1}}, stored...) // the update's result, as if answered
	}
	a, err := k.agentFromResults(res[1], res[2])
	if err != nil {
		return nil, err
	}
	if a == nil {
		return nil, errorf(CodeNotFound, "agent %q not found", id)
	}
	if res[0].RowsAffected == 0 {
		return nil, errorf(CodeConflict, "cannot rotate the token of agent %q: it is %s", id, a.Status)
	}
	a.Token = token
	return a, nil
}

// ByToken returns the agent a token belongs to, whatever its status, or an error matching
// ErrUnauthorized if the token is unknown.
func (s *Agents) ByToken(ctx context.Context, token string) (*Agent, error) {
	if !IsAgentToken(token) {
		return nil, errorf(CodeUnauthorized, "invalid agent token")
	}
	h := hashSecret(token)
	res, err := s.k.db.Exec(ctx,
		storage.Stmt{SQL: "SELECT " + agentColumns + " FROM kavach_agents WHERE token_hash = ?", Args: []any{h}},
		storage.Stmt{SQL: "SELECT p.agent_id, p.resource, p.actions, p.constraints FROM kavach_permissions p JOIN kavach_agents a ON p.agent_id = a.id WHERE a.token_hash = ? ORDER BY p.id", Args: []any{h}},
	)
	if err != nil {
		return nil, storageError("reading agent", err)
	}
	a, err := s.k.agentFromResults(res[0], res[1])
	if err != nil {
		return nil, err
	}
	if a == nil || !sameHash(scanAgent(res[0].Rows[0]).tokenHash, h) {
		return nil, errorf(CodeUnauthorized, "invalid agent token")
	}
	return a, nil
}

func asString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func asInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case float64:
		return int64(x)
	case string:
		var n int64
		fmt.Sscan(x, &n)
		return n
	}
	return 0
}
