package storagetest

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kavachdev/kavach/storage"
)

// OpenErrorCase is a database that cannot work and what its failure must say.
type OpenErrorCase struct {
	Name   string
	Config storage.Config
	Want   []string // each must appear in the message
	Kind   error    // if set, errors.Is(err, Kind) must hold
}

// RunOpenErrors opens each case eagerly and with Config.Lazy (then the first query reports the
// failure) and checks that the failure comes within 6 seconds, as one line saying what Want
// says, with none of secrets in it.
func RunOpenErrors(t *testing.T, cases []OpenErrorCase, secrets ...string) {
	t.Helper()
	for _, lazy := range []bool{false, true} {
		for _, c := range cases {
			name := c.Name
			if lazy {
				name += ", lazy"
			}
			t.Run(name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				start := time.Now()
				cfg := c.Config
				cfg.Lazy = lazy
				err := OpenError(ctx, cfg)
				if err == nil {
					t.Fatal("the database worked")
				}
				msg := err.Error()
				t.Logf("%s (%v)", msg, time.Since(start).Round(time.Millisecond))
				if time.Since(start) > 6*time.Second {
					t.Errorf("took %v to fail", time.Since(start))
				}
				if strings.ContainsAny(msg, "\r\n") {
					t.Errorf("message spans lines: %q", msg)
				}
				for _, s := range secrets {
					if strings.Contains(msg, s) {
						t.Errorf("message shows a secret: %s", msg)
					}
				}
				for _, w := range c.Want {
					if !strings.Contains(msg, w) {
						t.Errorf("message does not say %q: %s", w, msg)
					}
				}
				if c.Kind != nil && !errors.Is(err, c.Kind) {
					t.Errorf("errors.Is(err, %v) is false", c.Kind)
				}
			})
		}
	}
}

// OpenError opens cfg and reports how opening it failed. With cfg.Lazy, Open contacts nothing,
// so it also runs one query and returns that query's error: a lazily opened database must
// report a server it cannot use as clearly as an eager one. A nil error means the database
// worked.
func OpenError(ctx context.Context, cfg storage.Config) error {
	db, err := storage.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	if cfg.Lazy {
		_, err = db.Exec(ctx, storage.Stmt{SQL: "SELECT 1"})
	}
	return err
}

// CaptureLogs sends slog's default output to a buffer for the rest of the test, to check that
// no log line shows a secret.
func CaptureLogs(t testing.TB) *bytes.Buffer {
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(old) })
	return &buf
}

// ClosedAddr returns a loopback address nothing listens on.
func ClosedAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
