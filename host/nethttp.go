package host

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"

	"github.com/kavachdev/kavach/api"
)

// HTTPHandler adapts h to net/http. It answers with the same bytes as the fasthttp server: the
// API's status, headers and body, with Content-Length and no Date header.
func HTTPHandler(h *api.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(h.MaxBodyBytes())))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				writeHTTP(w, api.Fail(http.StatusRequestEntityTooLarge, "request body is larger than the server accepts"))
			} else {
				writeHTTP(w, api.Fail(http.StatusBadRequest, "could not read the request body: "+err.Error()))
			}
			return
		}
		ip, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			ip = r.RemoteAddr
		}
		writeHTTP(w, h.Serve(r.Context(), &api.Request{
			Method:   r.Method,
			Path:     r.URL.EscapedPath(),
			RawQuery: r.URL.RawQuery,
			Header:   httpHeader(r.Header),
			Body:     body,
			RemoteIP: ip,
		}))
	})
}

type httpHeader http.Header

func (h httpHeader) Get(name string) string { return http.Header(h).Get(name) }

func writeHTTP(w http.ResponseWriter, resp *api.Response) {
	hdr := w.Header()
	hdr["Date"] = nil // fasthttp sends none either
	for _, f := range resp.Header {
		hdr.Set(f.Name, f.Value)
	}
	if resp.Stream != nil {
		w.WriteHeader(resp.Status)
		resp.Stream(w)
		return
	}
	if resp.Status != http.StatusNoContent && resp.Status != http.StatusNotModified {
		hdr.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	}
	w.WriteHeader(resp.Status)
	w.Write(resp.Body)
}
