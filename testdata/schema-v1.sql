-- Kavach schema: the single source of truth for every backend.
--
-- Written in a neutral subset of SQL that SQLite runs as is. The DDL for Postgres and MySQL is
-- derived from it mechanically (storage/schema.go), and a test checks every backend's migrated
-- schema against it. Conventions:
--   * snake_case names; text ids (UUIDs, time-ordered v7 for rows Kavach creates);
--   * timestamps are Unix seconds in INTEGER columns, in every dialect;
--   * booleans are INTEGER 0/1; JSON documents are TEXT holding JSON;
--   * the 16 kavach_* tables of the reference keep the reference's columns, so a database can be
--     shared with a KavachOS deployment; columns Kavach adds are marked "kavach:".
--
-- Changing this file means adding a migration (storage/migrate.go): deployed databases are
-- upgraded by versioned migrations, never by re-running CREATE ... IF NOT EXISTS alone.

CREATE TABLE IF NOT EXISTS kavach_schema_version (
  version INTEGER NOT NULL PRIMARY KEY,
  applied_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS kavach_users (
  id TEXT NOT NULL PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  username TEXT UNIQUE,
  name TEXT,
  external_id TEXT,
  external_provider TEXT,
  metadata TEXT,
  banned INTEGER NOT NULL DEFAULT 0,
  ban_reason TEXT,
  ban_expires_at INTEGER,
  force_password_reset INTEGER NOT NULL DEFAULT 0,
  email_verified INTEGER NOT NULL DEFAULT 0,
  stripe_customer_id TEXT UNIQUE,
  stripe_subscription_id TEXT,
  stripe_subscription_status TEXT,
  stripe_price_id TEXT,
  stripe_current_period_end INTEGER,
  stripe_cancel_at_period_end INTEGER NOT NULL DEFAULT 0,
  polar_customer_id TEXT UNIQUE,
  polar_subscription_id TEXT,
  polar_subscription_status TEXT,
  polar_product_id TEXT,
  polar_current_period_end INTEGER,
  polar_cancel_at_period_end INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS kavach_tenants (
  id TEXT NOT NULL PRIMARY KEY,
  name TEXT NOT NULL,
  slug TEXT NOT NULL UNIQUE,
  settings TEXT,
  status TEXT NOT NULL DEFAULT 'active',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS kavach_agents (
  id TEXT NOT NULL PRIMARY KEY,
  owner_id TEXT NOT NULL REFERENCES kavach_users (id),
  tenant_id TEXT REFERENCES kavach_tenants (id),
  name TEXT NOT NULL,
  type TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'active',
  token_hash TEXT NOT NULL,
  token_prefix TEXT NOT NULL,
  expires_at INTEGER,
  last_active_at INTEGER,
  metadata TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  -- kavach: bumped by every change to the agent or its permissions. Cached decisions are only
  -- audited (and so only returned) while the version they were made from is still current.
  version INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX IF NOT EXISTS kavach_agents_token_hash_idx ON kavach_agents (token_hash);
CREATE INDEX IF NOT EXISTS kavach_agents_owner_status_idx ON kavach_agents (owner_id, status);
CREATE INDEX IF NOT EXISTS kavach_agents_tenant_idx ON kavach_agents (tenant_id);

CREATE TABLE IF NOT EXISTS kavach_permissions (
  id TEXT NOT NULL PRIMARY KEY,
  agent_id TEXT NOT NULL REFERENCES kavach_agents (id) ON DELETE CASCADE,
  resource TEXT NOT NULL,
  actions TEXT NOT NULL,
  constraints TEXT,
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS kavach_permissions_agent_idx ON kavach_permissions (agent_id, id);

CREATE TABLE IF NOT EXISTS kavach_delegation_chains (
  id TEXT NOT NULL PRIMARY KEY,
  from_agent_id TEXT NOT NULL REFERENCES kavach_agents (id),
  to_agent_id TEXT NOT NULL REFERENCES kavach_agents (id),
  permissions TEXT NOT NULL,
  depth INTEGER NOT NULL DEFAULT 1,
  max_depth INTEGER NOT NULL DEFAULT 3,
  status TEXT NOT NULL DEFAULT 'active',
  expires_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS kavach_delegation_chains_to_idx ON kavach_delegation_chains (to_agent_id, status);
CREATE INDEX IF NOT EXISTS kavach_delegation_chains_from_idx ON kavach_delegation_chains (from_agent_id, status);

-- Clustered on the time-ordered id: appends land on the last page, and id order within one
-- second is commit order within a node.
CREATE TABLE IF NOT EXISTS kavach_audit_logs (
  id TEXT NOT NULL PRIMARY KEY,
  agent_id TEXT NOT NULL REFERENCES kavach_agents (id),
  user_id TEXT NOT NULL REFERENCES kavach_users (id),
  action TEXT NOT NULL,
  resource TEXT NOT NULL,
  parameters TEXT,
  result TEXT NOT NULL,
  reason TEXT,
  duration_ms INTEGER NOT NULL,
  tokens_cost INTEGER,
  ip TEXT,
  user_agent TEXT,
  timestamp INTEGER NOT NULL,
  -- kavach: the agent's tenant at decision time.
  tenant_id TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kavach_audit_logs_agent_time_idx ON kavach_audit_logs (agent_id, timestamp, id);
CREATE INDEX IF NOT EXISTS kavach_audit_logs_time_idx ON kavach_audit_logs (timestamp, id);

CREATE TABLE IF NOT EXISTS kavach_rate_limits (
  id TEXT NOT NULL PRIMARY KEY,
  agent_id TEXT NOT NULL REFERENCES kavach_agents (id) ON DELETE CASCADE,
  resource TEXT NOT NULL,
  window_start INTEGER NOT NULL,
  count INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS kavach_rate_limits_key_idx ON kavach_rate_limits (agent_id, resource, window_start);

CREATE TABLE IF NOT EXISTS kavach_mcp_servers (
  id TEXT NOT NULL PRIMARY KEY,
  name TEXT NOT NULL,
  endpoint TEXT NOT NULL UNIQUE,
  tools TEXT NOT NULL,
  auth_required INTEGER NOT NULL DEFAULT 1,
  rate_limit_rpm INTEGER,
  status TEXT NOT NULL DEFAULT 'active',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS kavach_sessions (
  id TEXT NOT NULL PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES kavach_users (id),
  expires_at INTEGER NOT NULL,
  metadata TEXT,
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS kavach_sessions_user_idx ON kavach_sessions (user_id);

CREATE TABLE IF NOT EXISTS kavach_oauth_clients (
  id TEXT NOT NULL PRIMARY KEY,
  client_id TEXT NOT NULL UNIQUE,
  client_secret TEXT,
  client_name TEXT,
  client_uri TEXT,
  redirect_uris TEXT NOT NULL,
  grant_types TEXT NOT NULL,
  response_types TEXT NOT NULL,
  token_endpoint_auth_method TEXT NOT NULL DEFAULT 'client_secret_basic',
  type TEXT NOT NULL DEFAULT 'confidential',
  disabled INTEGER NOT NULL DEFAULT 0,
  metadata TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS kavach_oauth_access_tokens (
  id TEXT NOT NULL PRIMARY KEY,
  access_token TEXT NOT NULL UNIQUE,
  refresh_token TEXT UNIQUE,
  client_id TEXT NOT NULL REFERENCES kavach_oauth_clients (client_id),
  user_id TEXT NOT NULL REFERENCES kavach_users (id),
  scopes TEXT NOT NULL,
  resource TEXT,
  access_token_expires_at INTEGER NOT NULL,
  refresh_token_expires_at INTEGER,
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS kavach_oauth_access_tokens_user_idx ON kavach_oauth_access_tokens (user_id);
CREATE INDEX IF NOT EXISTS kavach_oauth_access_tokens_client_idx ON kavach_oauth_access_tokens (client_id);

CREATE TABLE IF NOT EXISTS kavach_oauth_authorization_codes (
  id TEXT NOT NULL PRIMARY KEY,
  code TEXT NOT NULL UNIQUE,
  client_id TEXT NOT NULL REFERENCES kavach_oauth_clients (client_id),
  user_id TEXT NOT NULL REFERENCES kavach_users (id),
  redirect_uri TEXT NOT NULL,
  scopes TEXT NOT NULL,
  code_challenge TEXT,
  code_challenge_method TEXT,
  resource TEXT,
  expires_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS kavach_budget_policies (
  id TEXT NOT NULL PRIMARY KEY,
  agent_id TEXT REFERENCES kavach_agents (id) ON DELETE CASCADE,
  user_id TEXT REFERENCES kavach_users (id),
  tenant_id TEXT REFERENCES kavach_tenants (id),
  limits TEXT NOT NULL,
  current_usage TEXT NOT NULL,
  action TEXT NOT NULL DEFAULT 'warn',
  status TEXT NOT NULL DEFAULT 'active',
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS kavach_budget_policies_agent_idx ON kavach_budget_policies (agent_id);

CREATE TABLE IF NOT EXISTS kavach_agent_cards (
  id TEXT NOT NULL PRIMARY KEY,
  agent_id TEXT NOT NULL REFERENCES kavach_agents (id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  description TEXT,
  version TEXT NOT NULL,
  protocols TEXT NOT NULL,
  capabilities TEXT NOT NULL,
  auth_requirements TEXT NOT NULL,
  endpoint TEXT,
  metadata TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS kavach_agent_cards_agent_idx ON kavach_agent_cards (agent_id);

CREATE TABLE IF NOT EXISTS kavach_approval_requests (
  id TEXT NOT NULL PRIMARY KEY,
  agent_id TEXT NOT NULL REFERENCES kavach_agents (id) ON DELETE CASCADE,
  user_id TEXT NOT NULL REFERENCES kavach_users (id),
  action TEXT NOT NULL,
  resource TEXT NOT NULL,
  arguments TEXT,
  status TEXT NOT NULL DEFAULT 'pending',
  expires_at INTEGER NOT NULL,
  responded_at INTEGER,
  responded_by TEXT,
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS kavach_approval_requests_status_user_idx ON kavach_approval_requests (status, user_id);

CREATE TABLE IF NOT EXISTS kavach_trust_scores (
  agent_id TEXT NOT NULL PRIMARY KEY REFERENCES kavach_agents (id) ON DELETE CASCADE,
  score INTEGER NOT NULL,
  level TEXT NOT NULL,
  factors TEXT NOT NULL,
  computed_at INTEGER NOT NULL
);

-- kavach: credentials for the management API. Only a SHA-256 hash and a display prefix are kept.
CREATE TABLE IF NOT EXISTS kavach_api_keys (
  id TEXT NOT NULL PRIMARY KEY,
  name TEXT NOT NULL,
  key_hash TEXT NOT NULL UNIQUE,
  key_prefix TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
);
