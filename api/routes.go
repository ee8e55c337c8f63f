package api

import (
	"context"
	"slices"
	"strings"
)

type handlerFunc func(h *Handler, ctx context.Context, r *Request, c caller, params []string) *Response

// route is one path pattern; "" segments are parameters.
type route struct {
	pattern []string
	methods map[string]handlerFunc
	public  bool
}

func (rt *route) allow() string {
	ms := make([]string, 0, len(rt.methods))
	for m := range rt.methods {
		ms = append(ms, m)
	}
	slices.Sort(ms)
	return strings.Join(ms, ", ")
}

// routes is the API. Literal segments are listed before parameter segments at the same depth,
// and match takes the first route that fits.
var routes = []*route{
	{pattern: []string{"health"}, public: true, methods: map[string]handlerFunc{"GET": health}},
	{pattern: []string{"agents"}, methods: map[string]handlerFunc{"GET": listAgents, "POST": createAgent}},
	{pattern: []string{"agents", ""}, methods: map[string]handlerFunc{"GET": getAgent, "PATCH": updateAgent, "DELETE": revokeAgent}},
	{pattern: []string{"agents", "", "rotate"}, methods: map[string]handlerFunc{"POST": rotateAgent}},
	{pattern: []string{"agents", "", "authorize"}, methods: map[string]handlerFunc{"POST": authorizeAgent}},
	{pattern: []string{"authorize"}, methods: map[string]handlerFunc{"POST": authorize}},
	{pattern: []string{"authorize", "token"}, methods: map[string]handlerFunc{"POST": authorizeByToken}},
	{pattern: []string{"audit"}, methods: map[string]handlerFunc{"GET": queryAudit}},
	{pattern: []string{"audit", "export"}, methods: map[string]handlerFunc{"GET": exportAudit}},
	{pattern: []string{"dashboard", "stats"}, methods: map[string]handlerFunc{"GET": stats}},
	{pattern: []string{"dashboard", "agents"}, methods: map[string]handlerFunc{"GET": listAgents}},
	{pattern: []string{"dashboard", "audit"}, methods: map[string]handlerFunc{"GET": queryAudit}},
}

// match finds the route for segs and returns it with the parameter values.
func match(segs []string) (*route, []string) {
	for _, rt := range routes {
		if len(rt.pattern) != len(segs) {
			continue
		}
		ok := true
		for i, p := range rt.pattern {
			if p != "" && p != segs[i] {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		var params []string
		for i, p := range rt.pattern {
			if p == "" {
				params = append(params, segs[i])
			}
		}
		return rt, params
	}
	return nil, nil
}
