// Package gcptest runs fake-gcs-server in-process behind a fault injector, for tests and
// benchmarks of code that uses the real cloud.google.com/go/storage client.
//
// The fake server is built without a listener and served by an httptest server, so every
// request passes through the injector first. PublicHost is "127.0.0.1": XML-API downloads are
// routed by Host, and without it every read would be a 404 (toolchain.md §4.1).
package gcptest

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

// Action is what the injector does with one download request.
type Action int

const (
	Pass      Action = iota // serve the object
	Status503               // 503 Service Unavailable
	Status429               // 429 Too Many Requests
	Status500               // 500 Internal Server Error
	ResetBody               // send the headers and half the body, then reset the connection (RST)
	Truncate                // send the headers and half the body, then close the connection (FIN)
	Corrupt                 // serve the object with one byte flipped (headers, CRC32C included, intact)
	Stall                   // wait for StallFor (or until the client gives up) before answering
	StallBody               // send the headers and half the body, then wait like Stall
)

// Fault is the script for one object key: Seq is applied to its first len(Seq) download
// requests, Then to every later one.
type Fault struct {
	Seq  []Action
	Then Action
	// RetryAfter, when set, is sent as the Retry-After header of 429 and 503 answers
	// (delay-seconds or an HTTP-date, verbatim).
	RetryAfter string
}

// Server is a fake GCS with a fault-injecting front.
type Server struct {
	Fake *fakestorage.Server
	HTTP *httptest.Server
	// StallFor is how long Stall and StallBody wait (default 30 s).
	StallFor time.Duration
	// Latency delays every download request before it is answered: a stand-in for the
	// round trip and first-byte time of a remote store. Set it before the first request.
	Latency time.Duration

	mu       sync.Mutex
	faults   map[string]*Fault
	requests map[string]int // download requests per object key
	total    int
}

// New starts the server with the given objects.
func New(objects []fakestorage.Object) (*Server, error) {
	fake, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		InitialObjects: objects,
		NoListener:     true,
		PublicHost:     "127.0.0.1",
		Scheme:         "http",
		Writer:         discard{},
	})
	if err != nil {
		return nil, fmt.Errorf("start fake-gcs-server: %w", err)
	}
	s := &Server{Fake: fake, StallFor: 30 * time.Second, faults: map[string]*Fault{}, requests: map[string]int{}}
	s.HTTP = httptest.NewServer(http.HandlerFunc(s.serve))
	return s, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// URL is the server's base URL (http://127.0.0.1:port).
func (s *Server) URL() string { return s.HTTP.URL }

// Close stops the server. Stalled handlers end when their clients go away.
func (s *Server) Close() {
	s.HTTP.CloseClientConnections()
	s.HTTP.Close()
	s.Fake.Stop()
}

// SetFault scripts the download requests for key (the object name, without the bucket).
func (s *Server) SetFault(key string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[key] = &f
	s.requests[key] = 0
}

// Requests is the number of download requests seen for key.
func (s *Server) Requests(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[key]
}

// TotalRequests is the number of download requests seen for all keys.
func (s *Server) TotalRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// ResetCounts zeroes the request counters (faults keep their position).
func (s *Server) ResetCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total = 0
	for k := range s.requests {
		s.requests[k] = 0
	}
}

// downloadKey returns the object key of a media download (XML GET /bucket/key, or JSON
// GET .../o/key?alt=media), or "".
func downloadKey(r *http.Request) string {
	if r.Method != http.MethodGet {
		return ""
	}
	p := r.URL.Path
	if i := strings.Index(p, "/o/"); i >= 0 && strings.Contains(p, "/storage/v1/b/") {
		if r.URL.Query().Get("alt") != "media" {
			return ""
		}
		return p[i+3:]
	}
	if strings.HasPrefix(p, "/storage/") || strings.HasPrefix(p, "/upload/") || strings.HasPrefix(p, "/_internal/") {
		return ""
	}
	parts := strings.SplitN(strings.TrimPrefix(p, "/"), "/", 2)
	if len(parts) != 2 {
		return ""
	}
	return parts[1]
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	key := downloadKey(r)
	if key == "" {
		s.Fake.HTTPHandler().ServeHTTP(w, r)
		return
	}
	s.mu.Lock()
	n := s.requests[key]
	s.requests[key] = n + 1
	s.total++
	act, retryAfter := Pass, ""
	if f := s.faults[key]; f != nil {
		act, retryAfter = f.Then, f.RetryAfter
		if n < len(f.Seq) {
			act = f.Seq[n]
		}
	}
	s.mu.Unlock()

	if s.Latency > 0 {
		select {
		case <-time.After(s.Latency):
		case <-r.Context().Done():
			return
		}
	}
	switch act {
	case Pass:
		s.Fake.HTTPHandler().ServeHTTP(w, r)
	case Status503, Status429, Status500:
		code := map[Action]int{Status503: 503, Status429: 429, Status500: 500}[act]
		w.Header().Set("Content-Type", "application/xml")
		if retryAfter != "" && (code == 429 || code == 503) {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, "<?xml version='1.0' encoding='UTF-8'?><Error><Code>Injected</Code><Message>injected %d</Message></Error>", code)
	case Stall:
		select {
		case <-time.After(s.StallFor):
			s.Fake.HTTPHandler().ServeHTTP(w, r)
		case <-r.Context().Done():
		}
	case Corrupt:
		rec := httptest.NewRecorder()
		s.Fake.HTTPHandler().ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if len(body) > 0 {
			body[len(body)/2] ^= 0x5a
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(body)
	case ResetBody, Truncate, StallBody:
		s.halfBody(w, r, act)
	}
}

// halfBody sends the real headers (full Content-Length) and half the body over a hijacked
// connection, then resets, closes or stalls it.
func (s *Server) halfBody(w http.ResponseWriter, r *http.Request, act Action) {
	rec := httptest.NewRecorder()
	s.Fake.HTTPHandler().ServeHTTP(rec, r)
	conn, bw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "hijack: "+err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	writeHead(bw.Writer, rec)
	body := rec.Body.Bytes()
	bw.Write(body[:len(body)/2])
	bw.Flush()
	switch act {
	case ResetBody:
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetLinger(0) // close with RST instead of FIN
		}
	case StallBody:
		// Wait until the stall ends or the client closes its side.
		done := make(chan struct{})
		go func() {
			buf := make([]byte, 1)
			conn.Read(buf)
			close(done)
		}()
		select {
		case <-time.After(s.StallFor):
		case <-done:
		}
	}
}

func writeHead(w *bufio.Writer, rec *httptest.ResponseRecorder) {
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\n", rec.Code, http.StatusText(rec.Code))
	h := rec.Header().Clone()
	h.Set("Content-Length", fmt.Sprint(rec.Body.Len()))
	h.Set("Connection", "close")
	h.Write(w)
	w.WriteString("\r\n")
}
