package api

import (
	"github.com/kavachdev/kavach"
)

// Codes of errors the API raises itself, before the core is reached.
const (
	codeBadRequest       = "BAD_REQUEST"               // the body is not valid JSON of the right shape
	codeRouteNotFound    = string(kavach.CodeNotFound) // no such route
	codeMethodNotAllowed = "METHOD_NOT_ALLOWED"        // the route exists with other methods
	codeTooLarge         = "PAYLOAD_TOO_LARGE"         // the body exceeds the limit
	codeHeadersTooLarge  = "HEADERS_TOO_LARGE"         // the request line and headers exceed the server's buffer
	codeMediaType        = "UNSUPPORTED_MEDIA_TYPE"    // a body that is not application/json
)

// statusOf is the one place that maps error codes to HTTP statuses.
func statusOf(code string) int {
	switch code {
	case string(kavach.CodeValidation), codeBadRequest:
		return statusBadRequest
	case string(kavach.CodeUnauthorized):
		return statusUnauthorized
	case string(kavach.CodeForbidden):
		return statusForbidden
	case string(kavach.CodeNotFound):
		return statusNotFound
	case codeMethodNotAllowed:
		return statusMethodNotAllowed
	case string(kavach.CodeConflict):
		return statusConflict
	case codeTooLarge:
		return statusRequestEntityTooLarge
	case codeHeadersTooLarge:
		return statusHeadersTooLarge
	case codeMediaType:
		return statusUnsupportedMediaType
	case string(kavach.CodeAgentLimit):
		return statusUnprocessableEntity
	case string(kavach.CodeUnavailable):
		return statusServiceUnavailable
	}
	return statusInternalServerError
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
	if r.Status == statusUnauthorized {
		r.Header = append(r.Header, Field{"WWW-Authenticate", `Bearer realm="kavach"`})
	}
	return r
}

// Fail builds an error response for hosts that reject a request before the API sees it (for
// example a body larger than the server accepts).
func Fail(status int, message string) *Response {
	code := codeBadRequest
	switch status {
	case statusRequestEntityTooLarge:
		code = codeTooLarge
	case statusHeadersTooLarge:
		code = codeHeadersTooLarge
	case statusServiceUnavailable:
		code = string(kavach.CodeUnavailable)
	}
	return fail(code, message)
}

var jsonType = Field{"Content-Type", "application/json"}

// HTTP statuses and methods the API uses. The api package is part of the host-agnostic core and
// does not import net/http.
const (
	statusOK                    = 200
	statusCreated               = 201
	statusNoContent             = 204
	statusBadRequest            = 400
	statusUnauthorized          = 401
	statusForbidden             = 403
	statusNotFound              = 404
	statusMethodNotAllowed      = 405
	statusConflict              = 409
	statusRequestEntityTooLarge = 413
	statusHeadersTooLarge       = 431
	statusUnsupportedMediaType  = 415
	statusUnprocessableEntity   = 422
	statusInternalServerError   = 500
	statusServiceUnavailable    = 503

	methodHead = "HEAD"
	methodGet  = "GET"
)
