package testsupport

import (
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"time"
)

// StartMoto runs moto_server (on the machine image) on a free loopback
// port and waits until it answers. stop kills it.
func StartMoto() (url string, stop func(), err error) {
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		return "", nil, fmt.Errorf("moto_server not on PATH (it comes with the machine image): %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	var logs Buffer
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", port)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop = func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	url = "http://127.0.0.1:" + port
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if res, err := client.Get(url + "/moto-api/data.json"); err == nil {
			res.Body.Close()
			return url, stop, nil
		}
	}
	stop()
	return "", nil, fmt.Errorf("moto_server on %s not answering:\n%s", url, logs.String())
}
