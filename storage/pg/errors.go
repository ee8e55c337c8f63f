package pg

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kavachdev/kavach/storage"
)

// classify maps a pgx error to the storage error kinds. broken says the connection it happened
// on is gone, which is how a network failure is told apart from, say, an argument pgx could not
// encode.
func (db *DB) classify(err error, broken bool) error {
	if err == nil {
		return nil
	}
	err = db.redacted(err)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505":
			return storage.Classified(storage.ErrUnique, err)
		case pgErr.Code == "23503":
			return storage.Classified(storage.ErrForeignKey, err)
		case strings.HasPrefix(pgErr.Code, "23"), pgErr.Code == "22001":
			return storage.Classified(storage.ErrConstraint, err)
		case strings.HasPrefix(pgErr.Code, "08"), pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03",
			pgErr.Code == "53300":
			return db.unavailable(err)
		}
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	if broken || errors.As(err, &netErr) || errors.As(err, &connectErr) {
		return db.unavailable(err)
	}
	return err
}

// unavailable marks err as storage.ErrUnavailable, with a message that names the server.
func (db *DB) unavailable(err error) error {
	detail := err.Error()
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		detail = opErr.Error() // pgx repeats it for every address it tried
	}
	return storage.Classified(storage.ErrUnavailable, &msgError{
		msg: "postgres database " + storage.QuoteURL(db.url) + " is unavailable: " + db.redact(storage.OneLine(detail)), err: err})
}

// retryable reports whether a failed batch may simply be sent again: the server rolled the whole
// batch back and the cause is transient (a deadlock, a serialization failure, or a cached plan
// that a schema change invalidated).
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "40P01", "40001":
		return true
	case "0A000":
		return strings.Contains(pgErr.Message, "cached plan")
	}
	return false
}

// OpenError implements storage.OpenChecker: it turns a failure to connect into one line saying what went wrong, with which server
// (password redacted) and what to do.
func (db *DB) OpenError(err error) error {
	where := storage.QuoteURL(db.url)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01", "28000":
			return &msgError{msg: "kavach: postgres at " + where + " refused the login: " + storage.OneLine(db.redact(pgErr.Message)) +
				"; check the user and password in the database url", err: storage.Classified(storage.ErrUnavailable, err)}
		case "3D000":
			return &msgError{msg: "kavach: postgres at " + where + ": " + storage.OneLine(db.redact(pgErr.Message)) +
				"; create the database (createdb) or correct its name in the url", err: storage.Classified(storage.ErrUnavailable, err)}
		}
		return &msgError{msg: "kavach: postgres at " + where + ": " + storage.OneLine(db.redact(pgErr.Message)) + " (SQLSTATE " + pgErr.Code + ")",
			err: storage.Classified(storage.ErrUnavailable, err)}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		var netErr net.Error
		if !errors.As(err, &netErr) {
			return &msgError{msg: "kavach: connecting to postgres at " + where + ": " + err.Error(), err: err}
		}
	}
	var opErr *net.OpError
	detail := err.Error()
	if errors.As(err, &opErr) {
		detail = opErr.Error()
	} else if dnsErr := (*net.DNSError)(nil); errors.As(err, &dnsErr) {
		detail = dnsErr.Error()
	}
	return &msgError{msg: "kavach: cannot reach postgres at " + where + ": " + storage.OneLine(db.redact(detail)) +
		"; check that the server is running and that the host and port in the url are right",
		err: storage.Classified(storage.ErrUnavailable, err)}
}

// msgError is an error with a message of our own that still unwraps to the driver's error.
type msgError struct {
	msg string
	err error
}

func (e *msgError) Error() string { return e.msg }
func (e *msgError) Unwrap() error { return e.err }

// redact removes the password from a message. pgx does not put passwords in its errors, but a
// server or a future driver version might echo the connection string.
func (db *DB) redact(s string) string { return storage.Redact(s, db.password) }

// redacted returns err with a message on one line and without the password.
func (db *DB) redacted(err error) error {
	msg := err.Error()
	if !strings.ContainsAny(msg, "\r\n") && (db.password == "" || !strings.Contains(msg, db.password)) {
		return err
	}
	return &msgError{msg: db.redact(storage.OneLine(msg)), err: err}
}
