package config

import (
	"time"

	"github.com/tokenvendor/tokenvendor/internal/partition"
)

// STS configures the service's STS client.
type STS struct {
	Region   string        `yaml:"region"`
	Endpoint string        `yaml:"endpoint"`
	Timeout  time.Duration `yaml:"timeout"`
	// FIPS sends every STS call (the service's and the AWS IAM callers')
	// to the region's FIPS endpoint; a region without one fails start-up.
	FIPS bool `yaml:"fips"`
	// RoleChaining says whether the service's own credentials are a role
	// session, which caps every duration at one hour.
	RoleChaining RoleChaining `yaml:"role_chaining"`
	// MaxRPS, when set, paces AssumeRole calls: across the replicas that
	// share Redis, or per replica without it (and while Redis is away).
	// MaxBurst is the burst; default MaxRPS rounded up.
	MaxRPS   float64 `yaml:"max_rps"`
	MaxBurst int     `yaml:"max_burst"`

	// Partition is the region's, and URL the endpoint STS calls go to
	// (Endpoint, or the region's), set by Validate.
	Partition partition.Partition `yaml:"-"`
	URL       string              `yaml:"-"`
}

// RoleChaining is whether the service's own credentials are a role session.
type RoleChaining string

// The values of sts.role_chaining.
const (
	RoleChainingAuto RoleChaining = "auto" // ask STS GetCallerIdentity at start-up
	RoleChainingOn   RoleChaining = "on"
	RoleChainingOff  RoleChaining = "off"
)

// validate fills the sts section's defaults and checks it.
func (st *STS) validate(bad reporter) {
	setDefault(&st.Region, DefaultRegion)
	part, err := partition.ForRegion(st.Region)
	switch {
	case err != nil && st.Endpoint != "" && !st.FIPS:
		// Another STS (MinIO, a local stand-in) may call its region
		// anything: the ARNs are then the aws partition's.
		part, err = partition.AWS, nil
	case err != nil:
		bad("sts.region", "%v", err)
	}
	st.Partition = part
	switch {
	case st.Endpoint != "" && st.FIPS:
		bad("sts.fips", "with sts.endpoint: set one (fips picks the region's FIPS endpoint, and never another)")
	case st.Endpoint != "":
		if err := checkFetchURL(st.Endpoint); err != nil {
			bad("sts.endpoint", "%v", err)
		}
		st.URL = st.Endpoint
	case err == nil:
		if st.URL, err = partition.STSEndpoint(st.Region, st.FIPS); err != nil {
			bad("sts.fips", "%v: there is no FIPS endpoint to use, and tokenvendor never falls back to the standard one", err)
		}
	}
	if st.Timeout == 0 {
		st.Timeout = DefaultSTSTimeout
	}
	if st.Timeout < 0 {
		bad("sts.timeout", "negative")
	}
	switch {
	case st.MaxRPS < 0 || st.MaxRPS > MaxSTSRPS:
		bad("sts.max_rps", "between 0 (no budget) and %d calls a second", MaxSTSRPS)
	case st.MaxBurst < 0:
		bad("sts.max_burst", "negative")
	case st.MaxBurst > 0 && st.MaxRPS == 0:
		bad("sts.max_burst", "needs sts.max_rps")
	}
	setDefault(&st.RoleChaining, RoleChainingAuto)
	switch st.RoleChaining {
	case RoleChainingAuto, RoleChainingOn, RoleChainingOff:
	default:
		bad("sts.role_chaining", "must be auto, on or off")
	}
}
