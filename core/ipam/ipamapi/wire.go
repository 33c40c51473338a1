package ipamapi

// A minimal HTTP/1.0 client for the agent's control socket.
//
// The CNI plugin links this package and is exec'd once per workload
// interface, so what it links is paid for on every container start and in
// the deb's size budget. net/http drags in crypto/tls, x509,
// compress/gzip, HTTP/2 and IDNA: about 5 MB of the 6.7 MB the plugin used
// to be. This file speaks just enough HTTP to talk to the agent: one request
// per connection, an answer framed by Content-Length or by the end of the
// connection.
//
// Why HTTP/1.0 is enough (checked against Go 1.26's net/http/server.go,
// (*chunkWriter).writeHeader): for a request that is not
// ProtoAtLeast(1, 1) the server never chunks - with a Content-Length it
// sends the body as is, and without one it sets closeAfterReply ("HTTP
// version < 1.1: cannot do chunked transfer encoding ... signal EOF by
// closing connection") - and since we send no "Connection: keep-alive", the
// branch `!w.req.ProtoAtLeast(1, 1) || w.wantsClose` sets closeAfterReply
// as well. So the body ends at Content-Length or at EOF, and a
// Transfer-Encoding other than identity in an answer is a peer we do not
// understand: refused, never guessed at.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Status codes the package acts on (net/http's values; it is not linked).
const (
	statusOK                 = 200
	statusNotFound           = 404
	statusServiceUnavailable = 503
)

// maxHeaderBytes bounds the status line and header block of an answer. The
// agent's answers carry a handful of short headers.
const maxHeaderBytes = 16 << 10

// errHeaderTooLarge: the header block did not end within maxHeaderBytes.
var errHeaderTooLarge = fmt.Errorf("header block longer than %d bytes", maxHeaderBytes)

// writeRequest sends one HTTP/1.0 request. Host is required by nothing in
// HTTP/1.0 but is sent so that the server's logs and any middleware see
// what an HTTP/1.1 client would send. body nil means no body; a body is
// JSON. The request goes out in one write.
func writeRequest(w io.Writer, method, target string, body []byte) error {
	if !validToken(method) {
		return fmt.Errorf("request method %q is not an HTTP token", method)
	}
	if len(target) == 0 || target[0] != '/' || strings.ContainsAny(target, " \r\n\x00") {
		return fmt.Errorf("request target %q must start with / and hold no spaces or line breaks", target)
	}
	var b bytes.Buffer
	b.Grow(len(method) + len(target) + 96 + len(body))
	b.WriteString(method)
	b.WriteByte(' ')
	b.WriteString(target)
	b.WriteString(" HTTP/1.0\r\nHost: spiderpool-agent\r\n")
	if body != nil {
		b.WriteString("Content-Type: application/json\r\nContent-Length: ")
		b.WriteString(strconv.Itoa(len(body)))
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	b.Write(body)
	_, err := w.Write(b.Bytes())
	return err
}

// readResponse reads one answer: its status code and body. The status line
// and headers together may take maxHeader bytes, the body maxBody. It reads
// the body to Content-Length when given, else to EOF; an answer that ends
// early is an error wrapping io.ErrUnexpectedEOF, one with no byte at all
// an error wrapping io.EOF (the peer closed without answering). Every other
// malformed answer is an error saying what is wrong; nothing panics.
func readResponse(r io.Reader, maxHeader int, maxBody int64) (status int, body []byte, err error) {
	br := bufio.NewReaderSize(r, 4096)
	budget := maxHeader
	line, err := readLine(br, &budget)
	if err != nil {
		if err == io.EOF {
			return 0, nil, fmt.Errorf("connection closed before an answer: %w", io.EOF)
		}
		return 0, nil, fmt.Errorf("status line: %w", err)
	}
	status, err = parseStatusLine(line)
	if err != nil {
		return 0, nil, err
	}
	length := int64(-1)
	for {
		line, err := readLine(br, &budget)
		if err == io.EOF {
			err = fmt.Errorf("connection closed before the end of the headers: %w", io.ErrUnexpectedEOF)
		}
		if err != nil {
			return 0, nil, fmt.Errorf("headers: %w", err)
		}
		if len(line) == 0 {
			break
		}
		name, value, err := parseHeader(line)
		if err != nil {
			return 0, nil, err
		}
		switch {
		case asciiEqualFold(name, "Content-Length"):
			n, err := parseContentLength(value)
			if err != nil {
				return 0, nil, err
			}
			if length >= 0 && n != length {
				return 0, nil, fmt.Errorf("two different Content-Length headers: %d and %d", length, n)
			}
			length = n
		case asciiEqualFold(name, "Transfer-Encoding"):
			if !asciiEqualFold(value, "identity") {
				return 0, nil, fmt.Errorf("Transfer-Encoding %q in an answer to HTTP/1.0 is not supported", value)
			}
		}
	}
	// 1xx, 204 and 304 never carry a body (RFC 9112 section 6.3). A 1xx is
	// returned as the answer rather than skipped: we send no Expect, and
	// the agent's handlers send no interim answers.
	if status < 200 || status == 204 || status == 304 {
		return status, nil, nil
	}
	if length > maxBody {
		return 0, nil, fmt.Errorf("answer body of %d bytes is longer than the limit of %d", length, maxBody)
	}
	if length >= 0 {
		// Read as it comes rather than allocating length up front.
		body, err = io.ReadAll(io.LimitReader(br, length))
		if err != nil {
			return 0, nil, fmt.Errorf("body: %w", err)
		}
		if int64(len(body)) < length {
			return 0, nil, fmt.Errorf("body ended after %d of %d bytes: %w", len(body), length, io.ErrUnexpectedEOF)
		}
		return status, body, nil
	}
	body, err = io.ReadAll(io.LimitReader(br, maxBody+1))
	if err != nil {
		return 0, nil, fmt.Errorf("body: %w", err)
	}
	if int64(len(body)) > maxBody {
		return 0, nil, fmt.Errorf("answer body longer than the limit of %d bytes", maxBody)
	}
	return status, body, nil
}

// readLine returns the next line without its LF or CRLF, charging what it
// consumes to budget. A line that is cut off by EOF is io.ErrUnexpectedEOF;
// EOF before any byte of the line is io.EOF.
func readLine(br *bufio.Reader, budget *int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		*budget -= len(frag)
		if *budget < 0 {
			return nil, errHeaderTooLarge
		}
		line = append(line, frag...)
		switch {
		case err == nil:
			line = line[:len(line)-1]
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(line) == 0 {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("line %q cut off: %w", clip(line), io.ErrUnexpectedEOF)
		default:
			return nil, err
		}
	}
}

// parseStatusLine reads "HTTP/1.x SSS reason" (the reason may be empty or
// absent). Go's server answers an HTTP/1.0 request with HTTP/1.0, but any
// HTTP/1 minor version is accepted.
func parseStatusLine(line []byte) (int, error) {
	const proto = "HTTP/1."
	if len(line) < len(proto)+5 || string(line[:len(proto)]) != proto ||
		!isDigit(line[len(proto)]) || line[len(proto)+1] != ' ' {
		return 0, fmt.Errorf("malformed status line %q: want \"HTTP/1.x CODE REASON\"", clip(line))
	}
	code := line[len(proto)+2:]
	if len(code) > 3 && code[3] != ' ' || len(code) < 3 {
		return 0, fmt.Errorf("malformed status code in %q: want three digits", clip(line))
	}
	code = code[:3]
	if !isDigit(code[0]) || !isDigit(code[1]) || !isDigit(code[2]) || code[0] == '0' {
		return 0, fmt.Errorf("malformed status code in %q: want three digits, 100 to 999", clip(line))
	}
	return int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0'), nil
}

// parseHeader splits "Name: value". Obsolete line folding (a line that
// starts with a space or tab) is refused, as RFC 9112 section 5.2 allows.
func parseHeader(line []byte) (name, value string, err error) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 || !validToken(string(line[:i])) {
		return "", "", fmt.Errorf("malformed header line %q: want \"Name: value\"", clip(line))
	}
	return string(line[:i]), string(bytes.Trim(line[i+1:], " \t")), nil
}

// parseContentLength accepts decimal digits only (no sign, no spaces inside),
// as RFC 9110 section 8.6 defines it.
func parseContentLength(v string) (int64, error) {
	if v == "" || len(v) > 18 {
		return 0, fmt.Errorf("malformed Content-Length %q", clipString(v))
	}
	var n int64
	for i := 0; i < len(v); i++ {
		if !isDigit(v[i]) {
			return 0, fmt.Errorf("malformed Content-Length %q", clipString(v))
		}
		n = n*10 + int64(v[i]-'0')
	}
	return n, nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// validToken: an RFC 9110 token (method and header names).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', isDigit(c):
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// clip shortens what an error quotes from the peer.
func clip(b []byte) []byte {
	if len(b) > 64 {
		return append(b[:64:64], "..."...)
	}
	return b
}

func clipString(s string) string { return string(clip([]byte(s))) }
