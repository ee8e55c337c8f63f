package api

import (
	"context"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/kavachdev/kavach"
)

func auditFilter(q url.Values) (kavach.AuditFilter, *Response) {
	f := kavach.AuditFilter{AgentID: q.Get("agentId"), UserID: q.Get("userId"), Result: q.Get("result")}
	for _, name := range []string{"since", "until"} {
		s := q.Get(name)
		if s == "" {
			continue
		}
		t, ok := kavach.ParseTime(s)
		if !ok {
			return f, errorResponse(kavachValidation(name, "%q is not a date: use ISO 8601 or milliseconds since the epoch", s))
		}
		if name == "since" {
			f.Since = t
		} else {
			f.Until = t
		}
	}
	if a := q.Get("actions"); a != "" {
		for _, s := range strings.Split(a, ",") {
			if s = strings.TrimSpace(s); s != "" {
				f.Actions = append(f.Actions, s)
			}
		}
	}
	var resp *Response
	if f.Limit, resp = intParam(q, "limit"); resp != nil {
		return f, resp
	}
	if f.Offset, resp = intParam(q, "offset"); resp != nil {
		return f, resp
	}
	return f, nil
}

func queryAudit(h *Handler, ctx context.Context, r *Request, c caller, _ []string) *Response {
	if !c.admin {
		return forbidAgent()
	}
	q, resp := query(r)
	if resp != nil {
		return resp
	}
	f, resp := auditFilter(q)
	if resp != nil {
		return resp
	}
	entries, err := h.k.Audit.Query(ctx, f)
	if err != nil {
		return errorResponse(err)
	}
	return h.ok(statusOK, entries, true)
}

// exportAudit streams the whole matching log as JSON or CSV (never enveloped).
func exportAudit(h *Handler, ctx context.Context, r *Request, c caller, _ []string) *Response {
	if !c.admin {
		return forbidAgent()
	}
	q, resp := query(r)
	if resp != nil {
		return resp
	}
	f, resp := auditFilter(q)
	if resp != nil {
		return resp
	}
	f.Limit, f.Offset = 0, 0
	format := kavach.ExportFormat(q.Get("format"))
	if format == "" {
		format = kavach.ExportJSON
	}
	ct := "application/json"
	switch format {
	case kavach.ExportJSON:
	case kavach.ExportCSV:
		ct = "text/csv; charset=utf-8"
	default:
		return errorResponse(kavachValidation("format", "must be \"json\" or \"csv\""))
	}
	// Check the filter before the status line is sent; errors after that truncate the body.
	if err := f.Validate(); err != nil {
		return errorResponse(err)
	}
	return &Response{
		Status: statusOK,
		Header: []Field{{"Content-Type", ct}, {"Content-Disposition", `attachment; filename="audit-export.` + string(format) + `"`}},
		Stream: func(w io.Writer) error {
			// The request may be gone by the time the body is written: export on our own context.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
			defer cancel()
			err := h.k.Audit.Export(ctx, f, format, w)
			if err != nil {
				h.log.Error("kavach: audit export failed mid-stream; the body is truncated", "err", err)
			}
			return err
		},
	}
}

func stats(h *Handler, ctx context.Context, r *Request, c caller, _ []string) *Response {
	if !c.admin {
		return forbidAgent()
	}
	s, err := h.k.Stats(ctx)
	if err != nil {
		return errorResponse(err)
	}
	return h.ok(statusOK, s, true)
}

func health(h *Handler, ctx context.Context, r *Request, c caller, _ []string) *Response {
	if err := h.k.Ping(ctx); err != nil {
		return errorResponse(err)
	}
	return h.ok(statusOK, map[string]string{"status": "ok"}, false)
}
