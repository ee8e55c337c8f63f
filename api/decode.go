package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kavachdev/kavach"
)

// decode parses a JSON object body into v. Unknown fields are ignored (clients of the reference
// send extra ones); wrong types, malformed JSON, trailing data and non-object bodies are 400s
// that name the problem.
func decode(r *Request, v any) *Response {
	if len(bytes.TrimSpace(r.Body)) == 0 {
		return fail(codeBadRequest, "request body is empty; send a JSON object")
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		// The media type is what comes before any parameters (";charset=utf-8"), in any case.
		mt, _, _ := strings.Cut(ct, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
		if !(mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
			return fail(codeMediaType, fmt.Sprintf("Content-Type %q is not supported; send Content-Type: application/json", ct))
		}
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fail(codeBadRequest, describeJSONError(err))
	}
	return nil
}

func describeJSONError(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		if te.Field == "" {
			return "request body must be a JSON object"
		}
		return fmt.Sprintf("Validation failed: %s: expected %s, got %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
	case errors.As(err, &se):
		return fmt.Sprintf("Invalid JSON body: %v (at byte %d)", se, se.Offset)
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "json: ") {
		msg = strings.TrimPrefix(msg, "json: ")
	}
	return "Invalid JSON body: " + msg
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "slice", "array":
		return "an array"
	case "map", "struct", "ptr":
		return "an object"
	case "bool":
		return "a boolean"
	case "int", "int64", "float64", "int32":
		return "a number"
	}
	return k
}

// parseTime reads a timestamp field given as an ISO 8601 string or as milliseconds since the
// epoch. ok is false for an absent field or null; the error names the field.
func parseTime(field string, raw json.RawMessage) (t time.Time, ok bool, err error) {
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}, false, nil
	}
	s := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return time.Time{}, false, kavachValidation(field, "is not a valid string")
		}
	}
	t, parsed := kavach.ParseTime(s)
	if !parsed {
		return time.Time{}, false, kavachValidation(field, "%s is not a date: use ISO 8601 (2026-01-31T12:00:00Z) or milliseconds since the epoch", raw)
	}
	return t, true, nil
}

func kavachValidation(field, format string, args ...any) error {
	return &kavach.Error{Code: kavach.CodeValidation, Message: field + ": " + fmt.Sprintf(format, args...)}
}
