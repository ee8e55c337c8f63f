package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"net/url"
	"strings"

	"github.com/kavachdev/kavach"
)

// Options configure the API.
type Options struct {
	// Envelope "data" wraps success bodies of the reference's routes in {"data": ...}, as the
	// reference's adapters do; the default "bare" returns them as they are, which every client
	// SDK accepts. Routes the reference does not have always answer bare.
	Envelope string
	// InsecureNoAuth serves the management API without credentials. The reference has no
	// authentication at all; Kavach requires an admin API key unless this is set.
	InsecureNoAuth bool
	// BasePath is an optional prefix the routes are also served under (the reference's SDKs use
	// https://host/api/kavach). Default "/api/kavach"; routes are always served at the root too.
	BasePath string
	// TrustedProxies lists the peers whose X-Forwarded-For header is believed. From anyone else
	// the header is ignored and the peer address is the client's.
	TrustedProxies []netip.Prefix
	// MaxBodyBytes limits request bodies. Default 1 MiB.
	MaxBodyBytes int
	Logger       kavach.Logger // default: nothing is logged
}

// Handler serves the Kavach HTTP API.
type Handler struct {
	k   *kavach.Kavach
	opt Options
	log kavach.Logger
}

// New returns a Handler for k.
func New(k *kavach.Kavach, opt Options) *Handler {
	if opt.BasePath == "" {
		opt.BasePath = "/api/kavach"
	}
	opt.BasePath = "/" + strings.Trim(opt.BasePath, "/")
	if opt.MaxBodyBytes <= 0 {
		opt.MaxBodyBytes = 1 << 20
	}
	if opt.Envelope != "data" {
		opt.Envelope = "bare"
	}
	log := opt.Logger
	if log == nil {
		log = nopLogger{}
	}
	return &Handler{k: k, opt: opt, log: log}
}

// MaxBodyBytes is the largest body the API accepts; hosts may reject larger ones early.
func (h *Handler) MaxBodyBytes() int { return h.opt.MaxBodyBytes }

type nopLogger struct{}

func (nopLogger) Error(string, ...any) {}
func (nopLogger) Warn(string, ...any)  {}

// caller is who sent a request.
type caller struct {
	admin bool   // an admin API key, or no authentication configured
	token string // an agent token presented as Bearer credential ("" if none)
}

// Serve answers one request. It never panics on bad input; a panic inside the core is turned into
// a 500 and logged.
func (h *Handler) Serve(ctx context.Context, r *Request) (resp *Response) {
	defer func() {
		if p := recover(); p != nil {
			h.log.Error("kavach: api: panic while serving", "method", r.Method, "path", r.Path, "panic", p)
			resp = fail(string(kavach.CodeInternalError), "internal error")
		}
	}()
	if len(r.Body) > h.opt.MaxBodyBytes {
		return fail(codeTooLarge, "request body is larger than the limit of "+itoa(h.opt.MaxBodyBytes)+" bytes")
	}
	segs, ok := splitPath(r.Path, h.opt.BasePath)
	if !ok {
		return fail(codeRouteNotFound, "route not found")
	}
	rt, params := match(segs)
	if rt == nil {
		return fail(codeRouteNotFound, "route not found")
	}
	fn := rt.methods[r.Method]
	if fn == nil {
		if r.Method == methodHead && rt.methods[methodGet] != nil {
			fn = rt.methods[methodGet]
		} else {
			return fail(codeMethodNotAllowed, "method "+r.Method+" is not allowed on this route; allowed: "+rt.allow(), Field{"Allow", rt.allow()})
		}
	}
	c := caller{}
	if !rt.public {
		var denied *Response
		if c, denied = h.authenticate(ctx, r); denied != nil {
			return denied
		}
	}
	return fn(h, ctx, r, c, params)
}

// authenticate identifies the caller from the Authorization header. Agent tokens are checked by
// the routes that accept them.
func (h *Handler) authenticate(ctx context.Context, r *Request) (caller, *Response) {
	cred := bearer(r.Header.Get("Authorization"))
	c := caller{admin: h.opt.InsecureNoAuth}
	switch {
	case kavach.IsAgentToken(cred):
		c.token = cred
	case kavach.IsAPIKey(cred):
		ok, err := h.k.APIKeys.Verify(ctx, cred)
		if err != nil {
			return c, errorResponse(err)
		}
		if !ok && !c.admin {
			return c, fail(string(kavach.CodeUnauthorized), "the API key is not valid or has been revoked")
		}
		c.admin = c.admin || ok
	case c.admin:
	case cred == "":
		return c, fail(string(kavach.CodeUnauthorized), "missing credentials: send Authorization: Bearer <admin API key or agent token>")
	default:
		return c, fail(string(kavach.CodeUnauthorized), "unrecognised credentials: expected an admin API key (kvk_...) or an agent token (kv_...)")
	}
	return c, nil
}

func bearer(h string) string {
	if len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// forbidAgent answers routes that agent tokens may not use.
func forbidAgent() *Response {
	return fail(string(kavach.CodeForbidden), "agent tokens may only authorize and read their own agent; use an admin API key")
}

// clientIP is the address decisions are attributed to: the peer, or the first X-Forwarded-For
// entry when the peer is a trusted proxy.
func (h *Handler) clientIP(r *Request) string {
	peer, err := netip.ParseAddr(r.RemoteIP)
	if err != nil {
		return ""
	}
	peer = peer.Unmap()
	for _, p := range h.opt.TrustedProxies {
		if p.Contains(peer) {
			xff := r.Header.Get("X-Forwarded-For")
			if first, _, _ := strings.Cut(xff, ","); strings.TrimSpace(first) != "" {
				if a, err := netip.ParseAddr(strings.TrimSpace(first)); err == nil {
					return a.Unmap().String()
				}
			}
			break
		}
	}
	return peer.String()
}

// ok writes a success body, wrapped in {"data": ...} when the reference's envelope is on and the
// route is one of the reference's.
func (h *Handler) ok(status int, v any, reference bool, extra ...Field) *Response {
	b, err := marshal(v)
	if err != nil {
		return errorResponse(err)
	}
	if reference && h.opt.Envelope == "data" {
		b = append(append([]byte(`{"data":`), b...), '}')
	}
	return &Response{Status: status, Header: append([]Field{jsonType}, extra...), Body: b}
}

func noContent() *Response { return &Response{Status: statusNoContent} }

// splitPath strips the optional base path and splits the rest into unescaped segments. A single
// trailing slash is ignored.
func splitPath(p, base string) ([]string, bool) {
	if p == base || strings.HasPrefix(p, base+"/") {
		p = p[len(base):]
	}
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		return nil, true
	}
	if p[0] != '/' {
		return nil, false
	}
	segs := strings.Split(p[1:], "/")
	for i, s := range segs {
		if strings.IndexByte(s, '%') >= 0 {
			u, err := url.PathUnescape(s)
			if err != nil {
				return nil, false
			}
			segs[i] = u
		}
		if segs[i] == "" {
			return nil, false
		}
	}
	return segs, true
}

// marshal encodes v without escaping <, > and &, which appear in messages and resources.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
