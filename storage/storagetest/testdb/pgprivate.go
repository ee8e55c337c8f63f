package testdb

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
)

// PostgresWithPassword starts a private Postgres cluster that authenticates with passwords
// (scram-sha-256) on a free loopback port, and returns the URL of its database "postgres" for
// user "kavach" without the password, and the password. The shared test server trusts every
// local connection, so a wrong password can only be tested on a server of the test's own. The
// cluster is removed when t ends. It needs Postgres's server programs (initdb, pg_ctl); as root,
// it runs them as the postgres user, since Postgres refuses to run as root.
func PostgresWithPassword(t testing.TB) (url, password string) {
	t.Helper()
	bindir := os.Getenv("KAVACH_TEST_PG_BINDIR")
	if bindir == "" {
		matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		sort.Strings(matches)
		if len(matches) > 0 {
			bindir = matches[len(matches)-1]
		}
	}
	if _, err := os.Stat(filepath.Join(bindir, "initdb")); bindir == "" || err != nil {
		unavailable(t, "Postgres server programs (initdb, pg_ctl) are not installed; install the postgresql package or set KAVACH_TEST_PG_BINDIR")
	}
	var prefix []string
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			unavailable(t, "running as root and there is no postgres user to run a private Postgres cluster as")
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		prefix = []string{"runuser", "-u", "postgres", "--"}
	}
	dir, err := os.MkdirTemp("", "kavach-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	password = "pw-" + uniqueName()
	pwfile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwfile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if uid >= 0 {
		for _, p := range []string{dir, pwfile} {
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	run := func(prog string, args ...string) {
		t.Helper()
		argv := append(append(append([]string{}, prefix...), filepath.Join(bindir, prog)), args...)
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", prog, err, out)
		}
	}
	data := filepath.Join(dir, "data")
	run("initdb", "-D", data, "-A", "scram-sha-256", "-U", "kavach", "--pwfile="+pwfile, "--no-sync", "-E", "UTF8")
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	run("pg_ctl", "-D", data, "-w", "-l", filepath.Join(dir, "log"),
		"-o", fmt.Sprintf("-p %s -k %s -c listen_addresses=127.0.0.1 -c fsync=off", port, dir), "start")
	t.Cleanup(func() { run("pg_ctl", "-D", data, "-m", "immediate", "stop") })
	return "postgres://kavach@" + addr + "/postgres", password
}
