// Package partition knows the AWS partitions tokenvendor serves (aws,
// aws-cn, aws-us-gov): which region belongs to which, the STS endpoint of a
// region, with or without FIPS, and what a role ARN of a partition looks
// like. It is pure: no I/O, no AWS SDK.
package partition

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Partition is one AWS partition.
type Partition struct {
	// ID is the partition of ARNs: aws, aws-cn or aws-us-gov.
	ID string
	// DNSSuffix is the suffix of its endpoints' host names.
	DNSSuffix string
}

// The partitions tokenvendor serves.
var (
	AWS      = Partition{ID: "aws", DNSSuffix: "amazonaws.com"}
	China    = Partition{ID: "aws-cn", DNSSuffix: "amazonaws.com.cn"}
	GovCloud = Partition{ID: "aws-us-gov", DNSSuffix: "amazonaws.com"}
)

// ErrNoFIPS is returned for a region whose STS has no FIPS endpoint.
var ErrNoFIPS = errors.New("STS has no FIPS endpoint in this region")

var (
	regionPattern = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d{1,2}$`)
	// isolated partitions (us-iso-*, us-isob-*, eu-isoe-*, us-isof-*) and
	// the European Sovereign Cloud (eusc-*) are not served.
	unservedPattern = regexp.MustCompile(`^(us-iso[a-z]?-|eu-isoe-|eusc-)`)
)

// fipsSTS are the regions whose STS has a FIPS endpoint, with its host, as
// aws-sdk-go-v2's service/sts endpoint table (v1.51.8) lists them. Every
// other region has none: a FIPS-only deployment there must fail, not talk
// to the standard endpoint. GovCloud's standard endpoints are themselves
// FIPS validated and are its FIPS endpoints.
var fipsSTS = map[string]string{
	"us-east-1":     "sts-fips.us-east-1.amazonaws.com",
	"us-east-2":     "sts-fips.us-east-2.amazonaws.com",
	"us-west-1":     "sts-fips.us-west-1.amazonaws.com",
	"us-west-2":     "sts-fips.us-west-2.amazonaws.com",
	"us-gov-east-1": "sts.us-gov-east-1.amazonaws.com",
	"us-gov-west-1": "sts.us-gov-west-1.amazonaws.com",
}

// ForRegion returns the partition of region; an error for a name that is
// no region, or a region of a partition tokenvendor does not serve.
func ForRegion(region string) (Partition, error) {
	switch {
	case unservedPattern.MatchString(region):
		return Partition{}, fmt.Errorf("region %s is in a partition tokenvendor does not serve (aws, aws-cn, aws-us-gov)", region)
	case !regionPattern.MatchString(region):
		return Partition{}, fmt.Errorf("%q is not an AWS region name", region)
	case strings.HasPrefix(region, "cn-"):
		return China, nil
	case strings.HasPrefix(region, "us-gov-"):
		return GovCloud, nil
	}
	return AWS, nil
}

// STSEndpoint is the regional STS endpoint of region; with fips, its FIPS
// endpoint, or ErrNoFIPS where it has none (never the standard endpoint
// instead).
func STSEndpoint(region string, fips bool) (string, error) {
	p, err := ForRegion(region)
	if err != nil {
		return "", err
	}
	if !fips {
		return "https://sts." + region + "." + p.DNSSuffix, nil
	}
	host, ok := fipsSTS[region]
	if !ok {
		return "", fmt.Errorf("%w: %s", ErrNoFIPS, region)
	}
	return "https://" + host, nil
}

// RoleARN is a parsed IAM role ARN.
type RoleARN struct {
	Partition string
	Account   string
	// Path is the role's path, "/" when it has none.
	Path string
	Name string
}

// String is the ARN.
func (r RoleARN) String() string {
	return "arn:" + r.Partition + ":iam::" + r.Account + ":role" + r.Path + r.Name
}

var (
	accountPattern  = regexp.MustCompile(`^\d{12}$`)
	roleNamePattern = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)
	rolePathPattern = regexp.MustCompile(`^/([\x21-\x7e]+/)?$`)
)

// ParseRoleARN parses and checks an IAM role ARN of partition p: the
// partition, an account of 12 digits, a path and a role name as IAM allows
// them.
func (p Partition) ParseRoleARN(s string) (RoleARN, error) {
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "iam" || parts[3] != "" {
		return RoleARN{}, fmt.Errorf("%q is not an IAM ARN (arn:%s:iam::ACCOUNT:role/NAME)", s, p.ID)
	}
	r := RoleARN{Partition: parts[1], Account: parts[4]}
	resource, ok := strings.CutPrefix(parts[5], "role/")
	switch {
	case r.Partition != p.ID:
		return RoleARN{}, fmt.Errorf("%q is in partition %q, not %s (the partition of the STS region)", s, r.Partition, p.ID)
	case !accountPattern.MatchString(r.Account):
		return RoleARN{}, fmt.Errorf("%q: the account is not 12 digits", s)
	case !ok:
		return RoleARN{}, fmt.Errorf("%q is not a role ARN", s)
	}
	i := strings.LastIndexByte(resource, '/')
	r.Path, r.Name = "/"+resource[:i+1], resource[i+1:]
	if i < 0 {
		r.Path = "/"
	}
	switch {
	case !roleNamePattern.MatchString(r.Name):
		return RoleARN{}, fmt.Errorf("%q: the role name is not 1 to 64 characters of [\\w+=,.@-]", s)
	case len(r.Path) > 512 || !rolePathPattern.MatchString(r.Path):
		return RoleARN{}, fmt.Errorf("%q: the role path is not /…/ of printable characters, at most 512", s)
	}
	return r, nil
}
