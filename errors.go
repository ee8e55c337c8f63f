package kavach

import (
	"errors"
	"fmt"
)

// ErrorCode is the stable code of an error. The API maps codes to HTTP statuses in one place
// (api/errors.go); messages may change, codes do not.
type ErrorCode string

const (
	CodeValidation    ErrorCode = "VALIDATION_FAILED"    // a request field is missing or invalid
	CodeNotFound      ErrorCode = "NOT_FOUND"            // the agent, owner, tenant or key does not exist
	CodeConflict      ErrorCode = "CONFLICT"             // the operation is not possible in the current state
	CodeAgentLimit    ErrorCode = "AGENT_LIMIT_EXCEEDED" // the owner has reached agents.maxPerUser
	CodeUnauthorized  ErrorCode = "UNAUTHORIZED"         // no or unknown credentials
	CodeForbidden     ErrorCode = "FORBIDDEN"            // credentials valid but not for this
	CodeUnavailable   ErrorCode = "STORAGE_UNAVAILABLE"  // the database failed; nothing was changed or the change is unknown
	CodeSchema        ErrorCode = "SCHEMA_INVALID"       // stored data does not decode
	CodeInternalError ErrorCode = "INTERNAL_ERROR"
)

// Error is the error type of every Kavach operation: a stable Code and a message a user can act
// on. errors.Is(err, kavach.ErrNotFound) tests the code.
type Error struct {
	Code    ErrorCode
	Message string
	Err     error // the underlying cause, if any
}

func (e *Error) Error() string { return e.Message }
func (e *Error) Unwrap() error { return e.Err }

// Is matches sentinel errors by code: errors.Is(err, ErrNotFound).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// Sentinels for errors.Is.
var (
	ErrValidation   = &Error{Code: CodeValidation}
	ErrNotFound     = &Error{Code: CodeNotFound}
	ErrConflict     = &Error{Code: CodeConflict}
	ErrAgentLimit   = &Error{Code: CodeAgentLimit}
	ErrUnauthorized = &Error{Code: CodeUnauthorized}
	ErrForbidden    = &Error{Code: CodeForbidden}
	ErrUnavailable  = &Error{Code: CodeUnavailable}
)

func errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// storageError wraps a database failure during op. The message says what failed, never the
// statement's arguments.
func storageError(op string, err error) error {
	var ke *Error
	if errors.As(err, &ke) {
		return err
	}
	return &Error{Code: CodeUnavailable, Message: "kavach: " + op + ": database error: " + err.Error(), Err: err}
}

// AsError returns err as an *Error, classifying unknown errors as internal.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var ke *Error
	if errors.As(err, &ke) {
		return ke
	}
	return &Error{Code: CodeInternalError, Message: err.Error(), Err: err}
}
