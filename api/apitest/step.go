package apitest

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/kavachdev/kavach/api"
	"github.com/kavachdev/kavach/storage"
)

// StepDo returns a transport for Run that sends each request as a "handle" operation through the
// step protocol: step is api.Step natively or the WebAssembly module, and the needed batches run
// against db. now gives the envelope's time (Unix milliseconds); the seed of the n-th request is
// derived from n, so two hosts given the same requests make the same ids and tokens.
func StepDo(step api.StepFunc, db storage.DB, cfg api.StepConfig, now func() int64) func(Request) (Response, error) {
	n := 0
	return func(r Request) (Response, error) {
		n++
		path, query, _ := strings.Cut(r.Path, "?")
		headers := map[string]string{}
		for k, v := range r.Headers {
			headers[strings.ToLower(k)] = v
		}
		input, _ := json.Marshal(map[string]any{"method": r.Method, "path": path, "query": query, "headers": headers,
			"body": string(r.Body), "remoteIp": "127.0.0.1"})
		out, _, err := api.Drive(context.Background(), step, db, api.StepInput{Op: "handle", Input: input, Now: now(),
			Seed: api.NewSeed(sha256.Sum256(fmt.Appendf(nil, "apitest-%d", n))), Config: cfg}, 64)
		if err != nil {
			return Response{}, err
		}
		if out.Status != "done" {
			return Response{}, fmt.Errorf("step %s: %+v", out.Status, out.Error)
		}
		var ho struct {
			Status     int         `json:"status"`
			Headers    [][2]string `json:"headers"`
			Body       string      `json:"body"`
			BodyBase64 string      `json:"bodyBase64"`
		}
		if err := json.Unmarshal(out.Result, &ho); err != nil {
			return Response{}, err
		}
		resp := Response{Status: ho.Status, Headers: map[string]string{}, Body: []byte(ho.Body)}
		if ho.BodyBase64 != "" {
			if resp.Body, err = base64.StdEncoding.DecodeString(ho.BodyBase64); err != nil {
				return Response{}, err
			}
		}
		for _, h := range ho.Headers {
			resp.Headers[http.CanonicalHeaderKey(h[0])] = h[1]
		}
		return resp, nil
	}
}
