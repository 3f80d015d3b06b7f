package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/tokenvendor/tokenvendor/internal/partition"
	"github.com/tokenvendor/tokenvendor/wire"
)

// AWSIAMConfig says how AWSIAMToken signs.
type AWSIAMConfig struct {
	// Credentials are the process's own AWS credentials (its task or
	// function role), e.g. awsconfig.LoadDefaultConfig's.
	Credentials aws.CredentialsProvider
	// ServerID is tokenvendor's auth.aws_iam.server_id.
	ServerID string
	// Region is tokenvendor's auth.aws_iam.region; STSEndpoint its
	// auth.aws_iam.sts_endpoint, by default the region's, as tokenvendor's:
	// https://sts.REGION.amazonaws.com (.com.cn in China regions), or with
	// FIPS (tokenvendor's sts.fips) its FIPS endpoint, an error where the
	// region has none.
	Region, STSEndpoint string
	FIPS                bool
	// Reuse is how long one signature is presented before signing anew,
	// so that tokenvendor answers repeated requests from its cache; default
	// 1 min, under the 5 minutes tokenvendor accepts a signature for.
	Reuse time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// AWSIAMToken returns a token source that proves the process's own AWS
// identity to tokenvendor without an identity provider: it signs an
// sts:GetCallerIdentity request, covering wire.ServerIDHeader, with
// cfg.Credentials. tokenvendor sends it to STS, which says who signed it.
// Its tokens name their scheme ("AWS-IAM …"), so that wire.Authorization
// presents them as they are.
func AWSIAMToken(cfg AWSIAMConfig) (func(context.Context) (string, error), error) {
	if cfg.Credentials == nil || cfg.ServerID == "" || cfg.Region == "" {
		return nil, errors.New("client: AWSIAMConfig needs Credentials, ServerID and Region")
	}
	if cfg.STSEndpoint != "" && cfg.FIPS {
		return nil, errors.New("client: STSEndpoint and FIPS: set one (FIPS picks the region's FIPS endpoint)")
	}
	if cfg.STSEndpoint == "" {
		endpoint, err := partition.STSEndpoint(cfg.Region, cfg.FIPS) // as tokenvendor's own default
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		cfg.STSEndpoint = endpoint
	}
	u, err := url.Parse(cfg.STSEndpoint)
	if err != nil || u.Host == "" {
		return nil, errors.New("client: STSEndpoint is not an absolute URL")
	}
	if u.Path == "" {
		u.Path = "/"
	}
	if cfg.Reuse == 0 {
		cfg.Reuse = time.Minute
	}
	if cfg.Reuse < 0 || cfg.Reuse >= 5*time.Minute {
		return nil, errors.New("client: Reuse must be below 5 minutes")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &iamSigner{cfg: cfg, endpoint: u.String(), signer: v4.NewSigner()}
	return s.token, nil
}

type iamSigner struct {
	cfg      AWSIAMConfig
	endpoint string
	signer   *v4.Signer

	mu       sync.Mutex
	last     string
	signedAt time.Time
	key      string // the access key id last signed with
}

func (s *iamSigner) token(ctx context.Context) (string, error) {
	creds, err := s.cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return "", fmt.Errorf("AWS credentials to sign with: %w", err)
	}
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last != "" && s.key == creds.AccessKeyID && now.Sub(s.signedAt) < s.cfg.Reuse {
		return s.last, nil
	}
	signed, err := SignGetCallerIdentity(ctx, s.signer, creds, s.endpoint, s.cfg.Region, s.cfg.ServerID, now)
	if err != nil {
		return "", err
	}
	s.last, s.signedAt, s.key = wire.SchemeAWSIAM+" "+signed, now, creds.AccessKeyID
	return s.last, nil
}

// SignGetCallerIdentity signs a GetCallerIdentity for endpoint with creds
// at t and returns it in the form tokenvendor reads after "AWS-IAM ": an
// encoded wire.AWSIAMRequest.
func SignGetCallerIdentity(ctx context.Context, signer *v4.Signer, creds aws.Credentials, endpoint, region, serverID string, t time.Time) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(wire.GetCallerIdentityBody))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	req.Header.Set(wire.ServerIDHeader, serverID)
	sum := sha256.Sum256([]byte(wire.GetCallerIdentityBody))
	if err := signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "sts", region, t.UTC()); err != nil {
		return "", fmt.Errorf("sign GetCallerIdentity: %w", err)
	}
	headers := map[string]string{"Host": req.URL.Host}
	for name, values := range req.Header {
		headers[name] = strings.Join(values, ",")
	}
	if strings.Contains(req.Header.Get("Authorization"), "content-length") {
		headers["Content-Length"] = strconv.Itoa(len(wire.GetCallerIdentityBody))
	}
	return wire.AWSIAMRequest{Method: http.MethodPost, Headers: headers, Body: wire.GetCallerIdentityBody}.Encode()
}
