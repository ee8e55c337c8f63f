package storagetest

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy forwards TCP connections from a loopback port to a server, and can cut them off. Tests
// use it to simulate a restart of a server they must not restart for real (a Postgres or MariaDB
// shared with other test packages): Cut closes every connection and refuses new ones, Restore
// accepts again on the same port.
type Proxy struct {
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	muted atomic.Bool
}

// StartProxy starts a proxy to target (host:port) on a free loopback port; it stops when t ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	p := &Proxy{target: target, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	t.Cleanup(func() {
		p.Cut()
		p.wg.Wait()
	})
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.addr }

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.forward(c)
			}()
		}
	}()
}

func (p *Proxy) forward(client net.Conn) {
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(client, server) {
		client.Close()
		server.Close()
		return
	}
	defer p.untrack(client, server)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn, w io.Writer) {
		io.Copy(w, src)
		// Half-closes are not worth modelling: either side ending ends the connection.
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go pipe(server, client, server)
	go pipe(client, server, answers{client, p})
	<-done
	<-done
}

// answers writes what the server sends to the client, unless the proxy is muted.
type answers struct {
	client net.Conn
	p      *Proxy
}

func (a answers) Write(b []byte) (int, error) {
	if a.p.muted.Load() {
		return len(b), nil
	}
	return a.client.Write(b)
}

// Mute drops everything the server sends from now on, on every connection, until Cut: requests
// still reach the server and run, and their answers are lost, as when a connection fails after
// a request was sent.
func (p *Proxy) Mute() { p.muted.Store(true) }

// track registers the pair unless the proxy was cut meanwhile.
func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

// Cut closes every proxied connection and stops listening, so new connections are refused. It
// ends Mute.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.muted.Store(false)
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // reset, as a crashed server's kernel would
		}
		c.Close()
		delete(p.conns, c)
	}
}

// Restore listens again on the same port.
func (p *Proxy) Restore() error {
	var err error
	for range 50 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			p.serve(ln)
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("proxy: cannot listen on " + p.addr + " again: " + err.Error())
}
