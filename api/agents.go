package api

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"

	"github.com/kavachdev/kavach"
)

var noStore = Field{"Cache-Control", "no-store"}

type createAgentBody struct {
	OwnerID     string               `json:"ownerId"`
	TenantID    string               `json:"tenantId"`
	Name        string               `json:"name"`
	Type        string               `json:"type"`
	Permissions *[]kavach.Permission `json:"permissions"`
	ExpiresAt   json.RawMessage      `json:"expiresAt"`
	Metadata    map[string]any       `json:"metadata"`
}

func createAgent(h *Handler, ctx context.Context, r *Request, c caller, _ []string) *Response {
	if !c.admin {
		return forbidAgent()
	}
	var b createAgentBody
	if resp := decode(r, &b); resp != nil {
		return resp
	}
	if b.Permissions == nil || len(*b.Permissions) == 0 {
		return errorResponse(kavachValidation("permissions", "at least one permission is required"))
	}
	in := kavach.NewAgent{OwnerID: b.OwnerID, TenantID: b.TenantID, Name: b.Name, Type: kavach.AgentType(b.Type),
		Permissions: *b.Permissions, Metadata: b.Metadata}
	t, set, err := parseTime("expiresAt", b.ExpiresAt)
	if err != nil {
		return errorResponse(err)
	}
	if set {
		in.ExpiresAt = &t
	}
	a, err := h.k.Agents.Create(ctx, in)
	if err != nil {
		return errorResponse(err)
	}
	return h.ok(statusCreated, a, true, noStore)
}

func listAgents(h *Handler, ctx context.Context, r *Request, c caller, _ []string) *Response {
	if !c.admin {
		return forbidAgent()
	}
	q, resp := query(r)
	if resp != nil {
		return resp
	}
	f := kavach.ListFilter{OwnerID: first(q, "userId", "ownerId"), TenantID: q.Get("tenantId"),
		Status: kavach.AgentStatus(q.Get("status")), Type: kavach.AgentType(q.Get("type"))}
	if f.Limit, resp = intParam(q, "limit"); resp != nil {
		return resp
	}
	if f.Offset, resp = intParam(q, "offset"); resp != nil {
		return resp
	}
	agents, err := h.k.Agents.List(ctx, f)
	if err != nil {
		return errorResponse(err)
	}
	return h.ok(statusOK, agents, true)
}

func getAgent(h *Handler, ctx context.Context, r *Request, c caller, p []string) *Response {
	if !c.admin {
		// An agent token may read its own agent.
		if c.token == "" {
			return forbidAgent()
		}
		a, err := h.k.Agents.ByToken(ctx, c.token)
		if err != nil {
			return errorResponse(err)
		}
		if a.ID != p[0] {
			return forbidAgent()
		}
		return h.ok(statusOK, a, true)
	}
	a, err := h.k.Agents.Get(ctx, p[0])
	if err != nil {
		return errorResponse(err)
	}
	return h.ok(statusOK, a, true)
}

type updateAgentBody struct {
	Name        *string              `json:"name"`
	Permissions *[]kavach.Permission `json:"permissions"`
	ExpiresAt   json.RawMessage      `json:"expiresAt"`
	Metadata    *map[string]any      `json:"metadata"`
}

func updateAgent(h *Handler, ctx context.Context, r *Request, c caller, p []string) *Response {
	if !c.admin {
		return forbidAgent()
	}
	var b updateAgentBody
	if resp := decode(r, &b); resp != nil {
		return resp
	}
	u := kavach.AgentUpdate{Name: b.Name, Permissions: b.Permissions, Metadata: b.Metadata}
	if string(b.ExpiresAt) == "null" {
		u.ClearExpiry = true
	} else {
		t, set, err := parseTime("expiresAt", b.ExpiresAt)
		if err != nil {
			return errorResponse(err)
		}
		if set {
			u.ExpiresAt = &t
		}
	}
	a, err := h.k.Agents.Update(ctx, p[0], u)
	if err != nil {
		return errorResponse(err)
	}
	return h.ok(statusOK, a, true)
}

func revokeAgent(h *Handler, ctx context.Context, r *Request, c caller, p []string) *Response {
	if !c.admin {
		return forbidAgent()
	}
	if err := h.k.Agents.Revoke(ctx, p[0]); err != nil {
		return errorResponse(err)
	}
	return noContent()
}

func rotateAgent(h *Handler, ctx context.Context, r *Request, c caller, p []string) *Response {
	if !c.admin {
		return forbidAgent()
	}
	a, err := h.k.Agents.Rotate(ctx, p[0])
	if err != nil {
		return errorResponse(err)
	}
	return h.ok(statusOK, a, true, noStore)
}

func query(r *Request) (url.Values, *Response) {
	q, err := url.ParseQuery(r.RawQuery)
	if err != nil {
		return nil, fail(codeBadRequest, "malformed query string: "+err.Error())
	}
	return q, nil
}

func first(q url.Values, names ...string) string {
	for _, n := range names {
		if v := q.Get(n); v != "" {
			return v
		}
	}
	return ""
}

func intParam(q url.Values, name string) (int, *Response) {
	s := q.Get(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, errorResponse(kavachValidation(name, "%q is not a non-negative integer", s))
	}
	return n, nil
}
