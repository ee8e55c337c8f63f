// Command kavach serves and administers Kavach: authentication and authorization for AI agents.
//
//	kavach serve                   serve the HTTP API (default 127.0.0.1:8080, database ./kavach.db)
//	kavach migrate                 create or upgrade the database schema
//	kavach agents create|list|revoke
//	kavach keys create|list|revoke admin API keys for the management API
//	kavach version
//
// Configuration comes from a JSON file (-config), KAVACH_* environment variables and flags, each
// overriding the one before.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/kavachdev/kavach"
	"github.com/kavachdev/kavach/api"
	"github.com/kavachdev/kavach/host"
	"github.com/kavachdev/kavach/storage"
	// Every storage provider: the server picks one by name at run time.
	_ "github.com/kavachdev/kavach/storage/libsql"
	_ "github.com/kavachdev/kavach/storage/mysql"
	_ "github.com/kavachdev/kavach/storage/pg"
)

// version is set at build time with -ldflags "-X main.version=..."; otherwise the module version.
var version = ""

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: kavach <command> [flags]

commands:
  serve            serve the HTTP API
  migrate          create or upgrade the database schema
  agents create    create an agent and print its token
  agents list      list agents
  agents revoke    revoke an agent
  keys create      create an admin API key and print it
  keys list        list admin API keys
  keys revoke      revoke an admin API key
  version          print the version

Run "kavach <command> -h" for the flags of a command.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	if (cmd == "agents" || cmd == "keys") && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		cmd, rest = cmd+" "+rest[0], rest[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(ctx, rest, stdout, stderr)
	case "migrate":
		err = migrate(ctx, rest, stdout)
	case "agents create":
		err = agentsCreate(ctx, rest, stdout)
	case "agents list":
		err = agentsList(ctx, rest, stdout)
	case "agents revoke":
		err = agentsRevoke(ctx, rest, stdout)
	case "keys create":
		err = keysCreate(ctx, rest, stdout)
	case "keys list":
		err = keysList(ctx, rest, stdout)
	case "keys revoke":
		err = keysRevoke(ctx, rest, stdout)
	case "version":
		fmt.Fprintln(stdout, "kavach", versionString())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "kavach: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "kavach:", strings.TrimPrefix(err.Error(), "kavach: "))
		var u usageError
		if errors.As(err, &u) {
			return 2
		}
		return 1
	}
	return 0
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// open parses the common flags and opens Kavach.
func open(ctx context.Context, name string, args []string, extra func(*flag.FlagSet)) (*kavach.Kavach, *settings, *flag.FlagSet, error) {
	fs := flag.NewFlagSet("kavach "+name, flag.ContinueOnError)
	s := &settings{}
	addFlags(fs, s)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil, nil, err
		}
		return nil, nil, nil, usageError{err.Error()}
	}
	if err := s.load(fs); err != nil {
		return nil, nil, nil, err
	}
	cfg := s.kavachConfig()
	cfg.Logger = slog.Default()
	k, err := kavach.New(ctx, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	return k, s, fs, nil
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	slog.SetDefault(log)
	k, s, _, err := open(ctx, "serve", args, addServerFlags)
	if err != nil {
		return err
	}
	defer k.Close()
	proxies, err := s.trustedProxies()
	if err != nil {
		return err
	}
	if s.Server.InsecureNoAuth {
		log.Warn("kavach: serving WITHOUT authentication (--insecure-no-auth): anyone who can reach " + s.Server.Addr + " can create agents and read the audit log")
	} else {
		key, err := k.APIKeys.Bootstrap(ctx)
		if err != nil {
			return err
		}
		if key != "" {
			fmt.Fprintf(stdout, "Admin API key (shown once; store it now):\n\n  %s\n\nSend it as: Authorization: Bearer %s\n\n", key, key)
		}
	}
	h := api.New(k, api.Options{Envelope: s.Server.Envelope, InsecureNoAuth: s.Server.InsecureNoAuth,
		BasePath: s.Server.BasePath, TrustedProxies: proxies, Logger: log})
	srv := host.NewServer(h)
	ln, err := net.Listen("tcp", s.Server.Addr)
	if err != nil {
		return err
	}
	log.Info("kavach: serving", "addr", ln.Addr().String(), "database", dbLabel(s))
	fmt.Fprintf(stdout, "kavach listening on http://%s\n", ln.Addr())

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("kavach: shutting down")
	return host.Shutdown(srv, 10*time.Second)
}

// dbLabel names the database for the log, without secrets.
func dbLabel(s *settings) string {
	p, u := s.Database.Provider, s.Database.URL
	if p == "" {
		p = "sqlite"
	}
	if u == "" && p == "sqlite" {
		u = "./kavach.db"
	}
	return p + " " + storage.RedactURL(u)
}

func migrate(ctx context.Context, args []string, stdout io.Writer) error {
	k, _, _, err := open(ctx, "migrate", args, nil)
	if err != nil {
		return err
	}
	defer k.Close()
	if err := k.Migrate(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "schema is at version %d\n", kavach.Migrations[len(kavach.Migrations)-1].Version)
	return nil
}

// permissionFlag collects -permission values of the form "resource=action,action".
type permissionFlag []kavach.Permission

func (p *permissionFlag) String() string { return fmt.Sprint(*p) }
func (p *permissionFlag) Set(v string) error {
	res, acts, ok := strings.Cut(v, "=")
	if !ok || res == "" || acts == "" {
		return fmt.Errorf("%q is not resource=action[,action...]", v)
	}
	*p = append(*p, kavach.Permission{Resource: res, Actions: strings.Split(acts, ",")})
	return nil
}

func agentsCreate(ctx context.Context, args []string, stdout io.Writer) error {
	var owner, name, typ, expires string
	var perms permissionFlag
	var asJSON bool
	k, _, _, err := open(ctx, "agents create", args, func(fs *flag.FlagSet) {
		fs.StringVar(&owner, "owner", "", "owner (user) id (required)")
		fs.StringVar(&name, "name", "", "agent name (required)")
		fs.StringVar(&typ, "type", "autonomous", "autonomous, delegated or service")
		fs.Var(&perms, "permission", `a permission as resource=action[,action...], e.g. "mcp:github:*=read"; repeatable`)
		fs.StringVar(&expires, "expires", "", "expiry as RFC 3339 (default: now + token expiry)")
		fs.BoolVar(&asJSON, "json", false, "print the agent as JSON")
	})
	if err != nil {
		return err
	}
	defer k.Close()
	in := kavach.NewAgent{OwnerID: owner, Name: name, Type: kavach.AgentType(typ), Permissions: perms}
	if expires != "" {
		t, ok := kavach.ParseTime(expires)
		if !ok {
			return usageError{fmt.Sprintf("-expires %q is not a date", expires)}
		}
		in.ExpiresAt = &t
	}
	a, err := k.Agents.Create(ctx, in)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(a)
	}
	fmt.Fprintf(stdout, "agent %s created\ntoken (shown once): %s\n", a.ID, a.Token)
	return nil
}

func agentsList(ctx context.Context, args []string, stdout io.Writer) error {
	var owner, status string
	var limit int
	var asJSON bool
	k, _, _, err := open(ctx, "agents list", args, func(fs *flag.FlagSet) {
		fs.StringVar(&owner, "owner", "", "only this owner's agents")
		fs.StringVar(&status, "status", "", "only agents with this status: active, revoked or expired")
		fs.IntVar(&limit, "limit", 100, "at most this many agents (1-1000)")
		fs.BoolVar(&asJSON, "json", false, "print JSON")
	})
	if err != nil {
		return err
	}
	defer k.Close()
	agents, err := k.Agents.List(ctx, kavach.ListFilter{OwnerID: owner, Status: kavach.AgentStatus(status), Limit: limit})
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(agents)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tOWNER\tNAME\tTYPE\tSTATUS\tEXPIRES\tPERMISSIONS")
	for _, a := range agents {
		exp := "never"
		if a.ExpiresAt != nil {
			exp = a.ExpiresAt.Format(time.RFC3339)
		}
		var ps []string
		for _, p := range a.Permissions {
			ps = append(ps, p.Resource+"="+strings.Join(p.Actions, ","))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.OwnerID, a.Name, a.Type, a.Status, exp, strings.Join(ps, " "))
	}
	return tw.Flush()
}

func agentsRevoke(ctx context.Context, args []string, stdout io.Writer) error {
	k, _, fs, err := open(ctx, "agents revoke", args, nil)
	if err != nil {
		return err
	}
	defer k.Close()
	if fs.NArg() == 0 {
		return usageError{"agents revoke needs at least one agent id"}
	}
	for _, id := range fs.Args() {
		if err := k.Agents.Revoke(ctx, id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "agent %s revoked\n", id)
	}
	return nil
}

func keysCreate(ctx context.Context, args []string, stdout io.Writer) error {
	var name string
	k, _, _, err := open(ctx, "keys create", args, func(fs *flag.FlagSet) {
		fs.StringVar(&name, "name", "admin", "a name to recognise the key by")
	})
	if err != nil {
		return err
	}
	defer k.Close()
	key, info, err := k.APIKeys.Create(ctx, name)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "API key %s (%s) created; shown once:\n%s\n", info.ID, info.Name, key)
	return nil
}

func keysList(ctx context.Context, args []string, stdout io.Writer) error {
	k, _, _, err := open(ctx, "keys list", args, nil)
	if err != nil {
		return err
	}
	defer k.Close()
	keys, err := k.APIKeys.List(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tPREFIX\tCREATED\tREVOKED")
	for _, key := range keys {
		rev := ""
		if key.RevokedAt != nil {
			rev = key.RevokedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", key.ID, key.Name, key.Prefix, key.CreatedAt.Format(time.RFC3339), rev)
	}
	return tw.Flush()
}

func keysRevoke(ctx context.Context, args []string, stdout io.Writer) error {
	k, _, fs, err := open(ctx, "keys revoke", args, nil)
	if err != nil {
		return err
	}
	defer k.Close()
	if fs.NArg() == 0 {
		return usageError{"keys revoke needs at least one key id"}
	}
	for _, id := range fs.Args() {
		if err := k.APIKeys.Revoke(ctx, id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "API key %s revoked\n", id)
	}
	return nil
}
