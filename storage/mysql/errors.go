package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/go-sql-driver/mysql"

	"github.com/kavachdev/kavach/storage"
)

// MySQL and MariaDB error numbers this backend tells apart.
const (
	erDupEntry            = 1062
	erDupEntryWithKeyName = 1586
	erRowIsReferenced     = 1217
	erNoReferencedRow     = 1216
	erRowIsReferenced2    = 1451
	erNoReferencedRow2    = 1452
	erBadNull             = 1048
	erNoDefault           = 1364
	erDataTooLong         = 1406
	erOutOfRange          = 1264
	erTruncatedWrongValue = 1366
	erCheckMySQL          = 3819
	erCheckMariaDB        = 4025
	erLockDeadlock        = 1213
	erServerShutdown      = 1053
	erTooManyConnections  = 1040
	erConnectionKilled    = 1927 // MariaDB
	erAccessDenied        = 1045
	erDBAccessDenied      = 1044
	erBadDB               = 1049
)

func (db *DB) classify(err error) error {
	if err == nil {
		return nil
	}
	err = db.redacted(err)
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case erDupEntry, erDupEntryWithKeyName:
			return storage.Classified(storage.ErrUnique, err)
		case erRowIsReferenced, erNoReferencedRow, erRowIsReferenced2, erNoReferencedRow2:
			return storage.Classified(storage.ErrForeignKey, err)
		case erBadNull, erNoDefault, erDataTooLong, erOutOfRange, erTruncatedWrongValue, erCheckMySQL, erCheckMariaDB:
			return storage.Classified(storage.ErrConstraint, err)
		case erServerShutdown, erTooManyConnections, erConnectionKilled,
			erAccessDenied, erBadDB, erDBAccessDenied: // the last three: a new connection cannot log in or use its database
			return db.unavailable(err)
		}
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if isConnError(err) {
		return db.unavailable(err)
	}
	return err
}

// unavailable marks err as storage.ErrUnavailable, with a message that names the server.
func (db *DB) unavailable(err error) error {
	detail := err.Error()
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		detail = opErr.Error()
	}
	return storage.Classified(storage.ErrUnavailable, &wrapped{
		msg: "mysql database " + storage.QuoteURL(db.url) + " is unavailable: " + db.redact(storage.OneLine(detail)), err: err})
}

// isConnError reports whether err means the connection is unusable (sql.ErrConnDone: it was
// found unusable earlier and closed).
func isConnError(err error) bool {
	var netErr net.Error
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, sql.ErrConnDone) || errors.As(err, &netErr)
}

func isDeadlock(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == erLockDeadlock
}

// OpenError implements storage.OpenChecker: it turns a failure to connect into one line saying what went wrong, with which server
// (password redacted) and what to do.
func (db *DB) OpenError(err error) error {
	where := storage.QuoteURL(db.url)
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		msg := db.redact(me.Message)
		switch me.Number {
		case erAccessDenied:
			return &wrapped{msg: "kavach: mysql at " + where + " refused the login: " + msg + "; check the user and password in the database url",
				err: storage.Classified(storage.ErrUnavailable, err)}
		case erBadDB:
			return &wrapped{msg: "kavach: mysql at " + where + ": " + msg + "; create the database (CREATE DATABASE " + db.dbName +
				") or correct its name in the url", err: storage.Classified(storage.ErrUnavailable, err)}
		case erDBAccessDenied: // MySQL says this, not "unknown database", to users without rights
			return &wrapped{msg: "kavach: mysql at " + where + ": " + msg + "; create the database (CREATE DATABASE " + db.dbName +
				"), grant the user access to it, or correct its name in the url", err: storage.Classified(storage.ErrUnavailable, err)}
		}
		return &wrapped{msg: "kavach: mysql at " + where + ": " + db.redact(storage.OneLine(me.Error())), err: storage.Classified(storage.ErrUnavailable, err)}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &wrapped{msg: "kavach: connecting to mysql at " + where + ": " + err.Error(), err: err}
	}
	detail := err.Error()
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		detail = opErr.Error()
	}
	return &wrapped{msg: "kavach: cannot reach mysql at " + where + ": " + db.redact(storage.OneLine(detail)) +
		"; check that the server is running and that the host and port in the url are right",
		err: storage.Classified(storage.ErrUnavailable, err)}
}

// wrapped is an error with a message of our own that still unwraps to the driver's error.
type wrapped struct {
	msg string
	err error
}

func (e *wrapped) Error() string { return e.msg }
func (e *wrapped) Unwrap() error { return e.err }

func (db *DB) redact(s string) string { return storage.Redact(s, db.password) }

func (db *DB) redacted(err error) error {
	msg := err.Error()
	if strings.ContainsAny(msg, "\r\n") || db.password != "" && strings.Contains(msg, db.password) {
		return &wrapped{msg: db.redact(storage.OneLine(msg)), err: err}
	}
	return err
}
