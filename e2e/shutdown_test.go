package e2e

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/testsupport"
)

// Signals under load: SIGHUP reloads without dropping a request, SIGTERM
// drains what is in flight and refuses what comes after.

func TestSIGHUPUnderLoadDropsNoRequestAndStaysReady(t *testing.T) {
	const assumeRole = "Action=AssumeRole&"
	// STS answers slowly, so that requests waiting on it are in flight
	// while the configuration is swapped.
	proxy := startProxy(t, strings.TrimPrefix(peers.minio, "http://"), assumeRole)
	proxy.setDelay(150 * time.Millisecond)
	path := writeConfig(t, configOptions{stsEndpoint: proxy.url(), roleChaining: "off"})
	v := startVendor(t, path, minioUser, minioPassword)
	original, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The other configuration changes the policy, so every reload makes new
	// cache keys and sends tenants back to STS.
	changed := strings.Replace(string(original), `"s3:DeleteObject"]`, `"s3:DeleteObject","s3:GetObjectTagging"]`, 1)
	if changed == string(original) {
		t.Fatal("test bug: the policy was not changed")
	}
	acme, worker := token(t, "svc-acme"), token(t, "worker")

	client := loadClient(true)
	load := startLoad(5, func(w, i int) outcome {
		switch w {
		case 0:
			o := call(client, http.MethodGet, v.url+"/readyz", "", "")
			o.readyz = true
			return o
		case 1:
			return call(client, http.MethodPost, v.url+"/credentials", acme, "")
		default:
			return call(client, http.MethodPost, v.url+"/credentials", worker, fmt.Sprintf(`{"tenant_id":"reload-%d-%d"}`, w, i%10))
		}
	})
	load.waitFor(t, 20)

	const reloads = 6
	var sent, done [reloads]time.Time
	for i := range reloads {
		next := original
		if i%2 == 0 {
			next = []byte(changed)
		}
		if err := os.WriteFile(path, next, 0o600); err != nil {
			t.Fatal(err)
		}
		sent[i] = time.Now()
		v.signal(syscall.SIGHUP)
		v.waitLog(t, `"msg":"config reloaded"`, i+1)
		done[i] = time.Now()
		time.Sleep(300 * time.Millisecond)
	}
	results := load.finish()

	var spanning, ready, vended int
	for _, o := range results {
		if o.err != nil || o.status != http.StatusOK {
			t.Errorf("request at %s during reloads: %d %s %v", o.sent.Format(time.StampMilli), o.status, o.body, o.err)
			continue
		}
		if o.readyz {
			ready++
		} else {
			vended++
		}
		for i := range reloads {
			if o.sent.Before(sent[i]) && o.sent.Add(o.took).After(done[i]) {
				spanning++
				break
			}
		}
	}
	t.Logf("%d reloads under load: %d credentials and %d /readyz answered 200, %d requests in flight across a reload; %d AssumeRole calls",
		reloads, vended, ready, spanning, proxy.count(assumeRole))
	if spanning == 0 {
		t.Error("no request was in flight across a reload: the test proves nothing")
	}
	if ready == 0 || vended == 0 {
		t.Errorf("load made %d credential and %d /readyz requests", vended, ready)
	}
	if strings.Contains(v.out.String(), "config reload failed") {
		t.Errorf("a reload failed:\n%s", v.out.String())
	}
}

func TestSIGTERMDrainsInFlightRequestsRefusesNewOnesAndExitsZero(t *testing.T) {
	const (
		assumeRole = "Action=AssumeRole&"
		drain      = 6 * time.Second
		latency    = 1500 * time.Millisecond // each way: an AssumeRole takes twice that
	)
	proxy := startProxy(t, strings.TrimPrefix(peers.minio, "http://"), assumeRole)
	v := startVendor(t, writeConfig(t, configOptions{
		stsEndpoint: proxy.url(), roleChaining: "off", stsTimeout: "10s", shutdownTimeout: drain.String(),
	}), minioUser, minioPassword)
	worker := token(t, "worker")
	addr := strings.TrimPrefix(v.url, "http://")

	// Requests for uncached tenants, each held in flight by a slow STS.
	proxy.setDelay(latency)
	const inFlight = 8
	client := loadClient(false)
	results := make([]outcome, inFlight)
	var finished atomic.Int32
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = call(client, http.MethodPost, v.url+"/credentials", worker, fmt.Sprintf(`{"tenant_id":"drain-%d"}`, i))
			finished.Add(1)
		}()
	}
	testsupport.Eventually(t, 10*time.Second, func() error {
		if n := proxy.count(assumeRole); n < inFlight {
			return fmt.Errorf("%d of %d requests reached STS", n, inFlight)
		}
		return nil
	})

	sigterm := time.Now()
	v.signal(syscall.SIGTERM)
	v.waitLog(t, `"msg":"shutting down"`, 1)
	// The listener is closed at once: a new connection is refused while
	// the requests above are still being answered.
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		conn.Close()
		t.Error("a new connection was accepted after SIGTERM")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("new connection after SIGTERM: %v, want connection refused", err)
	}
	if n := finished.Load(); n != 0 {
		t.Fatalf("%d requests finished before the refusal was checked: the test cannot tell draining from done", n)
	}

	wg.Wait()
	for i, o := range results {
		if o.err != nil || o.status != http.StatusOK {
			t.Errorf("request %d in flight at SIGTERM: %d %s %v", i, o.status, o.body, o.err)
		}
	}
	select {
	case <-v.done:
	case <-time.After(time.Until(sigterm.Add(drain + 2*time.Second))):
		t.Fatalf("still running %s after SIGTERM with shutdown_timeout %s", time.Since(sigterm).Round(time.Millisecond), drain)
	}
	t.Logf("%d requests in flight at SIGTERM answered 200; exited %s after SIGTERM", inFlight, time.Since(sigterm).Round(time.Millisecond))
	if code := v.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after draining, want 0", code)
	}
	if !strings.Contains(v.out.String(), `"msg":"stopped"`) {
		t.Error("no clean stop logged")
	}
}

func TestSIGTERMDoesNotWaitBeyondTheDrainTimeout(t *testing.T) {
	const (
		assumeRole = "Action=AssumeRole&"
		drain      = time.Second
	)
	proxy := startProxy(t, strings.TrimPrefix(peers.minio, "http://"), assumeRole)
	v := startVendor(t, writeConfig(t, configOptions{
		stsEndpoint: proxy.url(), roleChaining: "off", stsTimeout: "30s", shutdownTimeout: drain.String(),
	}), minioUser, minioPassword)
	worker := token(t, "worker")
	proxy.setDelay(20 * time.Second)
	done := make(chan outcome, 1)
	go func() {
		done <- call(loadClient(false), http.MethodPost, v.url+"/credentials", worker, `{"tenant_id":"stuck"}`)
	}()
	testsupport.Eventually(t, 10*time.Second, func() error {
		if proxy.count(assumeRole) < 1 {
			return errors.New("the request never reached STS")
		}
		return nil
	})
	sigterm := time.Now()
	v.signal(syscall.SIGTERM)
	select {
	case <-v.done:
	case <-time.After(drain + 3*time.Second):
		t.Fatalf("still running %s after SIGTERM with shutdown_timeout %s and a request stuck on STS", time.Since(sigterm).Round(time.Millisecond), drain)
	}
	o := <-done
	t.Logf("exited %s after SIGTERM with code %d; the stuck caller got %d %v",
		time.Since(sigterm).Round(time.Millisecond), v.cmd.ProcessState.ExitCode(), o.status, o.err)
	if o.err == nil && o.status == http.StatusOK {
		t.Error("the stuck request got credentials though STS never answered")
	}
}
