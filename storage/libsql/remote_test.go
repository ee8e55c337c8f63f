package libsql_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/kavachdev/kavach/storage"
	"github.com/kavachdev/kavach/storage/storagetest"
	"github.com/kavachdev/kavach/storage/storagetest/testdb"
)

func TestRemoteConformanceHTTP(t *testing.T) { storagetest.Run(t, testdb.SqldHTTP()) }

func TestRemoteConformanceWebSocket(t *testing.T) { storagetest.Run(t, testdb.SqldWebSocket()) }

// TestRemoteAuthToken: a sqld that demands a JWT accepts the token from the configuration or
// from the URL, over HTTP and WebSocket and through libsql:// without TLS.
func TestRemoteAuthToken(t *testing.T) {
	s, token := testdb.SqldWithAuth(t)
	for _, c := range []struct {
		name string
		cfg  storage.Config
	}{
		{"http, token in config", storage.Config{Provider: "libsql", URL: "http://" + s.Addr(), AuthToken: token}},
		{"ws, token in config", storage.Config{Provider: "libsql", URL: "ws://" + s.Addr(), AuthToken: token}},
		{"libsql without tls, token in url", storage.Config{Provider: "libsql", URL: "libsql://" + s.Addr() + "?tls=0&authToken=" + token}},
		{"http, token in url as jwt", storage.Config{Provider: "libsql", URL: "http://" + s.Addr() + "?jwt=" + token}},
	} {
		t.Run(c.name, func(t *testing.T) {
			db := storagetest.OpenConfig(t, c.cfg)
			res, err := db.Exec(context.Background(), storage.Stmt{SQL: "SELECT 1 + ?", Args: []any{int64(41)}})
			if err != nil || res[0].Rows[0][0] != int64(42) {
				t.Fatalf("SELECT: %v, %v", res, err)
			}
		})
	}
}

// TestRemoteOpenErrorsAreOneClearLine opens databases that cannot work and checks that each
// failure is one line saying what is wrong, with the server named and the token nowhere, in an
// error or in a log line.
func TestRemoteOpenErrorsAreOneClearLine(t *testing.T) {
	logs := storagetest.CaptureLogs(t)
	s, token := testdb.SqldWithAuth(t)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	forged := testdb.SignJWT(otherKey, time.Hour)
	open := testdb.SqldHTTP().New(t) // no authentication, for the missing-database case
	secrets := []string{token, forged}

	cases := []struct {
		name string
		cfg  storage.Config
		want []string
		kind error
	}{
		{"unreachable server over http", storage.Config{URL: "http://" + storagetest.ClosedAddr(t), AuthToken: token},
			[]string{"cannot reach libsql server", "connection refused"}, storage.ErrUnavailable},
		{"unreachable server over ws", storage.Config{URL: "ws://" + storagetest.ClosedAddr(t), AuthToken: token},
			[]string{"cannot reach libsql server", "connection refused"}, storage.ErrUnavailable},
		{"wrong token over http", storage.Config{URL: "http://" + s.Addr(), AuthToken: forged},
			[]string{"rejected the auth token", "401", "KAVACH_DATABASE_AUTH_TOKEN"}, storage.ErrUnavailable},
		{"wrong token over ws", storage.Config{URL: "ws://" + s.Addr(), AuthToken: forged},
			[]string{"rejected the auth token", "KAVACH_DATABASE_AUTH_TOKEN"}, nil},
		{"no token", storage.Config{URL: "http://" + s.Addr()}, []string{"rejected the auth token", "401"}, storage.ErrUnavailable},
		{"wrong token in the url", storage.Config{URL: "http://" + s.Addr() + "?authToken=" + forged}, []string{"rejected the auth token"}, storage.ErrUnavailable},
		{"missing database", storage.Config{URL: open.Config.URL + "/no-such-database"}, []string{"no such database"}, nil},
		{"malformed url", storage.Config{URL: "http://[::1:8080?authToken=" + token}, []string{"invalid libsql database url"}, nil},
		{"wrong scheme", storage.Config{URL: "postgres://" + s.Addr() + "?authToken=" + token}, []string{"must start with libsql://"}, nil},
		{"unknown parameter", storage.Config{URL: "http://" + s.Addr() + "?authToken=" + token + "&mode=fast"}, []string{`unknown parameter "mode"`}, nil},
		{"two different tokens", storage.Config{URL: "http://" + s.Addr() + "?authToken=" + forged, AuthToken: token}, []string{"different"}, nil},
		{"tls switch on an http url", storage.Config{URL: "http://" + s.Addr() + "?tls=0"}, []string{"only applies to libsql://"}, nil},
	}
	var checks []storagetest.OpenErrorCase
	for _, c := range cases {
		c.cfg.Provider = "libsql"
		checks = append(checks, storagetest.OpenErrorCase{Name: c.name, Config: c.cfg, Want: c.want, Kind: c.kind})
	}
	storagetest.RunOpenErrors(t, checks, secrets...)
	for _, sec := range secrets {
		if strings.Contains(logs.String(), sec) {
			t.Errorf("a log line shows an auth token:\n%s", logs)
		}
	}
}
