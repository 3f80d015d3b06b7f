package server

import (
	"github.com/tokenvendor/tokenvendor/internal/canary"
	"github.com/tokenvendor/tokenvendor/internal/config"
	"github.com/tokenvendor/tokenvendor/internal/vend"
)

// NewCanary builds the canary of cfg over vendor: serve runs it every
// canary.interval, the canary command once.
func NewCanary(cfg *config.Config, vendor *vend.Service, tel Telemetry) (*canary.Canary, error) {
	cc := cfg.Canary
	var probes []canary.Probe
	for _, p := range cc.Probes {
		probe := canary.Probe{Profile: p.Profile}
		if p.S3 != nil {
			probe.Bucket, probe.Key = p.S3.Bucket, p.S3.Compiled
		} else {
			probe.Table, probe.Item = p.DynamoDB.Table, p.DynamoDB.Compiled
		}
		probes = append(probes, probe)
	}
	return canary.New(canary.Config{
		Tenants:    [2]string{cc.Tenants[0], cc.Tenants[1]},
		Probes:     probes,
		Vendor:     vendor,
		Reader:     canary.NewAWSReader(cfg.STS.Region, cc.Endpoints.S3, cc.Endpoints.DynamoDB),
		Registerer: tel.Registerer,
		Logger:     tel.Logger,
	})
}
