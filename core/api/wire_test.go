package api

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestReadResponse: what the parser accepts and what it refuses, with what
// error. Refusals name what is wrong.
func TestReadResponse(t *testing.T) {
	const limit = 64
	for _, c := range []struct {
		name   string
		in     string
		status int
		body   string
		err    string // substring of the error; "" = success
		is     error  // the error must wrap this, when set
	}{
		{name: "content-length", in: "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}", status: 200, body: `{"a":1}`},
		{name: "content-length, bytes after it ignored", in: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}garbage", status: 200, body: "{}"},
		{name: "no content-length: body to EOF", in: "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n[1,2,3]\n", status: 200, body: "[1,2,3]\n"},
		{name: "HTTP/1.1 status line, bare LF, header name case", in: "HTTP/1.1 200 OK\ncontent-length: 2\n\n{}", status: 200, body: "{}"},
		{name: "no reason phrase", in: "HTTP/1.0 200\r\nContent-Length: 0\r\n\r\n", status: 200, body: ""},
		{name: "404 with a JSON error", in: "HTTP/1.0 404 Not Found\r\nContent-Length: 35\r\n\r\n{\"error\":\"no such\",\"code\":\"x\"}     ", status: 404, body: `{"error":"no such","code":"x"}     `},
		{name: "503 with a JSON error, no length", in: "HTTP/1.0 503 Service Unavailable\r\n\r\n{\"error\":\"not ready\",\"code\":\"not_ready\"}", status: 503, body: `{"error":"not ready","code":"not_ready"}`},
		{name: "identity transfer encoding", in: "HTTP/1.0 200 OK\r\nTransfer-Encoding: identity\r\n\r\nx", status: 200, body: "x"},
		{name: "repeated equal content-length", in: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", status: 200, body: "x"},
		{name: "204 has no body", in: "HTTP/1.0 204 No Content\r\n\r\nstray", status: 204, body: ""},
		{name: "body exactly at the limit", in: "HTTP/1.0 200 OK\r\n\r\n" + strings.Repeat("x", limit), status: 200, body: strings.Repeat("x", limit)},

		{name: "nothing at all", in: "", err: "connection closed before an answer", is: io.EOF},
		{name: "status line cut off", in: "HTTP/1.0 200 O", err: "cut off", is: io.ErrUnexpectedEOF},
		{name: "headers cut off", in: "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n", err: "before the end of the headers", is: io.ErrUnexpectedEOF},
		{name: "not HTTP", in: "SSH-2.0-OpenSSH_9.6\r\n\r\n", err: "malformed status line"},
		{name: "HTTP/2 status line", in: "HTTP/2 200 OK\r\n\r\n", err: "malformed status line"},
		{name: "two-digit status", in: "HTTP/1.0 20 OK\r\n\r\n", err: "malformed status code"},
		{name: "four-digit status", in: "HTTP/1.0 2000 OK\r\n\r\n", err: "malformed status code"},
		{name: "status below 100", in: "HTTP/1.0 099 Odd\r\n\r\n", err: "100 to 999"},
		{name: "letters in status", in: "HTTP/1.0 2x0 OK\r\n\r\n", err: "malformed status code"},
		{name: "header without colon", in: "HTTP/1.0 200 OK\r\nContent-Length 2\r\n\r\n{}", err: "malformed header line"},
		{name: "folded header", in: "HTTP/1.0 200 OK\r\nX: a\r\n b\r\n\r\n", err: "malformed header line"},
		{name: "space in header name", in: "HTTP/1.0 200 OK\r\nContent Length: 2\r\n\r\n{}", err: "malformed header line"},
		{name: "negative content-length", in: "HTTP/1.0 200 OK\r\nContent-Length: -1\r\n\r\n", err: "malformed Content-Length"},
		{name: "content-length with a sign", in: "HTTP/1.0 200 OK\r\nContent-Length: +2\r\n\r\n{}", err: "malformed Content-Length"},
		{name: "content-length overflowing int64", in: "HTTP/1.0 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", err: "malformed Content-Length"},
		{name: "two different content-lengths", in: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx", err: "two different Content-Length"},
		{name: "chunked", in: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", err: "Transfer-Encoding \"chunked\""},
		{name: "header block too large", in: "HTTP/1.0 200 OK\r\nX-Big: " + strings.Repeat("a", maxHeaderBytes) + "\r\n\r\n", err: "header block longer than 16384 bytes"},
		{name: "many small headers too large", in: "HTTP/1.0 200 OK\r\n" + strings.Repeat("X-A: b\r\n", maxHeaderBytes/8+1) + "\r\n", err: "header block longer"},
		{name: "status line without end too large", in: "HTTP/1.0 200 " + strings.Repeat("a", 2*maxHeaderBytes), err: "header block longer"},
		{name: "declared body too large", in: "HTTP/1.0 200 OK\r\nContent-Length: 65\r\n\r\n" + strings.Repeat("x", 65), err: "65 bytes is longer than the limit of 64"},
		{name: "body to EOF too large", in: "HTTP/1.0 200 OK\r\n\r\n" + strings.Repeat("x", limit+1), err: "longer than the limit of 64"},
		{name: "body shorter than content-length", in: "HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\n{}", err: "body ended after 2 of 10 bytes", is: io.ErrUnexpectedEOF},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body, err := readResponse(strings.NewReader(c.in), maxHeaderBytes, limit)
			if c.err == "" {
				if err != nil || status != c.status || string(body) != c.body {
					t.Fatalf("= %d %q %v, want %d %q", status, body, err, c.status, c.body)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("= %d %q %v, want an error containing %q", status, body, err, c.err)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("%v does not wrap %v", err, c.is)
			}
			if status != 0 || body != nil {
				t.Errorf("an error with a result: %d %q", status, body)
			}
		})
	}
}

// TestReadResponseLongHeaderLine: a header line longer than the reader's
// buffer is read whole, not cut at the buffer's size.
func TestReadResponseLongHeaderLine(t *testing.T) {
	in := "HTTP/1.0 200 OK\r\nX-Long: " + strings.Repeat("a", 10000) + "\r\nContent-Length: 2\r\n\r\n{}"
	status, body, err := readResponse(strings.NewReader(in), maxHeaderBytes, 64)
	if err != nil || status != 200 || string(body) != "{}" {
		t.Fatalf("= %d %q %v", status, body, err)
	}
}

// TestWriteRequest: the bytes on the wire.
func TestWriteRequest(t *testing.T) {
	var b bytes.Buffer
	if err := writeRequest(&b, "POST", "/v1/ipam/allocate", []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	want := "POST /v1/ipam/allocate HTTP/1.0\r\nHost: spiderpool-agent\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}"
	if b.String() != want {
		t.Errorf("POST:\n%q\nwant\n%q", b.String(), want)
	}
	b.Reset()
	if err := writeRequest(&b, "GET", "/v1/ipam/allocation?container_id=c&interface=eth0", nil); err != nil {
		t.Fatal(err)
	}
	if want := "GET /v1/ipam/allocation?container_id=c&interface=eth0 HTTP/1.0\r\nHost: spiderpool-agent\r\n\r\n"; b.String() != want {
		t.Errorf("GET:\n%q\nwant\n%q", b.String(), want)
	}
	for _, bad := range []struct{ method, target string }{
		{"GET", "/a b"}, {"GET", "/a\r\nX: y"}, {"GET", "relative"}, {"GET", ""}, {"G T", "/"}, {"", "/"},
	} {
		b.Reset()
		if err := writeRequest(&b, bad.method, bad.target, nil); err == nil || b.Len() != 0 {
			t.Errorf("writeRequest(%q, %q) = %v, wrote %q", bad.method, bad.target, err, b.String())
		}
	}
}

// FuzzReadResponse: whatever the peer sends, the parser returns (never
// panics), an error is a non-nil error with no result, and a success has a
// status of 100-999 and a body within the limit.
func FuzzReadResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}",
		"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n\r\n{\"error\":\"x\"}",
		"HTTP/1.1 404 Not Found\nContent-Length: 0\n\n",
		"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.0 204 No Content\r\n\r\n",
		"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nab",
		"",
		"\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	const limit = 1 << 10
	f.Fuzz(func(t *testing.T, in []byte) {
		status, body, err := readResponse(bytes.NewReader(in), 512, limit)
		if err != nil {
			if err.Error() == "" || status != 0 || body != nil {
				t.Fatalf("error %q with result %d %q", err, status, body)
			}
			return
		}
		if status < 100 || status > 999 || len(body) > limit {
			t.Fatalf("accepted status %d, body of %d bytes", status, len(body))
		}
	})
}
