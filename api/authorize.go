package api

import (
	"context"

	"github.com/kavachdev/kavach"
)

type authorizeBody struct {
	AgentID   string         `json:"agentId"`
	Action    string         `json:"action"`
	Resource  string         `json:"resource"`
	Arguments map[string]any `json:"arguments"`
	// Context carries the address and user agent the agent acts from when a trusted caller (an
	// admin key) authorizes on its behalf. From an agent's own token it is ignored.
	Context *struct {
		IP        string `json:"ip"`
		UserAgent string `json:"userAgent"`
	} `json:"context"`
}

func (h *Handler) authorizeRequest(r *Request, c caller) (authorizeBody, kavach.Request, *Response) {
	var b authorizeBody
	if resp := decode(r, &b); resp != nil {
		return b, kavach.Request{}, resp
	}
	req := kavach.Request{Action: b.Action, Resource: b.Resource, Arguments: b.Arguments,
		IP: h.clientIP(r), UserAgent: r.Header.Get("User-Agent")}
	if b.Context != nil && c.admin && c.token == "" {
		if b.Context.IP != "" {
			req.IP = b.Context.IP
		}
		if b.Context.UserAgent != "" {
			req.UserAgent = b.Context.UserAgent
		}
	}
	return b, req, nil
}

// authorizeAgent is the SDKs' POST /agents/{id}/authorize: always 200 with the decision, which
// is the result, not an HTTP error.
func authorizeAgent(h *Handler, ctx context.Context, r *Request, c caller, p []string) *Response {
	_, req, resp := h.authorizeRequest(r, c)
	if resp != nil {
		return resp
	}
	var d kavach.Decision
	var err error
	if c.token != "" {
		d, err = h.k.AuthorizeTokenAs(ctx, c.token, p[0], req)
	} else {
		d, err = h.k.Authorize(ctx, p[0], req)
	}
	if err != nil {
		return errorResponse(err)
	}
	return h.ok(statusOK, d, false)
}

// authorize is POST /authorize. With agentId in the body it is the reference's route (403 when
// denied); without, it authorizes the agent whose token is the Bearer credential and answers 200
// either way, as the SDKs expect.
func authorize(h *Handler, ctx context.Context, r *Request, c caller, _ []string) *Response {
	b, req, resp := h.authorizeRequest(r, c)
	if resp != nil {
		return resp
	}
	if b.AgentID == "" {
		if c.token == "" {
			return errorResponse(kavachValidation("agentId", "is required, or authenticate with the agent's own token"))
		}
		d, err := h.k.AuthorizeToken(ctx, c.token, req)
		if err != nil {
			return errorResponse(err)
		}
		return h.ok(statusOK, d, true)
	}
	var d kavach.Decision
	var err error
	if c.token != "" {
		d, err = h.k.AuthorizeTokenAs(ctx, c.token, b.AgentID, req)
	} else {
		d, err = h.k.Authorize(ctx, b.AgentID, req)
	}
	if err != nil {
		return errorResponse(err)
	}
	return h.decision(d)
}

// authorizeByToken is the reference's POST /authorize/token: 200 allowed, 403 denied.
func authorizeByToken(h *Handler, ctx context.Context, r *Request, c caller, _ []string) *Response {
	if c.token == "" {
		return fail(string(kavach.CodeUnauthorized), "Missing or invalid Authorization header: send Authorization: Bearer <agent token>")
	}
	_, req, resp := h.authorizeRequest(r, c)
	if resp != nil {
		return resp
	}
	d, err := h.k.AuthorizeToken(ctx, c.token, req)
	if err != nil {
		return errorResponse(err)
	}
	return h.decision(d)
}

// decision answers a reference authorize route: 200 when allowed, 403 with the same body when
// denied.
func (h *Handler) decision(d kavach.Decision) *Response {
	status := statusOK
	if !d.Allowed {
		status = statusForbidden
	}
	return h.ok(status, d, true)
}
