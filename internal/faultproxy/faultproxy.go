// Package faultproxy is a TCP proxy that injects network faults between a
// Baton instance and a service: a silent blackhole (no FIN, no RST: bytes
// simply stop moving, as in a network partition), a reset of every
// connection, and refusal of new connections. Tests and the chaos tool put
// one in front of RabbitMQ or MongoDB per instance.
package faultproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy forwards connections from its listen address to a target.
type Proxy struct {
	ln     net.Listener
	target string

	mu        sync.Mutex
	cond      *sync.Cond
	blackhole bool
	refuse    bool
	closed    bool
	conns     map[net.Conn]struct{}

	wg sync.WaitGroup
}

// Start listens on 127.0.0.1 at a free port and forwards to target.
func Start(target string) (*Proxy, error) {
	return StartOn("127.0.0.1:0", target)
}

// StartOn listens on addr and forwards to target.
func StartOn(addr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's listen address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Blackhole stops all traffic silently. Established connections stay open
// but no byte moves in either direction; new connections are accepted and
// then hang.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blackhole = true
}

// Restore lets traffic flow again. Bytes held during the blackhole are
// delivered, as TCP would after a partition heals; endpoints that gave up
// meanwhile have closed their side.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blackhole, p.refuse = false, false
	p.cond.Broadcast()
}

// Refuse closes every connection and refuses new ones until Restore: the
// service looks down.
func (p *Proxy) Refuse() {
	p.mu.Lock()
	p.refuse = true
	p.mu.Unlock()
	p.Reset()
}

// Reset closes every established connection at once.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST rather than FIN
		}
		_ = c.Close()
		delete(p.conns, c)
	}
	p.cond.Broadcast()
}

// Blackholed reports whether traffic is currently held.
func (p *Proxy) Blackholed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.blackhole
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed, p.blackhole = true, false
	p.cond.Broadcast()
	p.mu.Unlock()
	err := p.ln.Close()
	p.Reset()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.refuse || p.closed {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.track(c)
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(c)
	}
}

// track and untrack must be called with p.mu held.
func (p *Proxy) track(c net.Conn)   { p.conns[c] = struct{}{} }
func (p *Proxy) untrack(c net.Conn) { delete(p.conns, c) }

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	if !p.waitFlow(client) {
		p.drop(client)
		return
	}
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		p.drop(client)
		return
	}
	p.mu.Lock()
	p.track(server)
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pump(server, client) }()
	go func() { defer wg.Done(); p.pump(client, server) }()
	wg.Wait()
	p.drop(client)
	p.drop(server)
}

func (p *Proxy) drop(c net.Conn) {
	p.mu.Lock()
	p.untrack(c)
	p.mu.Unlock()
	_ = c.Close()
}

// waitFlow blocks while traffic is blackholed. It reports false when the
// connection should be dropped instead.
func (p *Proxy) waitFlow(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.blackhole && !p.closed {
		if _, ok := p.conns[c]; !ok {
			return false
		}
		p.cond.Wait()
	}
	_, ok := p.conns[c]
	return ok && !p.closed && !p.refuse
}

func (p *Proxy) pump(dst, src net.Conn) {
	buf := make([]byte, 32*1024)
	for {
		if !p.waitFlow(src) {
			break
		}
		n, err := src.Read(buf)
		if n > 0 {
			// A read that was under way when the blackhole began is held
			// back until it ends.
			if !p.waitFlow(src) {
				break
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			if tc, ok := dst.(*net.TCPConn); ok && errors.Is(err, io.EOF) {
				// Half-close: the other direction may still carry data.
				_ = tc.CloseWrite()
				return
			}
			break
		}
	}
	_ = src.Close()
	_ = dst.Close()
}
