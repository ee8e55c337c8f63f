package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/kavachdev/kavach"
	"github.com/kavachdev/kavach/api"
)

// fileConfig is the JSON configuration file, mirroring the reference's configuration object.
type fileConfig struct {
	Database struct {
		Provider       string `json:"provider"`
		URL            string `json:"url"`
		AuthToken      string `json:"authToken"`
		SkipMigrations bool   `json:"skipMigrations"`
		MaxOpenConns   int    `json:"maxOpenConns"`
	} `json:"database"`
	Agents struct {
		MaxPerUser            int    `json:"maxPerUser"`
		TokenExpiry           string `json:"tokenExpiry"`
		RequireExistingOwners bool   `json:"requireExistingOwners"`
	} `json:"agents"`
	Server struct {
		Addr           string   `json:"addr"`
		InsecureNoAuth bool     `json:"insecureNoAuth"`
		Envelope       string   `json:"envelope"`
		BasePath       string   `json:"basePath"`
		TrustedProxies []string `json:"trustedProxies"`
	} `json:"server"`
}

// settings is the merged configuration: defaults, then the file, then KAVACH_* environment
// variables, then flags, each overriding the one before.
type settings struct {
	fileConfig
	configPath string
}

// env lists the environment variables and the setting each sets.
var envVars = []struct {
	name string
	set  func(*settings, string) error
}{
	{"KAVACH_DATABASE_PROVIDER", func(s *settings, v string) error { s.Database.Provider = v; return nil }},
	{"KAVACH_DATABASE_URL", func(s *settings, v string) error { s.Database.URL = v; return nil }},
	{"KAVACH_DATABASE_AUTH_TOKEN", func(s *settings, v string) error { s.Database.AuthToken = v; return nil }},
	{"KAVACH_DATABASE_SKIP_MIGRATIONS", func(s *settings, v string) error { return setBool(&s.Database.SkipMigrations, v) }},
	{"KAVACH_DATABASE_MAX_OPEN_CONNS", func(s *settings, v string) error { return setInt(&s.Database.MaxOpenConns, v) }},
	{"KAVACH_AGENTS_MAX_PER_USER", func(s *settings, v string) error { return setInt(&s.Agents.MaxPerUser, v) }},
	{"KAVACH_AGENTS_TOKEN_EXPIRY", func(s *settings, v string) error { s.Agents.TokenExpiry = v; return nil }},
	{"KAVACH_AGENTS_REQUIRE_EXISTING_OWNERS", func(s *settings, v string) error { return setBool(&s.Agents.RequireExistingOwners, v) }},
	{"KAVACH_ADDR", func(s *settings, v string) error { s.Server.Addr = v; return nil }},
	{"KAVACH_INSECURE_NO_AUTH", func(s *settings, v string) error { return setBool(&s.Server.InsecureNoAuth, v) }},
	{"KAVACH_ENVELOPE", func(s *settings, v string) error { s.Server.Envelope = v; return nil }},
	{"KAVACH_BASE_PATH", func(s *settings, v string) error { s.Server.BasePath = v; return nil }},
	{"KAVACH_TRUSTED_PROXIES", func(s *settings, v string) error { s.Server.TrustedProxies = splitList(v); return nil }},
}

func setBool(p *bool, v string) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("%q is not true or false", v)
	}
	*p = b
	return nil
}

func setInt(p *int, v string) error {
	n, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("%q is not an integer", v)
	}
	*p = n
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// addFlags declares the flags every command shares. Flag values are applied by apply, after the
// file and environment, and only for flags actually given.
func addFlags(fs *flag.FlagSet, s *settings) {
	fs.StringVar(&s.configPath, "config", os.Getenv("KAVACH_CONFIG"), "JSON configuration file (env KAVACH_CONFIG)")
	fs.String("db-provider", "", "database provider: sqlite, libsql, postgres or mysql (env KAVACH_DATABASE_PROVIDER)")
	fs.String("db-url", "", "database URL, or a file path for sqlite (env KAVACH_DATABASE_URL; default ./kavach.db)")
	fs.String("db-auth-token", "", "libSQL/Turso auth token (env KAVACH_DATABASE_AUTH_TOKEN)")
	fs.Bool("skip-migrations", false, "run no DDL; verify the schema instead (env KAVACH_DATABASE_SKIP_MIGRATIONS)")
	fs.Int("max-agents-per-user", 0, "active agents one owner may have; negative for no limit (env KAVACH_AGENTS_MAX_PER_USER; default 10)")
	fs.String("token-expiry", "", "default agent lifetime such as 24h or 30d, or never (env KAVACH_AGENTS_TOKEN_EXPIRY; default 24h)")
}

func addServerFlags(fs *flag.FlagSet) {
	fs.String("addr", "", "listen address (env KAVACH_ADDR; default 127.0.0.1:8080)")
	fs.Bool("insecure-no-auth", false, "serve the management API without credentials (env KAVACH_INSECURE_NO_AUTH); for local experiments only")
	fs.String("envelope", "", `"bare" (default) or "data" to wrap reference routes in {"data": ...} (env KAVACH_ENVELOPE)`)
	fs.String("base-path", "", "extra path prefix the API is served under (env KAVACH_BASE_PATH; default /api/kavach)")
	fs.String("trusted-proxies", "", "comma-separated CIDRs whose X-Forwarded-For is believed (env KAVACH_TRUSTED_PROXIES)")
}

// load reads the file named by -config, then the environment, then the flags set on fs.
func (s *settings) load(fs *flag.FlagSet) error {
	if s.configPath != "" {
		b, err := os.ReadFile(s.configPath)
		if err != nil {
			return fmt.Errorf("reading config: %w", err)
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s.fileConfig); err != nil {
			return fmt.Errorf("config %s: %w", s.configPath, err)
		}
	}
	for _, e := range envVars {
		if v, ok := os.LookupEnv(e.name); ok && v != "" {
			if err := e.set(s, v); err != nil {
				return fmt.Errorf("%s: %w", e.name, err)
			}
		}
	}
	var err error
	fs.Visit(func(f *flag.Flag) {
		v := f.Value.String()
		var e error
		switch f.Name {
		case "db-provider":
			s.Database.Provider = v
		case "db-url":
			s.Database.URL = v
		case "db-auth-token":
			s.Database.AuthToken = v
		case "skip-migrations":
			e = setBool(&s.Database.SkipMigrations, v)
		case "max-agents-per-user":
			e = setInt(&s.Agents.MaxPerUser, v)
		case "token-expiry":
			s.Agents.TokenExpiry = v
		case "addr":
			s.Server.Addr = v
		case "insecure-no-auth":
			e = setBool(&s.Server.InsecureNoAuth, v)
		case "envelope":
			s.Server.Envelope = v
		case "base-path":
			s.Server.BasePath = v
		case "trusted-proxies":
			s.Server.TrustedProxies = splitList(v)
		}
		if e != nil && err == nil {
			err = fmt.Errorf("-%s: %w", f.Name, e)
		}
	})
	if err != nil {
		return err
	}
	if s.Server.Addr == "" {
		s.Server.Addr = "127.0.0.1:8080"
	}
	if e := s.Server.Envelope; e != "" && e != "bare" && e != "data" {
		return fmt.Errorf("envelope must be \"bare\" or \"data\", not %q", e)
	}
	return nil
}

func (s *settings) kavachConfig() kavach.Config {
	return kavach.Config{
		Database: kavach.Database{Provider: s.Database.Provider, URL: s.Database.URL, AuthToken: s.Database.AuthToken,
			SkipMigrations: s.Database.SkipMigrations, MaxOpenConns: s.Database.MaxOpenConns},
		Agents: kavach.AgentsConfig{MaxPerUser: s.Agents.MaxPerUser, TokenExpiry: s.Agents.TokenExpiry,
			RequireExistingOwners: s.Agents.RequireExistingOwners},
	}
}

func (s *settings) trustedProxies() ([]netip.Prefix, error) {
	return api.ParsePrefixes(s.Server.TrustedProxies)
}
