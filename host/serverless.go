package host

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"sync"

	"github.com/kavachdev/kavach"
	"github.com/kavachdev/kavach/api"
)

// ServerlessConfig configures a Serverless handler.
type ServerlessConfig struct {
	Kavach kavach.Config
	API    api.Options
}

// Serverless returns an http.Handler for platforms that run a Go function per request (and may
// freeze the process between requests), with storage on libSQL/Turso over HTTP, Postgres or
// MySQL.
//
// It does nothing when created. The first request opens the database and verifies the schema,
// which is one round trip (no DDL runs: create the schema beforehand with `kavach migrate`); if
// that fails, the request gets a 503 and the next one tries again. It starts no goroutines of
// its own and leaves no work behind a response: the audit row of a decision is committed before
// the decision is returned, so nothing is lost when the platform freezes or stops the process.
func Serverless(cfg ServerlessConfig) http.Handler {
	cfg.Kavach.Database.SkipMigrations = true
	return &serverless{cfg: cfg}
}

// ServerlessFromEnv is Serverless configured from the environment, as the kavach CLI reads it:
// KAVACH_DATABASE_PROVIDER (default libsql), KAVACH_DATABASE_URL, KAVACH_DATABASE_AUTH_TOKEN,
// KAVACH_AGENTS_MAX_PER_USER, KAVACH_AGENTS_TOKEN_EXPIRY, KAVACH_ENVELOPE, KAVACH_BASE_PATH.
// The program must link the storage provider it names (import _ ".../storage/libsql").
func ServerlessFromEnv() http.Handler {
	var cfg ServerlessConfig
	cfg.Kavach.Database.Provider = os.Getenv("KAVACH_DATABASE_PROVIDER")
	if cfg.Kavach.Database.Provider == "" {
		cfg.Kavach.Database.Provider = "libsql"
	}
	cfg.Kavach.Database.URL = os.Getenv("KAVACH_DATABASE_URL")
	cfg.Kavach.Database.AuthToken = os.Getenv("KAVACH_DATABASE_AUTH_TOKEN")
	cfg.Kavach.Agents.MaxPerUser, _ = strconv.Atoi(os.Getenv("KAVACH_AGENTS_MAX_PER_USER"))
	cfg.Kavach.Agents.TokenExpiry = os.Getenv("KAVACH_AGENTS_TOKEN_EXPIRY")
	cfg.API.Envelope = os.Getenv("KAVACH_ENVELOPE")
	cfg.API.BasePath = os.Getenv("KAVACH_BASE_PATH")
	return Serverless(cfg)
}

type serverless struct {
	cfg ServerlessConfig

	mu sync.Mutex
	h  http.Handler
}

func (s *serverless) handler(ctx context.Context) (http.Handler, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h != nil {
		return s.h, nil
	}
	k, err := kavach.New(ctx, s.cfg.Kavach)
	if err != nil {
		return nil, err
	}
	s.h = HTTPHandler(api.New(k, s.cfg.API))
	return s.h, nil
}

func (s *serverless) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, err := s.handler(r.Context())
	if err != nil {
		writeHTTP(w, api.Fail(http.StatusServiceUnavailable, "kavach is not available: "+err.Error()))
		return
	}
	h.ServeHTTP(w, r)
}
