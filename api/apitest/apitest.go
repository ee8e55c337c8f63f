// Package apitest runs the API scenario, shared test data that exercises every route of the
// Kavach HTTP API, against any host: the fasthttp server, the net/http adapter, the WebAssembly
// module in wazero, or a JavaScript runtime. Hosts are compared response by response, so a route
// added to the scenario is covered on every host at once.
//
// The scenario (api/apitest/scenario.json, embedded as Scenario) is a list of steps. Each step
// is a request with optional placeholders {{name}} in its path, query and body, the expected
// status and error code, and captures that store values from the JSON response for later steps.
package apitest

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
)

// Scenario is the embedded scenario.json.
//
//go:embed scenario.json
var Scenario []byte

// Step is one request of the scenario.
type Step struct {
	Name   string `json:"name"`
	Method string `json:"method"`
	Path   string `json:"path"` // may contain a query and {{placeholders}}
	// Auth is "admin" (the admin API key), "none", "agent:<var>" (the agent token stored in
	// var) or "raw:<header value>".
	Auth        string            `json:"auth"`
	ContentType string            `json:"contentType"` // default application/json when there is a body
	Headers     map[string]string `json:"headers"`
	Body        json.RawMessage   `json:"body"`
	RawBody     *string           `json:"rawBody"` // a body sent as is (malformed JSON)
	Status      int               `json:"status"`
	Code        string            `json:"code"`    // the expected error code, if any
	Capture     map[string]string `json:"capture"` // var -> dotted path into the JSON response
	Contains    []string          `json:"contains"`
}

// Request is what a host must send.
type Request struct {
	Method  string
	Path    string // path and query, escaped
	Headers map[string]string
	Body    []byte
}

// Response is what a host answered.
type Response struct {
	Status  int
	Headers map[string]string // canonical names; hop-by-hop and Date headers removed
	Body    []byte
}

// Exchange is one step with its request and response.
type Exchange struct {
	Step     Step
	Request  Request
	Response Response
}

// Steps parses the scenario.
func Steps() ([]Step, error) {
	var steps []Step
	if err := json.Unmarshal(Scenario, &steps); err != nil {
		return nil, fmt.Errorf("apitest: scenario.json: %w", err)
	}
	return steps, nil
}

// Run plays the scenario through do. adminKey is sent for "admin" steps. Before each step,
// beforeStep (if not nil) is called with the step's index, so hosts can advance a shared
// deterministic clock. Run stops at the first step whose status, error code or expected content
// differs, and returns the exchanges so far with an error describing the mismatch.
func Run(do func(Request) (Response, error), adminKey string, beforeStep func(i int)) ([]Exchange, error) {
	steps, err := Steps()
	if err != nil {
		return nil, err
	}
	vars := map[string]string{"adminKey": adminKey}
	var out []Exchange
	for i, st := range steps {
		if beforeStep != nil {
			beforeStep(i)
		}
		req, err := build(st, vars)
		if err != nil {
			return out, fmt.Errorf("step %d (%s): %w", i, st.Name, err)
		}
		resp, err := do(req)
		if err != nil {
			return out, fmt.Errorf("step %d (%s): %w", i, st.Name, err)
		}
		out = append(out, Exchange{Step: st, Request: req, Response: resp})
		if err := check(st, resp, vars); err != nil {
			return out, fmt.Errorf("step %d (%s) %s %s: %w\nbody: %s", i, st.Name, req.Method, req.Path, err, resp.Body)
		}
	}
	return out, nil
}

func expand(s string, vars map[string]string) (string, error) {
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			return s, nil
		}
		j := strings.Index(s[i:], "}}")
		if j < 0 {
			return "", fmt.Errorf("unterminated placeholder in %q", s)
		}
		name := s[i+2 : i+j]
		v, ok := vars[name]
		if !ok {
			return "", fmt.Errorf("placeholder {{%s}} has no value yet", name)
		}
		s = s[:i] + v + s[i+j+2:]
	}
}

func build(st Step, vars map[string]string) (Request, error) {
	path, err := expand(st.Path, vars)
	if err != nil {
		return Request{}, err
	}
	req := Request{Method: st.Method, Path: path, Headers: map[string]string{"User-Agent": "kavach-apitest"}}
	for k, v := range st.Headers {
		if req.Headers[k], err = expand(v, vars); err != nil {
			return Request{}, err
		}
	}
	switch {
	case st.Auth == "admin":
		req.Headers["Authorization"] = "Bearer " + vars["adminKey"]
	case strings.HasPrefix(st.Auth, "agent:"):
		tok, ok := vars[strings.TrimPrefix(st.Auth, "agent:")]
		if !ok {
			return Request{}, fmt.Errorf("no token captured as %q", st.Auth)
		}
		req.Headers["Authorization"] = "Bearer " + tok
	case strings.HasPrefix(st.Auth, "raw:"):
		req.Headers["Authorization"] = strings.TrimPrefix(st.Auth, "raw:")
	case st.Auth == "none", st.Auth == "":
	default:
		return Request{}, fmt.Errorf("unknown auth %q", st.Auth)
	}
	var body string
	switch {
	case st.RawBody != nil:
		body = *st.RawBody
	case len(st.Body) > 0:
		body = string(st.Body)
	}
	if body != "" {
		if body, err = expand(body, vars); err != nil {
			return Request{}, err
		}
		req.Body = []byte(body)
		ct := st.ContentType
		if ct == "" {
			ct = "application/json"
		}
		req.Headers["Content-Type"] = ct
	}
	return req, nil
}

func check(st Step, resp Response, vars map[string]string) error {
	if resp.Status != st.Status {
		return fmt.Errorf("status %d, want %d", resp.Status, st.Status)
	}
	if st.Code != "" {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err := json.Unmarshal(resp.Body, &e); err != nil || e.Error.Code != st.Code || e.Error.Message == "" {
			return fmt.Errorf("want an error with code %s", st.Code)
		}
	}
	for _, c := range st.Contains {
		c, err := expand(c, vars)
		if err != nil {
			return err
		}
		if !strings.Contains(string(resp.Body), c) {
			return fmt.Errorf("body lacks %q", c)
		}
	}
	if len(st.Capture) == 0 {
		return nil
	}
	var v any
	if err := json.Unmarshal(resp.Body, &v); err != nil {
		return fmt.Errorf("capture from a body that is not JSON: %v", err)
	}
	names := make([]string, 0, len(st.Capture))
	for name := range st.Capture {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		val, err := lookup(v, st.Capture[name])
		if err != nil {
			return fmt.Errorf("capture %s: %w", name, err)
		}
		vars[name] = val
	}
	return nil
}

// lookup follows a dotted path ("data.id", "0.id") into decoded JSON.
func lookup(v any, path string) (string, error) {
	for _, part := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[part]
		case []any:
			var i int
			if _, err := fmt.Sscan(part, &i); err != nil || i < 0 || i >= len(x) {
				return "", fmt.Errorf("no element %q", part)
			}
			v = x[i]
		default:
			return "", fmt.Errorf("cannot take %q of %T", part, v)
		}
	}
	switch x := v.(type) {
	case string:
		return x, nil
	case nil:
		return "", fmt.Errorf("%s is missing", path)
	default:
		b, _ := json.Marshal(x)
		return string(b), nil
	}
}

// Diff compares two runs exchange by exchange and describes the first difference.
func Diff(a, b []Exchange) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d exchanges vs %d", len(a), len(b))
	}
	for i := range a {
		ra, rb := a[i].Response, b[i].Response
		if ra.Status != rb.Status {
			return fmt.Errorf("step %d (%s): status %d vs %d", i, a[i].Step.Name, ra.Status, rb.Status)
		}
		if fmt.Sprint(ra.Headers) != fmt.Sprint(rb.Headers) {
			return fmt.Errorf("step %d (%s): headers\n%v\nvs\n%v", i, a[i].Step.Name, ra.Headers, rb.Headers)
		}
		if string(ra.Body) != string(rb.Body) {
			return fmt.Errorf("step %d (%s): body\n%s\nvs\n%s", i, a[i].Step.Name, ra.Body, rb.Body)
		}
	}
	return nil
}

// HTTPDo returns a transport for Run that sends requests to baseURL with client.
func HTTPDo(client *http.Client, baseURL string) func(Request) (Response, error) {
	return func(r Request) (Response, error) {
		req, err := http.NewRequest(r.Method, baseURL+r.Path, bytes.NewReader(r.Body))
		if err != nil {
			return Response{}, err
		}
		for k, v := range r.Headers {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			return Response{}, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return Response{}, err
		}
		return Response{Status: resp.StatusCode, Headers: headers(resp.Header), Body: body}, nil
	}
}

// headers keeps the headers a host chooses, dropping those that belong to the connection.
func headers(h http.Header) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		switch k {
		case "Date", "Connection", "Keep-Alive", "Transfer-Encoding":
			continue
		}
		out[k] = strings.Join(v, ", ")
	}
	return out
}
