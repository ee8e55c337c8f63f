// Package api is Kavach's HTTP API, independent of any server: it maps a plain Request
// (method, path, query, headers, body) to a plain Response. The fasthttp server, the net/http
// adapter and the WebAssembly build's handle operation are thin translations around it, so every
// host serves exactly the same routes, status codes and bytes.
package api

import (
	"io"
	"strings"
)

// Request is one HTTP request as the API sees it.
type Request struct {
	Method string
	// Path is the request path as sent, still percent-encoded (no query).
	Path string
	// RawQuery is the query string without '?'.
	RawQuery string
	Header   Header
	Body     []byte
	// RemoteIP is the address of the peer that sent the request (no port).
	RemoteIP string
}

// Header gives access to request headers by case-insensitive name.
type Header interface {
	Get(name string) string
}

// MapHeader is a Header backed by a map with lower-case keys.
type MapHeader map[string]string

// Get implements Header.
func (h MapHeader) Get(name string) string { return h[strings.ToLower(name)] }

// Response is one HTTP response. Exactly one of Body and Stream is used.
type Response struct {
	Status int
	Header []Field
	Body   []byte
	// Stream, when set, writes the body (for exports that do not fit in memory). Hosts call it
	// after sending the status and headers.
	Stream func(w io.Writer) error
}

// Field is one response header.
type Field struct{ Name, Value string }

// HeaderValue returns the first value of the named response header.
func (r *Response) HeaderValue(name string) string {
	for _, f := range r.Header {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}
