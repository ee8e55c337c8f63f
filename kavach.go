// Package kavach is authentication and authorization for AI agents: agent identities with bearer
// tokens, resource+action permissions with constraints, and an audit trail of every decision.
//
// The package is the host-agnostic core. It imports only the standard library and the project's
// own policy and storage packages, reads time and randomness only from what it is given, and
// waits on nothing but its database, so the same code runs in a Go server, in a Go program that
// uses it as a library, on serverless functions, and compiled to WebAssembly.
//
//	import (
//		"github.com/kavachdev/kavach"
//		_ "github.com/kavachdev/kavach/storage/libsql" // the embedded SQLite provider
//	)
//
//	k, err := kavach.New(ctx, kavach.Config{Database: kavach.Database{Provider: "sqlite", URL: "./kavach.db"}})
//	agent, err := k.Agents.Create(ctx, kavach.NewAgent{OwnerID: "user_1", Name: "github-reader",
//		Type: kavach.Autonomous, Permissions: []kavach.Permission{{Resource: "mcp:github:*", Actions: []string{"read"}}}})
//	d, err := k.Authorize(ctx, agent.ID, kavach.Request{Action: "read", Resource: "mcp:github:repos"})
package kavach

import (
	"context"
	"crypto/rand"
	_ "embed"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kavachdev/kavach/policy"
	"github.com/kavachdev/kavach/storage"
)

// SchemaSQL is schema.sql, the source of truth for every backend's tables.
//
//go:embed schema.sql
var SchemaSQL string

var (
	schemaOnce sync.Once
	schema     *storage.Schema
	schemaErr  error
)

// Schema returns the parsed schema.sql.
func Schema() (*storage.Schema, error) {
	schemaOnce.Do(func() {
		schema, schemaErr = storage.ParseSchema(SchemaSQL)
		if schemaErr == nil {
			schema.Views = append(schema.Views, auditBatches)
		}
	})
	return schema, schemaErr
}

// Migrations lists the upgrades for databases created by earlier versions. Version 1 is the
// first schema; a database created fresh gets schema.sql directly. A migration's statements are
// written out in full, never rendered from schema.sql, which describes only the latest version.
var Migrations = []storage.Migration{
	{Version: 1, Name: "initial schema", Stmts: func(storage.Dialect) []string { return nil }},
	{Version: 2, Name: "audit chains on SQLite; audit rows outlive agents and users", Stmts: migrateAuditChains},
	{Version: 3, Name: "a view that writes a batch of audit rows on SQLite", Stmts: migrateAuditBatches},
}

// migrateAuditBatches creates kavach_audit_batches and its trigger (auditBatches) as they were
// at version 3. TestMigrationsMatchAuditBatches fails when auditBatches changes without a
// migration that drops the trigger and creates the new one.
func migrateAuditBatches(d storage.Dialect) []string {
	if d != storage.SQLite {
		return nil
	}
	return []string{
		"CREATE VIEW IF NOT EXISTS kavach_audit_batches AS SELECT NULL AS rows WHERE 0",
		"CREATE TRIGGER IF NOT EXISTS kavach_audit_batches_insert INSTEAD OF INSERT ON kavach_audit_batches BEGIN " +
			"INSERT OR IGNORE INTO kavach_audit_logs (id, agent_id, user_id, tenant_id, action, resource, parameters, " +
			"result, reason, duration_ms, ip, user_agent, timestamp, prev_id, prev_ts) SELECT r.id, r.agent_id, r.user_id, " +
			"r.tenant_id, r.action, r.resource, r.parameters, r.result, r.reason, r.duration_ms, r.ip, r.user_agent, r.ts, " +
			"COALESCE(LAG(r.id) OVER w, h.last_id), CASE WHEN LAG(r.id) OVER w IS NULL THEN h.last_ts ELSE " +
			"MAX(COALESCE(h.last_ts, 0), MAX(r.ts) OVER (PARTITION BY r.agent_id ORDER BY r.pos ROWS BETWEEN UNBOUNDED " +
			"PRECEDING AND 1 PRECEDING)) END FROM (SELECT j.key AS pos, j.value ->> 'id' AS id, j.value ->> 'agent_id' AS " +
			"agent_id, j.value ->> 'user_id' AS user_id, j.value ->> 'tenant_id' AS tenant_id, j.value ->> 'action' AS " +
			"action, j.value ->> 'resource' AS resource, j.value ->> 'parameters' AS parameters, j.value ->> 'result' AS " +
			"result, j.value ->> 'reason' AS reason, j.value ->> 'duration_ms' AS duration_ms, j.value ->> 'ip' AS ip, " +
			"j.value ->> 'user_agent' AS user_agent, j.value ->> 'ts' AS ts, j.value ->> 'version' AS version FROM " +
			"json_each(NEW.rows) AS j) AS r JOIN kavach_agents AS a ON a.id = r.agent_id AND (r.version = 0 OR a.version = " +
			"r.version) LEFT JOIN kavach_audit_heads AS h ON h.agent_id = r.agent_id WINDOW w AS (PARTITION BY r.agent_id " +
			"ORDER BY r.pos) ORDER BY r.pos; SELECT RAISE(ABORT, 'kavach: audit batch refused: an agent changed since its " +
			"decision') WHERE changes() < json_array_length(NEW.rows); INSERT INTO kavach_audit_heads (agent_id, last_id, " +
			"last_ts) SELECT agent_id, id, chain_ts FROM (SELECT l.agent_id, l.id, MAX(l.timestamp, COALESCE(l.prev_ts, " +
			"0)) AS chain_ts, ROW_NUMBER() OVER (PARTITION BY l.agent_id ORDER BY j.key DESC) AS n FROM " +
			"json_each(NEW.rows) AS j CROSS JOIN kavach_audit_logs AS l ON l.id = j.value ->> 'id') WHERE n = 1 AND " +
			"changes() > 0 ON CONFLICT (agent_id) DO UPDATE SET last_id = excluded.last_id, last_ts = " +
			"MAX(excluded.last_ts, kavach_audit_heads.last_ts); END",
	}
}

// migrateAuditChains is migration 2. On the SQLite family it links the existing audit rows of
// each agent into its chain, oldest first, and records each chain's head; the agent index goes.
// (The old foreign keys of kavach_audit_logs stay there: SQLite cannot drop a constraint without
// copying the table, and they hold for every row Kavach writes.) Postgres and MySQL gain the
// columns, the heads table and the index by user, and lose the foreign keys.
func migrateAuditChains(d storage.Dialect) []string {
	switch d {
	case storage.Postgres:
		return []string{
			"ALTER TABLE kavach_audit_logs ADD COLUMN IF NOT EXISTS prev_id TEXT",
			"ALTER TABLE kavach_audit_logs ADD COLUMN IF NOT EXISTS prev_ts BIGINT",
			"ALTER TABLE kavach_audit_logs DROP CONSTRAINT IF EXISTS kavach_audit_logs_agent_id_fkey",
			"ALTER TABLE kavach_audit_logs DROP CONSTRAINT IF EXISTS kavach_audit_logs_user_id_fkey",
			"CREATE INDEX IF NOT EXISTS kavach_audit_logs_user_time_idx ON kavach_audit_logs (user_id, timestamp, id)",
			"CREATE TABLE IF NOT EXISTS kavach_audit_heads (agent_id TEXT NOT NULL PRIMARY KEY, last_id TEXT NOT NULL, last_ts BIGINT NOT NULL)",
		}
	case storage.MySQL:
		// One ALTER TABLE, so that MySQL, which commits each DDL statement on its own, applies
		// all of it or none. The foreign keys and the index InnoDB made for the one on user_id
		// have the names MySQL and MariaDB give them.
		return []string{
			"CREATE TABLE IF NOT EXISTS kavach_audit_heads (agent_id VARCHAR(255) NOT NULL PRIMARY KEY, last_id LONGTEXT NOT NULL, last_ts BIGINT NOT NULL) " +
				"ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
			"ALTER TABLE kavach_audit_logs ADD COLUMN prev_id LONGTEXT, ADD COLUMN prev_ts BIGINT, " +
				"DROP FOREIGN KEY kavach_audit_logs_ibfk_1, DROP FOREIGN KEY kavach_audit_logs_ibfk_2, DROP INDEX user_id, " +
				"ADD INDEX kavach_audit_logs_user_time_idx (user_id, timestamp, id)",
		}
	}
	return []string{
		"ALTER TABLE kavach_audit_logs ADD COLUMN prev_id TEXT",
		"ALTER TABLE kavach_audit_logs ADD COLUMN prev_ts INTEGER",
		"CREATE TABLE IF NOT EXISTS kavach_audit_heads (agent_id TEXT NOT NULL PRIMARY KEY, last_id TEXT NOT NULL, last_ts INTEGER NOT NULL) WITHOUT ROWID",
		"UPDATE kavach_audit_logs SET prev_id = l.prev_id, prev_ts = l.prev_ts FROM (SELECT id, " +
			"LAG(id) OVER w AS prev_id, LAG(timestamp) OVER w AS prev_ts FROM kavach_audit_logs " +
			"WINDOW w AS (PARTITION BY agent_id ORDER BY timestamp, id)) AS l WHERE l.id = kavach_audit_logs.id AND l.prev_id IS NOT NULL",
		"INSERT INTO kavach_audit_heads (agent_id, last_id, last_ts) SELECT agent_id, id, timestamp FROM (SELECT agent_id, id, timestamp, " +
			"ROW_NUMBER() OVER (PARTITION BY agent_id ORDER BY timestamp DESC, id DESC) AS n FROM kavach_audit_logs) AS l WHERE n = 1",
		"DROP INDEX IF EXISTS kavach_audit_logs_agent_time_idx",
	}
}

// Config configures a Kavach instance. The zero value of every field is a sane default.
type Config struct {
	Database Database
	Agents   AgentsConfig

	// Clock returns the current time. Decisions read time only through it. Default time.Now.
	Clock func() time.Time
	// Entropy is the source of ids and secrets. Default crypto/rand.
	Entropy io.Reader
	// Logger receives the errors Kavach handles itself (a denial because the database failed,
	// for example). *slog.Logger satisfies it. Default: nothing is logged.
	Logger Logger

	// DB, when set, is used instead of opening Database. Kavach does not close it.
	DB storage.DB
	// Audit, when set, replaces the group-commit writer that records audit rows.
	Audit AuditSink
	// NoCache turns off the in-process cache of agents and their compiled permissions. Hosts that
	// build a Kavach per request (WebAssembly, serverless) have nothing to cache.
	NoCache bool
	// NoSchemaCheck skips migrations and verification at New: for hosts that build a Kavach per
	// request against a database already checked at start-up.
	NoSchemaCheck bool
}

// Database selects the storage, mirroring the reference's database block.
type Database struct {
	Provider string // sqlite (default), libsql, postgres, mysql
	URL      string // default ./kavach.db for sqlite
	// AuthToken authenticates to libSQL/Turso when the URL does not carry one.
	AuthToken string
	// SkipMigrations runs no DDL: start-up verifies instead that every expected table and column
	// exists, and fails with one error naming what is missing.
	SkipMigrations bool
	// MaxOpenConns bounds the pool of server backends; 0 picks a default.
	MaxOpenConns int
}

// AgentsConfig mirrors the reference's agents block.
type AgentsConfig struct {
	// MaxPerUser is the most active agents one owner may have. 0 means 10; negative means no limit.
	MaxPerUser int
	// TokenExpiry is the default lifetime of a new agent ("24h", "30d", "90m", "3600s"), or
	// "never". Empty means 24h, as in the reference.
	TokenExpiry string
	// RequireExistingOwners refuses agents whose owner is not already a row in kavach_users. By
	// default an unknown owner id gets a minimal user row, so an agent can be created for any
	// owner id, as the reference's examples do.
	RequireExistingOwners bool
}

// Logger is where Kavach reports errors it handled itself. *slog.Logger satisfies it. (The core
// does not import log/slog, which would add about 130 KB to the WebAssembly module.)
type Logger interface {
	Error(msg string, args ...any)
	Warn(msg string, args ...any)
}

type nopLogger struct{}

func (nopLogger) Error(string, ...any) {}
func (nopLogger) Warn(string, ...any)  {}

// Kavach is one configured instance. It is safe for concurrent use.
type Kavach struct {
	Agents  *Agents
	Audit   *Audit
	APIKeys *APIKeys

	db      storage.DB
	ownsDB  bool
	dialect storage.Dialect
	clock   func() time.Time
	ids     *idGen
	log     Logger
	sink    AuditSink
	group   *groupCommit // the native sink, when it is the one in use
	closer  io.Closer
	cache   *agentCache

	maxPerUser    int
	tokenTTL      time.Duration // 0: agents do not expire by default
	provisionUser bool
}

// New opens the configured database, brings its schema up to date (or verifies it when
// SkipMigrations is set) and returns a ready instance.
func New(ctx context.Context, cfg Config) (*Kavach, error) {
	k := &Kavach{
		clock:         cfg.Clock,
		log:           cfg.Logger,
		maxPerUser:    cfg.Agents.MaxPerUser,
		provisionUser: !cfg.Agents.RequireExistingOwners,
	}
	if k.clock == nil {
		k.clock = time.Now
	}
	if k.log == nil {
		k.log = nopLogger{}
	}
	entropy := cfg.Entropy
	if entropy == nil {
		entropy = rand.Reader
	}
	k.ids = newIDGen(entropy)
	if k.maxPerUser == 0 {
		k.maxPerUser = 10
	}
	ttl, err := parseExpiry(cfg.Agents.TokenExpiry)
	if err != nil {
		return nil, err
	}
	k.tokenTTL = ttl

	if cfg.DB != nil {
		k.db = cfg.DB
	} else {
		db := cfg.Database
		if db.Provider == "" {
			db.Provider = "sqlite"
		}
		if db.URL == "" && db.Provider == "sqlite" {
			db.URL = "./kavach.db"
		}
		k.db, err = storage.Open(ctx, storage.Config{Provider: db.Provider, URL: db.URL, AuthToken: db.AuthToken, MaxOpenConns: db.MaxOpenConns,
			Lazy: !cfg.NoSchemaCheck}) // the schema check is the first query: it also proves the server answers
		if err != nil {
			return nil, err
		}
		k.ownsDB = true
	}
	k.dialect = k.db.Dialect()

	if !cfg.NoSchemaCheck {
		if err := k.checkSchema(ctx, cfg.Database.SkipMigrations); err != nil {
			k.Close()
			return nil, err
		}
	}
	if cfg.Audit != nil {
		k.sink = cfg.Audit
	} else if err := k.startGroupCommit(); err != nil {
		k.Close()
		return nil, err
	}
	if !cfg.NoCache {
		k.cache = newAgentCache(100_000)
	}
	k.Agents = &Agents{k: k}
	k.Audit = &Audit{k: k}
	k.APIKeys = &APIKeys{k: k}
	return k, nil
}

func (k *Kavach) checkSchema(ctx context.Context, skipMigrations bool) error {
	s, err := Schema()
	if err != nil {
		return err
	}
	if skipMigrations {
		return storage.Verify(ctx, k.db, s)
	}
	return storage.Migrate(ctx, k.db, s, Migrations, k.clock().Unix())
}

// Migrate brings the database's schema up to date. New does this unless SkipMigrations is set;
// the `kavach migrate` command calls it explicitly.
func (k *Kavach) Migrate(ctx context.Context) error { return k.checkSchema(ctx, false) }

// DB returns the storage the instance runs on.
func (k *Kavach) DB() storage.DB { return k.db }

// Ping runs a real query against the database (some drivers' own ping contacts nothing).
func (k *Kavach) Ping(ctx context.Context) error {
	if _, err := k.db.Exec(ctx, storage.Stmt{SQL: "SELECT 1"}); err != nil {
		return storageError("health check", err)
	}
	return nil
}

// Close flushes pending audit rows and closes the database if New opened it.
func (k *Kavach) Close() error {
	if k.closer != nil {
		k.closer.Close()
	}
	if k.ownsDB && k.db != nil {
		return k.db.Close()
	}
	return nil
}

func (k *Kavach) now() time.Time { return k.clock() }

// Now is the instance's clock reading.
func (k *Kavach) Now() time.Time { return k.clock() }

// parseExpiry reads a duration like the reference's tokenExpiry: digits and one of s, m, h, d.
func parseExpiry(s string) (time.Duration, error) {
	switch s {
	case "":
		return 24 * time.Hour, nil
	case "never", "0":
		return 0, nil
	}
	if len(s) >= 2 {
		n, err := strconv.ParseInt(s[:len(s)-1], 10, 64)
		unit := map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour}[s[len(s)-1]]
		if err == nil && n > 0 && unit > 0 && n < int64(100*365*24*time.Hour/unit) {
			return time.Duration(n) * unit, nil
		}
	}
	return 0, errorf(CodeValidation, "kavach: agents.tokenExpiry %q is not a duration like \"24h\", \"30d\", \"90m\" or \"never\"", s)
}

// Re-exported policy types: the permission vocabulary of the public API.
type (
	Permission  = policy.Permission
	Constraints = policy.Constraints
	TimeWindow  = policy.TimeWindow
	// DecisionCode is the stable reason code of an authorization decision.
	DecisionCode = policy.Code
)

// ValidationError reports an invalid field of a request.
func validationError(field, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if field != "" {
		msg = field + ": " + msg
	}
	return &Error{Code: CodeValidation, Message: msg}
}

// checkText validates a free-text identifier or name.
func checkText(field, s string, maxLen int, required bool) error {
	if s == "" {
		if required {
			return validationError(field, "is required")
		}
		return nil
	}
	if strings.TrimSpace(s) == "" {
		return validationError(field, "must not be blank")
	}
	if len(s) > maxLen {
		return validationError(field, "is %d bytes long; the limit is %d", len(s), maxLen)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '\uFFFD' {
			return validationError(field, "contains a control character or invalid UTF-8")
		}
	}
	return nil
}
