package e2e

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// faultProxy is a TCP proxy between tokenvendor and a peer that injects
// real network faults: it delays every chunk of bytes in both directions by
// a set latency, closes its port (new connections are refused, open ones
// are cut), and opens it again on the same address. It counts the
// connections it accepted and the occurrences of chosen byte patterns sent
// towards the peer, so a test can tell how many requests really reached it.
type faultProxy struct {
	addr   string // host:port, kept across down and up
	target string

	delay    atomic.Int64 // nanoseconds added to every chunk
	accepted atomic.Int64
	// Every stallEvery-th answer (a chunk from the peer) is held back
	// stall more, as a retransmit or a pause of the peer would.
	stallEvery, stall, answers atomic.Int64

	mu       sync.Mutex
	ln       net.Listener
	pairs    map[*proxyPair]struct{}
	patterns map[string]int // pattern -> occurrences sent towards the peer
	wg       sync.WaitGroup
}

// proxyPair is one proxied connection: the caller's side and the peer's.
type proxyPair struct {
	client, server net.Conn
	done           chan struct{}
	once           sync.Once
}

func (c *proxyPair) close() {
	c.once.Do(func() {
		close(c.done)
		c.client.Close()
		c.server.Close()
	})
}

// startProxy listens on a free loopback port and forwards to target. It is
// closed when the test ends.
func startProxy(t *testing.T, target string, patterns ...string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{addr: ln.Addr().String(), target: target, pairs: map[*proxyPair]struct{}{}, patterns: map[string]int{}}
	for _, pat := range patterns {
		p.patterns[pat] = 0
	}
	p.serve(ln)
	t.Cleanup(func() {
		p.down()
		p.wg.Wait()
	})
	return p
}

// url is the proxy's base URL for HTTP peers.
func (p *faultProxy) url() string { return "http://" + p.addr }

// setDelay sets the latency added to every chunk from now on.
func (p *faultProxy) setDelay(d time.Duration) { p.delay.Store(int64(d)) }

// setStall holds back every n-th answer from the peer by d more than the
// delay; n 0 stalls none.
func (p *faultProxy) setStall(n int64, d time.Duration) {
	p.stall.Store(int64(d))
	p.stallEvery.Store(n)
}

// held is the delay of the chunk just read: the delay in force, and a stall
// when it is an answer due for one.
func (p *faultProxy) held(towardsPeer bool) time.Duration {
	d := time.Duration(p.delay.Load())
	if n := p.stallEvery.Load(); !towardsPeer && n > 0 && p.answers.Add(1)%n == 0 {
		d += time.Duration(p.stall.Load())
	}
	return d
}

// connections is the number of connections accepted so far.
func (p *faultProxy) connections() int64 { return p.accepted.Load() }

// open is the number of proxied connections currently open.
func (p *faultProxy) open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pairs)
}

// count is how many times pattern was sent towards the peer so far.
func (p *faultProxy) count(pattern string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.patterns[pattern]
}

// down closes the port and cuts every open connection: from now on a
// connection attempt is refused, as when the peer's process is gone.
func (p *faultProxy) down() {
	p.mu.Lock()
	ln := p.ln
	p.ln = nil
	pairs := p.pairs
	p.pairs = map[*proxyPair]struct{}{}
	p.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	for c := range pairs {
		c.close()
	}
}

// up opens the port again on the same address.
func (p *faultProxy) up(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("proxy: listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

func (p *faultProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			p.accepted.Add(1)
			server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
			if err != nil {
				client.Close()
				continue
			}
			c := &proxyPair{client: client, server: server, done: make(chan struct{})}
			p.mu.Lock()
			if p.ln != ln { // closed meanwhile
				p.mu.Unlock()
				c.close()
				return
			}
			p.pairs[c] = struct{}{}
			p.mu.Unlock()
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.forward(c)
				p.mu.Lock()
				delete(p.pairs, c)
				p.mu.Unlock()
			}()
		}
	}()
}

// chunk is bytes read from one side, due to be written to the other.
type chunk struct {
	data []byte
	due  time.Time
	eof  bool // the sender closed its side after data
}

// forward copies both directions of c, each chunk held back by the delay
// in force when it was read, until both sides have closed or one fails.
func (p *faultProxy) forward(c *proxyPair) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(c, c.client, c.server, true) }()
	go func() { defer wg.Done(); p.pipe(c, c.server, c.client, false) }()
	wg.Wait()
	c.close()
}

// pipe reads from src without waiting, so a caller that hangs up is seen at
// once, and writes each chunk to dst when it falls due.
func (p *faultProxy) pipe(c *proxyPair, src, dst net.Conn, towardsPeer bool) {
	queue := make(chan chunk, 1024)
	go func() {
		defer close(queue)
		var tail []byte // the end of the previous chunk, for patterns split across reads
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				if towardsPeer {
					tail = p.countPatterns(tail, buf[:n])
				}
				select {
				case queue <- chunk{data: buf[:n], due: time.Now().Add(p.held(towardsPeer))}:
				case <-c.done:
					return
				}
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					select {
					case queue <- chunk{eof: true, due: time.Now().Add(time.Duration(p.delay.Load()))}:
					case <-c.done:
					}
				} else {
					c.close()
				}
				return
			}
		}
	}()
	for ch := range queue {
		if wait := time.Until(ch.due); wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-timer.C:
			case <-c.done:
				timer.Stop()
				return
			}
		}
		if len(ch.data) > 0 {
			if _, err := dst.Write(ch.data); err != nil {
				c.close()
				return
			}
		}
		if ch.eof {
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return
		}
	}
}

// countPatterns adds the patterns found in data (with the end of the
// previous chunk in front) and returns the new end to keep.
func (p *faultProxy) countPatterns(tail, data []byte) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	longest := 0
	buf := append(tail, data...)
	for pat := range p.patterns {
		// Only matches that end inside data are new.
		n := bytes.Count(buf, []byte(pat)) - bytes.Count(tail, []byte(pat))
		p.patterns[pat] += n
		longest = max(longest, len(pat))
	}
	if keep := longest - 1; keep > 0 && len(buf) > keep {
		return append([]byte(nil), buf[len(buf)-keep:]...)
	}
	return append([]byte(nil), buf...)
}
