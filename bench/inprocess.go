package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strconv"
)

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+\d+\s+([\d.]+) ns/op`)

// inProcess runs the go test benchmarks, echoes their output for benchstat,
// and reports the hit path against the bare handler and the cost split.
func inProcess(w io.Writer) ([]row, error) {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", ".", "-benchmem", "-count", "1",
		"./internal/api/", "./internal/auth/", "./internal/policy/", "./internal/cache/")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.MultiWriter(w, &out), w
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go test -bench: %w", err)
	}
	ns := map[string]float64{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if m := benchLine.FindStringSubmatch(sc.Text()); m != nil {
			ns[m[1]], _ = strconv.ParseFloat(m[3], 64)
		}
	}
	need := []string{"BenchmarkCredentialsHit", "BenchmarkCredentialsHitTraced", "BenchmarkBareHandler", "BenchmarkVerify/remembered/rsa",
		"BenchmarkVerify/signature/rsa", "BenchmarkRender/remembered", "BenchmarkRender/fresh", "BenchmarkGetHit"}
	for _, n := range need {
		if ns[n] == 0 {
			return nil, fail("no result for %s", n)
		}
	}
	hit, bare := ns["BenchmarkCredentialsHit"], ns["BenchmarkBareHandler"]
	share := func(n string) string { return fmt.Sprintf("%.0f %%", 100*ns[n]/hit) }
	return []row{
		{"in-process", "cache-hit throughput / bare handler", ratio(bare, hit), ""},
		{"in-process", "cache-hit throughput with tracing on / bare handler (every request traced, spans batched and dropped)", ratio(bare, ns["BenchmarkCredentialsHitTraced"]), ""},
		{"in-process", "share of a hit: JWT verify (remembered token)", share("BenchmarkVerify/remembered/rsa"), ""},
		{"in-process", "share of a hit: policy render (remembered)", share("BenchmarkRender/remembered"), ""},
		{"in-process", "policy render, fresh / remembered", ratio(ns["BenchmarkRender/fresh"], ns["BenchmarkRender/remembered"]), ""},
		{"in-process", "share of a hit: cache lookup", share("BenchmarkGetHit"), ""},
		{"in-process", "RS256 signature check / remembered token", ratio(ns["BenchmarkVerify/signature/rsa"], ns["BenchmarkVerify/remembered/rsa"]), ""},
	}, nil
}
