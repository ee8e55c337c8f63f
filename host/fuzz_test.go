package host_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/kavachdev/kavach/api"
)

// FuzzRawRequests sends arbitrary bytes to the fasthttp server on a loopback port. Whatever
// arrives, the server answers below 500 or closes the connection, within the deadline. An
// answer to a request it could not read (fastError), or a 401, never quotes the credential the
// request carried. Seeds put the marker SECRET where a credential goes; it is replaced by a
// key-shaped string before sending.
func FuzzRawRequests(f *testing.F) {
	for _, s := range []string{
		"GET /agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer SECRET\r\n\r\n",
		"POST /authorize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer SECRET\nSECRET\r\n\r\n",
		"POST /authorize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer SECRET\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"action\":\"read\",\"resource\":\"a:b\"}     ",
		"POST /agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer SECRET\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"GET /audit?limit=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer SECRET\r\nCookie: " + strings.Repeat("c", 9000) + "\r\n\r\n",
		"GET /agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer SECRET\r\nContent-Length: 12SECRET\r\n\r\n",
		"PO\x00ST /agents HTTP/1.1\r\nAuthorization: Bearer SECRET\r\n\r\n",
		"GET / HTTP/9.9\r\nAuthorization: SECRET\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	in := newInstance(f, api.Options{})
	addr := strings.TrimPrefix(serveFast(f, in.h), "http://")
	secret := "kvk_" + strings.Repeat("Q", 43)
	f.Fuzz(func(t *testing.T, raw []byte) {
		req := bytes.ReplaceAll(raw, []byte("SECRET"), []byte(secret))
		status, body, err := exchangeRaw(t, addr, req)
		if err != nil {
			if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("no answer and no close within 10 s to %q", req)
			}
			return // closed without an answer (an empty or cut-short request)
		}
		if status >= 500 {
			t.Fatalf("%d %s for %q", status, body, req)
		}
		var e api.ErrorBody
		if json.Unmarshal(body, &e) != nil || e.Error.Code == "" {
			return
		}
		unread := strings.HasPrefix(e.Error.Message, "malformed HTTP request") || e.Error.Code == "HEADERS_TOO_LARGE"
		if (unread || status == 401) && strings.Contains(string(body), secret) {
			t.Fatalf("the answer quotes the request's credential: %s", body)
		}
	})
}
