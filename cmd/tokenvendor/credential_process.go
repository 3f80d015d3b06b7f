package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/tokenvendor/tokenvendor/client"
	"github.com/tokenvendor/tokenvendor/wire"
)

const (
	// defaultClientTimeout bounds one call of credential-process; the AWS
	// SDKs give a credential process no timeout of their own.
	defaultClientTimeout = 10 * time.Second
	// maxTokenBytes bounds what is read from a token file; the service
	// refuses tokens over 16 KiB anyway.
	maxTokenBytes = 64 << 10
	// maxResponseBytes bounds what is read from the service's answer.
	maxResponseBytes = 64 << 10
	// maxMessageRunes bounds a service message repeated on stderr.
	maxMessageRunes = 300
)

// credentialProcessFlags is the command line of credential-process.
type credentialProcessFlags struct {
	url, profile, tenant string
	tokenFile, tokenEnv  string
	// With awsIAM.serverID, the caller is known by its AWS identity: it
	// signs a GetCallerIdentity instead of presenting a token.
	awsIAM  awsIAMFlags
	timeout time.Duration
}

// awsIAMFlags say how credential-process signs with the process's own AWS
// credentials.
type awsIAMFlags struct {
	serverID, region, stsEndpoint, profile string
	fips                                   bool
}

func parseCredentialProcessFlags(args []string) (credentialProcessFlags, error) {
	const cmd = "credential-process"
	var f credentialProcessFlags
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.url, "url", "", "tokenvendor base URL")
	fs.StringVar(&f.profile, "profile", "", "profile name")
	fs.StringVar(&f.tenant, "tenant", "", "tenant id (needs the override scope unless it is the token's)")
	fs.StringVar(&f.tokenFile, "token-file", "", "file holding the caller's JWT, read on every call")
	fs.StringVar(&f.tokenEnv, "token-env", "", "environment variable holding the caller's JWT")
	fs.StringVar(&f.awsIAM.serverID, "aws-iam-server-id", "", "sign a GetCallerIdentity with the process's own AWS credentials for the service's auth.aws_iam.server_id, instead of a token")
	fs.StringVar(&f.awsIAM.region, "aws-iam-region", "", "the service's auth.aws_iam.region (default: the AWS SDK's region)")
	fs.StringVar(&f.awsIAM.stsEndpoint, "aws-iam-sts-endpoint", "", "the service's auth.aws_iam.sts_endpoint (default the region's STS endpoint)")
	fs.BoolVar(&f.awsIAM.fips, "aws-iam-fips", false, "sign for the region's FIPS STS endpoint, as the service's sts.fips (refused where the region has none)")
	fs.StringVar(&f.awsIAM.profile, "aws-iam-profile", "", "the AWS profile whose credentials sign (default: the SDK's default chain)")
	fs.DurationVar(&f.timeout, "timeout", defaultClientTimeout, "bound on the whole call")
	if err := fs.Parse(args); err != nil {
		return f, fmt.Errorf("%w: %s: %w", errUsage, cmd, err)
	}
	var problems []string
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	if _, err := wire.CheckBaseURL(f.url); errors.Is(err, wire.ErrInsecureURL) {
		// The token goes out and credentials come back: in clear text only
		// where nothing can listen in between.
		problems = append(problems, "--url must be https unless it is a loopback address")
	} else if err != nil {
		problems = append(problems, "--url must be the service's http(s) base URL")
	}
	if f.profile == "" {
		problems = append(problems, "--profile required")
	}
	if n := countSet(f.tokenFile, f.tokenEnv, f.awsIAM.serverID); n != 1 {
		problems = append(problems, "exactly one of --token-file, --token-env and --aws-iam-server-id required")
	}
	if f.awsIAM.serverID == "" && f.awsIAM != (awsIAMFlags{}) {
		problems = append(problems, "--aws-iam-region, --aws-iam-sts-endpoint, --aws-iam-fips and --aws-iam-profile go with --aws-iam-server-id")
	}
	if f.timeout <= 0 {
		problems = append(problems, "--timeout must be positive")
	}
	if len(problems) > 0 {
		return f, fmt.Errorf("%w: %s: %s", errUsage, cmd, strings.Join(problems, "; "))
	}
	return f, nil
}

func countSet(values ...string) int {
	n := 0
	for _, v := range values {
		if v != "" {
			n++
		}
	}
	return n
}

// credentialProcess asks a running tokenvendor for credentials with the
// caller's token and prints them in the credential_process shape.
func credentialProcess(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	f, err := parseCredentialProcessFlags(args)
	if err != nil {
		return err
	}
	// --timeout bounds the whole call, finding the credentials to sign
	// with included (instance metadata, a nested credential_process).
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	var token string
	if f.awsIAM.serverID != "" {
		token, err = signedIdentity(ctx, f.awsIAM, getenv)
	} else {
		token, err = readToken(f, getenv)
	}
	if err != nil {
		return fmt.Errorf("credential-process: %w", err)
	}
	creds, err := fetchCredentials(ctx, f, token)
	if err != nil {
		// The token never appears in an error this code writes; scrub it
		// anyway in case something between here and the service echoed it.
		msg := strings.ReplaceAll(fmt.Sprintf("credential-process: %v", err), token, "[token]")
		if signed, ok := strings.CutPrefix(token, wire.SchemeAWSIAM+" "); ok {
			msg = strings.ReplaceAll(msg, signed, "[token]") // replayable for minutes
		}
		return errors.New(msg)
	}
	return json.NewEncoder(stdout).Encode(creds)
}

// readToken reads the caller's token afresh: projected service-account
// tokens are rotated on disk while the pod runs.
func readToken(f credentialProcessFlags, getenv func(string) string) (string, error) {
	if f.tokenEnv != "" {
		token := strings.TrimSpace(getenv(f.tokenEnv))
		if token == "" {
			return "", fmt.Errorf("environment variable %s is empty or unset", f.tokenEnv)
		}
		return token, nil
	}
	file, err := os.Open(f.tokenFile)
	if err != nil {
		return "", fmt.Errorf("read token: %w", err)
	}
	defer file.Close()
	b, err := io.ReadAll(io.LimitReader(file, maxTokenBytes+1))
	if err != nil {
		return "", fmt.Errorf("read token: %w", err)
	}
	if len(b) > maxTokenBytes {
		return "", fmt.Errorf("token file %s is over %d bytes", f.tokenFile, maxTokenBytes)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("token file %s is empty", f.tokenFile)
	}
	return token, nil
}

// signingGuard is set in the environment of anything the AWS SDK starts to
// find the credentials to sign with: the invocations of this command that
// are under way, one key each. A profile whose own credential_process is
// this command, with the same flags, would otherwise start it again, and
// again; a chain of different ones stops at maxSigningDepth.
const (
	signingGuard    = "TOKENVENDOR_CREDENTIAL_PROCESS_SIGNING"
	maxSigningDepth = 4
)

// signingKey names one invocation: what it signs for and with.
func signingKey(f awsIAMFlags) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{f.serverID, f.region, f.stsEndpoint, f.profile, strconv.FormatBool(f.fips)}, "\x00")))
	return hex.EncodeToString(sum[:8])
}

// signedIdentity is the Authorization value of a caller known by its AWS
// identity: a GetCallerIdentity signed with the process's own credentials
// (the default chain, or --aws-iam-profile), for the service's server id.
func signedIdentity(ctx context.Context, f awsIAMFlags, getenv func(string) string) (string, error) {
	key := signingKey(f)
	var under []string
	if g := getenv(signingGuard); g != "" {
		under = strings.Split(g, ",")
	}
	if slices.Contains(under, key) || len(under) >= maxSigningDepth {
		return "", errors.New("the AWS credentials to sign with come from a credential_process that is this command again " +
			"(a profile that runs tokenvendor credential-process --aws-iam-server-id): name the role's own profile with --aws-iam-profile")
	}
	if err := os.Setenv(signingGuard, strings.Join(append(under, key), ",")); err != nil {
		return "", err
	}
	var opts []func(*awsconfig.LoadOptions) error
	if f.profile != "" {
		opts = append(opts, awsconfig.WithSharedConfigProfile(f.profile))
	}
	if f.region != "" {
		opts = append(opts, awsconfig.WithRegion(f.region))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return "", fmt.Errorf("AWS credentials to sign with: %w", err)
	}
	if cfg.Region == "" {
		return "", errors.New("no region to sign for: --aws-iam-region (the service's auth.aws_iam.region), AWS_REGION or AWS_DEFAULT_REGION")
	}
	token, err := client.AWSIAMToken(client.AWSIAMConfig{
		Credentials: cfg.Credentials, ServerID: f.serverID, Region: cfg.Region, STSEndpoint: f.stsEndpoint, FIPS: f.fips,
	})
	if err != nil {
		return "", err
	}
	return token(ctx)
}

// fetchCredentials calls POST /credentials and checks the answer is usable.
func fetchCredentials(ctx context.Context, f credentialProcessFlags, token string) (wire.ProcessCredentials, error) {
	body, err := json.Marshal(wire.CredentialsRequest{Profile: f.profile, TenantID: f.tenant})
	if err != nil {
		return wire.ProcessCredentials{}, err
	}
	endpoint := strings.TrimRight(f.url, "/") + wire.CredentialsPath
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return wire.ProcessCredentials{}, err
	}
	req.Header.Set("Authorization", wire.Authorization(token))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "tokenvendor-credential-process/"+version)

	client := &http.Client{
		Timeout: f.timeout,
		// A redirect would carry the token somewhere not configured.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	res, err := client.Do(req)
	if err != nil {
		return wire.ProcessCredentials{}, fmt.Errorf("call %s: %w", endpoint, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxResponseBytes))
	if err != nil {
		return wire.ProcessCredentials{}, fmt.Errorf("read answer of %s: %w", endpoint, err)
	}
	if res.StatusCode != http.StatusOK {
		return wire.ProcessCredentials{}, serviceError(res, b)
	}

	var got wire.Credentials
	if err := json.Unmarshal(b, &got); err != nil {
		return wire.ProcessCredentials{}, fmt.Errorf("tokenvendor answered 200 with a body that is not credentials: %w", err)
	}
	if err := got.Validate(); err != nil {
		return wire.ProcessCredentials{}, fmt.Errorf("tokenvendor answered 200 without complete version 1 credentials: %w", err)
	}
	return got.ProcessCredentials, nil
}

// serviceError turns a non-200 answer into one line naming the service's
// code and message, or the status alone when the body is not the service's
// error shape.
func serviceError(res *http.Response, body []byte) error {
	var e wire.ErrorBody
	msg := fmt.Sprintf("tokenvendor answered %d", res.StatusCode)
	if json.Unmarshal(body, &e) == nil && e.Code != "" {
		msg += " " + oneLine(e.Code)
		if e.Message != "" {
			msg += ": " + oneLine(e.Message)
		}
	} else {
		msg += " (" + http.StatusText(res.StatusCode) + ", not a tokenvendor error body)"
	}
	if ra := res.Header.Get("Retry-After"); ra != "" {
		msg += "; retry after " + oneLine(ra) + " s"
	}
	return errors.New(msg)
}

// oneLine keeps text from the network on one printable line of bounded size.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > maxMessageRunes {
		s = string(r[:maxMessageRunes]) + "…"
	}
	return s
}
