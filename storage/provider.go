package storage

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Config selects and configures a database, mirroring the reference's
// database: {provider, url, skipMigrations} block.
type Config struct {
	Provider  string // sqlite, libsql, postgres or mysql
	URL       string // a file path or :memory: for sqlite; a server URL for the others
	AuthToken string // libSQL/Turso auth token, when not in the URL
	// MaxOpenConns bounds the connection pool of server backends; 0 picks a default.
	MaxOpenConns int
	// Lazy leaves out the query Open runs to check that a database server answers: the first
	// batch makes the check instead, and until one batch succeeds, a failure that is not a
	// statement's own reads as a failure to open would (unreachable, login refused, no such
	// database). For callers that run a query right after opening anyway, such as kavach.New: a
	// serverless cold start then costs one round trip, not two.
	Lazy bool
}

// Opener opens a database for a registered provider.
type Opener func(ctx context.Context, cfg Config) (DB, error)

// Packages that provide each known provider. A provider registers itself when its package is
// linked into the program, like a database/sql driver.
var knownProviders = map[string]string{
	"sqlite":   "github.com/kavachdev/kavach/storage/libsql",
	"libsql":   "github.com/kavachdev/kavach/storage/libsql",
	"postgres": "github.com/kavachdev/kavach/storage/pg",
	"mysql":    "github.com/kavachdev/kavach/storage/mysql",
}

var (
	registryMu sync.RWMutex
	registry   = map[string]Opener{}
)

// Register makes a provider available by name. Backends call it from init. Registering a name
// twice panics, as database/sql does.
func Register(provider string, open Opener) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if open == nil {
		panic("storage: Register opener is nil")
	}
	if _, dup := registry[provider]; dup {
		panic("storage: Register called twice for provider " + provider)
	}
	registry[provider] = open
}

// Providers lists the providers linked into this program, sorted.
func Providers() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Open opens the database cfg names. An empty provider means sqlite. A provider whose package is
// not linked fails with one line naming the package to import; an unknown one lists the valid
// names. Secrets in the URL never appear in the error. For a database server, Open checks that it
// answers a query (see Config.Lazy and OpenChecker).
func Open(ctx context.Context, cfg Config) (DB, error) {
	if cfg.Provider == "" {
		cfg.Provider = "sqlite"
	}
	registryMu.RLock()
	open := registry[cfg.Provider]
	registryMu.RUnlock()
	if open == nil {
		if pkg, ok := knownProviders[cfg.Provider]; ok {
			return nil, fmt.Errorf("kavach: database provider %q is not linked into this program; add import _ %q", cfg.Provider, pkg)
		}
		valid := make([]string, 0, len(knownProviders))
		for n := range knownProviders {
			valid = append(valid, n)
		}
		slices.Sort(valid)
		return nil, fmt.Errorf("kavach: unknown database provider %q; valid providers are %s", cfg.Provider, strings.Join(valid, ", "))
	}
	if strings.TrimSpace(cfg.URL) == "" {
		return nil, fmt.Errorf("kavach: database url is empty for provider %q", cfg.Provider)
	}
	db, err := open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return check(ctx, db, cfg.Lazy)
}

// RedactURL returns u with any password and any token-like query parameter replaced by "xxxxx",
// for error messages and logs. A string that does not parse as a URL with a scheme is shown as
// its scheme alone (or as a plain path if it has neither scheme nor query): its secrets cannot be
// told apart from the rest.
func RedactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Scheme == "" {
		if i := strings.Index(u, "://"); i >= 0 && i < 16 {
			return u[:i+3] + "xxxxx"
		}
		if err == nil && !strings.ContainsAny(u, "?@") {
			return u // a file path
		}
		return "xxxxx"
	}
	if p.User != nil {
		if _, has := p.User.Password(); has {
			p.User = url.UserPassword(p.User.Username(), "xxxxx")
		}
	}
	if p.RawQuery != "" {
		q := p.Query()
		for k := range q {
			switch strings.ToLower(k) {
			case "authtoken", "auth_token", "jwt", "password", "token", "pass", "secret":
				q[k] = []string{"xxxxx"}
			}
		}
		p.RawQuery = q.Encode()
	}
	return p.String()
}

// Redact replaces every occurrence of each non-empty secret in s with "xxxxx". Backends run
// driver error messages through it before returning them.
func Redact(s string, secrets ...string) string {
	for _, sec := range secrets {
		if len(sec) >= 3 {
			s = strings.ReplaceAll(s, sec, "xxxxx")
		}
	}
	return s
}

// QuoteURL is RedactURL in double quotes, for naming a server in a message. A URL that does not
// parse is shown as its scheme alone, or as "xxxxx".
func QuoteURL(u string) string {
	if _, err := url.Parse(u); err != nil {
		if i := strings.Index(u, "://"); i >= 0 && i < 16 {
			return "\"" + u[:i+3] + "xxxxx\""
		}
		return "\"xxxxx\""
	}
	return "\"" + RedactURL(u) + "\""
}

// OneLine joins a multi-line message (servers' and drivers' errors) into one line.
func OneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.Fields(s), " ")
}
