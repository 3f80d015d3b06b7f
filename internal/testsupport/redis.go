package testsupport

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"time"
)

// StartRedis runs redis-server (Debian's; scripts/tools.sh installs it) on a
// free loopback port, without persistence, and waits until it answers PING.
// stop kills it.
func StartRedis() (addr string, stop func(), err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, fmt.Errorf("redis-server not on PATH (make tools installs it): %w", err)
	}
	for range 5 { // a port found free may be taken before redis binds it
		addr, stop, err = startRedis(bin)
		if err == nil {
			return addr, stop, nil
		}
	}
	return "", nil, err
}

func startRedis(bin string) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	var logs Buffer
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	if err := Poll(10*time.Second, func() error { return ping(addr) }); err != nil {
		stop()
		return "", nil, fmt.Errorf("redis-server on %s: %w:\n%s", addr, err, logs.String())
	}
	return addr, stop, nil
}

// ping says whether a Redis server at addr answers PING.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}
