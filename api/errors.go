package api

import (
	"net/http"

	"github.com/kavachdev/kavach"
)

// Codes of errors the API raises itself, before the core is reached.
const (
	codeBadRequest       = "BAD_REQUEST"               // the body is not valid JSON of the right shape
	codeRouteNotFound    = string(kavach.CodeNotFound) // no such route
	codeMethodNotAllowed = "METHOD_NOT_ALLOWED"        // the route exists with other methods
	codeTooLarge         = "PAYLOAD_TOO_LARGE"         // the body exceeds the limit
	codeMediaType        = "UNSUPPORTED_MEDIA_TYPE"    // a body that is not application/json
)

// statusOf is the one place that maps error codes to HTTP statuses.
func statusOf(code string) int {
	switch code {
	case string(kavach.CodeValidation), codeBadRequest:
		return http.StatusBadRequest
	case string(kavach.CodeUnauthorized):
		return http.StatusUnauthorized
	case string(kavach.CodeForbidden):
		return http.StatusForbidden
	case string(kavach.CodeNotFound):
		return http.StatusNotFound
	case codeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case string(kavach.CodeConflict):
		return http.StatusConflict
	case codeTooLarge:
		return http.StatusRequestEntityTooLarge
	case codeMediaType:
		return http.StatusUnsupportedMediaType
	case string(kavach.CodeAgentLimit):
		return http.StatusUnprocessableEntity
	case string(kavach.CodeUnavailable):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// ErrorBody is the JSON body of every error response: {"error":{"code","message"}}.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// errorResponse builds the response for err, using its code if it is a *kavach.Error.
func errorResponse(err error) *Response {
	ke := kavach.AsError(err)
	return fail(string(ke.Code), ke.Message)
}

func fail(code, message string, extra ...Field) *Response {
	var b ErrorBody
	b.Error.Code, b.Error.Message = code, message
	body, _ := marshal(&b)
	r := &Response{Status: statusOf(code), Header: append([]Field{jsonType}, extra...), Body: body}
	if r.Status == http.StatusUnauthorized {
		r.Header = append(r.Header, Field{"WWW-Authenticate", `Bearer realm="kavach"`})
	}
	return r
}

// Fail builds an error response for hosts that reject a request before the API sees it (for
// example a body larger than the server accepts).
func Fail(status int, message string) *Response {
	code := codeBadRequest
	if status == http.StatusRequestEntityTooLarge {
		code = codeTooLarge
	}
	return fail(code, message)
}

var jsonType = Field{"Content-Type", "application/json"}
