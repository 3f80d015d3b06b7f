// Package metrictest reads metrics back from a Prometheus registry in tests.
package metrictest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Counter returns the value of the counter name whose label has value, or 0
// when there is none yet.
func Counter(t testing.TB, g prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	return Value(t, g, name, map[string]string{label: value})
}

// Gauge returns the value of the unlabelled gauge name, or 0 when there is
// none.
func Gauge(t testing.TB, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	return Value(t, g, name, nil)
}

// Value returns the value of the counter or gauge name whose labels include
// all of labels, or 0 when there is none.
func Value(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metrics
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
