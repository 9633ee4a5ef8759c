package connlimit

import (
	"io"
	"net"
	"net/netip"
	"testing"
)

// addrConn is a connection that only has a remote address.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

// TestClientOf: one client is an IPv4 address, or an IPv6 /64 (one host
// is commonly given the whole /64, as the service's rate limits count
// it); a v4-mapped address is its IPv4 address, a zone no part of it.
func TestClientOf(t *testing.T) {
	for remote, want := range map[string]string{
		"192.0.2.7:5000":              "192.0.2.7/32",
		"[::ffff:192.0.2.7]:5000":     "192.0.2.7/32",
		"[2001:db8:1:2:3:4:5:6]:5000": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:443":  "2001:db8:1:2::/64",
		"[fe80::1%eth0]:5000":         "fe80::/64",
	} {
		ap := netip.MustParseAddrPort(remote)
		got := clientOf(peerOf(addrConn{remote: net.TCPAddrFromAddrPort(ap)}))
		if got.String() != want {
			t.Errorf("clientOf(%s) = %s, want %s", remote, got, want)
		}
	}
	if got := clientOf(peerOf(addrConn{remote: &net.UnixAddr{Name: "@", Net: "unix"}})); got.IsValid() {
		t.Errorf("clientOf(a Unix socket) = %s, want none", got)
	}
}

// TestExemptPeerNotCountedInItsClient: a trusted proxy's connections take
// nothing of its client's share: on IPv6 its /64's, which other hosts of
// that /64 hold too.
func TestExemptPeerNotCountedInItsClient(t *testing.T) {
	proxy := netip.MustParseAddr("2001:db8::1")
	l := New(nil, 0, 1, func(a netip.Addr) bool { return a == proxy })
	from := func(addr string) net.Conn {
		mine, theirs := net.Pipe()
		t.Cleanup(func() { mine.Close(); theirs.Close() })
		go io.Copy(io.Discard, theirs) // a refusal's answer
		return addrConn{Conn: mine, remote: net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(addr), 5000))}
	}
	for range 3 {
		if l.admit(from("2001:db8::1")) == nil {
			t.Fatal("the proxy's connection was refused")
		}
	}
	if l.admit(from("2001:db8::2")) == nil {
		t.Error("a host of the proxy's /64 was refused: the proxy's connections counted against its share")
	}
	if l.admit(from("2001:db8::3")) != nil {
		t.Error("a second connection of that /64 was admitted past its share of 1")
	}
}
