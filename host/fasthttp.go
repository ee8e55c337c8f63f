// Package host holds the native hosts of the Kavach API: a fasthttp server and a net/http
// adapter. Both translate to and from the transport-neutral api package, so they serve the same
// routes, statuses, headers and bodies.
package host

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/kavachdev/kavach/api"
)

// NewServer returns a fasthttp server that serves h. Bodies larger than the API's limit are
// refused with the API's own 413 JSON error.
func NewServer(h *api.Handler) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                      func(ctx *fasthttp.RequestCtx) { serveFast(h, ctx) },
		ErrorHandler:                 fastError,
		NoDefaultServerHeader:        true,
		NoDefaultDate:                true,
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true,
		MaxRequestBodySize:           h.MaxBodyBytes(),
		ReadBufferSize:               readBufferSize,
		ReadTimeout:                  30 * time.Second,
		WriteTimeout:                 30 * time.Minute, // audit exports stream for a while
		IdleTimeout:                  2 * time.Minute,
		CloseOnShutdown:              true,
		Logger:                       slogPrintf{},
	}
}

// readBufferSize bounds a request's line and headers, as nginx's default large header buffer
// does; fasthttp's own default (4 KiB) refused requests with a few long cookies or tokens.
const readBufferSize = 8 << 10

// slogPrintf sends fasthttp's own messages (connection errors, mostly) to slog at debug level:
// requests it rejects are already answered with a JSON error.
type slogPrintf struct{}

func (slogPrintf) Printf(format string, args ...any) {
	for i, a := range args {
		if err, ok := a.(error); ok {
			args[i] = requestFault(err) // never a request's bytes in a log line
		}
	}
	slog.Debug(fmt.Sprintf(format, args...))
}

type fastHeader struct{ h *fasthttp.RequestHeader }

func (f fastHeader) Get(name string) string { return string(f.h.Peek(name)) }

func serveFast(h *api.Handler, ctx *fasthttp.RequestCtx) {
	req := &api.Request{
		Method:   string(ctx.Method()),
		Path:     string(ctx.URI().PathOriginal()),
		RawQuery: string(ctx.URI().QueryString()),
		Header:   fastHeader{&ctx.Request.Header},
		Body:     ctx.PostBody(),
		RemoteIP: ctx.RemoteIP().String(),
	}
	writeFast(ctx, h.Serve(ctx, req))
}

func writeFast(ctx *fasthttp.RequestCtx, resp *api.Response) {
	ctx.SetStatusCode(resp.Status)
	for _, f := range resp.Header {
		ctx.Response.Header.Set(f.Name, f.Value)
	}
	if resp.Stream != nil {
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			resp.Stream(w)
			w.Flush()
		})
		return
	}
	ctx.SetBody(resp.Body)
}

// fastError answers requests fasthttp rejects before the handler runs.
func fastError(ctx *fasthttp.RequestCtx, err error) {
	var resp *api.Response
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		resp = api.Fail(http.StatusRequestEntityTooLarge, "request body is larger than the server accepts")
	case errors.As(err, &small):
		resp = api.Fail(http.StatusRequestHeaderFieldsTooLarge, "request line and headers are larger than the server accepts ("+strconv.Itoa(readBufferSize)+" bytes)")
	default:
		resp = api.Fail(http.StatusBadRequest, "malformed HTTP request: "+requestFault(err))
	}
	writeFast(ctx, resp)
}

// requestFault names what is wrong with a request fasthttp could not read, without quoting
// it. fasthttp's errors quote the bytes they stopped at (a header line, or the whole buffer),
// which carry credentials: echoed in the answer or written to a log, an Authorization header
// would leak with them. Only the leading description is kept: "malformed mime header: missing
// colon: \"Bearer kv_…\"" becomes "malformed mime header".
func requestFault(err error) string {
	msg := err.Error()
	for _, prefix := range []string{"error when reading request headers: ", "fasthttp: "} {
		msg = strings.TrimPrefix(msg, prefix)
	}
	if i := strings.IndexAny(msg, ":\"'(%"); i >= 0 {
		msg = msg[:i]
	}
	if msg = strings.TrimSpace(msg); msg == "" {
		return "unreadable request"
	}
	return msg
}

// Shutdown stops srv gracefully within timeout.
func Shutdown(srv *fasthttp.Server, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return srv.ShutdownWithContext(ctx)
}
