package testsupport

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
)

// FakeSTS is an STS in process, for a vend.Service: every AssumeRole gets
// new credentials, numbered from 1 (AccessKeyId ASIA and the number in 16
// digits, as long as AWS's), expiring DurationSeconds (an hour unless
// asked) from Now. It records what it was asked. Set the fields before
// the first call; Fail changes the answer at any time.
type FakeSTS struct {
	// Now dates the credentials; default time.Now.
	Now func() time.Time
	// Latency is how long each call takes, or until its context ends.
	Latency time.Duration
	// SessionTokenLength pads session tokens to that many characters (AWS's
	// run to about 1,000 with a session policy and tags); 0 keeps them short.
	SessionTokenLength int
	// Forget keeps no inputs, for benchmarks' millions of calls.
	Forget bool

	mu     sync.Mutex
	calls  int
	inputs []*sts.AssumeRoleInput
	err    error
}

// AssumeRole answers as described on FakeSTS, or with Fail's error.
func (f *FakeSTS) AssumeRole(ctx context.Context, in *sts.AssumeRoleInput, _ ...func(*sts.Options)) (*sts.AssumeRoleOutput, error) {
	if f.Latency > 0 {
		select {
		case <-time.After(f.Latency):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if !f.Forget {
		f.inputs = append(f.inputs, in)
	}
	if f.err != nil {
		return nil, f.err
	}
	now := time.Now
	if f.Now != nil {
		now = f.Now
	}
	life := time.Hour
	if in.DurationSeconds != nil {
		life = time.Duration(*in.DurationSeconds) * time.Second
	}
	token := fmt.Sprintf("SESSIONTOKEN%04d", f.calls)
	if pad := f.SessionTokenLength - len(token); pad > 0 {
		token += strings.Repeat("t", pad)
	}
	return &sts.AssumeRoleOutput{Credentials: &ststypes.Credentials{
		AccessKeyId:     aws.String(fmt.Sprintf("ASIA%016d", f.calls)),
		SecretAccessKey: aws.String(fmt.Sprintf("SECRETKEY%031d", f.calls)),
		SessionToken:    aws.String(token),
		Expiration:      aws.Time(now().Add(life)),
	}}, nil
}

// Fail makes every later call fail with err; nil answers again.
func (f *FakeSTS) Fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// Calls counts the calls so far, failed ones included.
func (f *FakeSTS) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// Inputs are the inputs of the calls so far, in order.
func (f *FakeSTS) Inputs() []*sts.AssumeRoleInput {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*sts.AssumeRoleInput(nil), f.inputs...)
}

// AssumeRoleXML is an STS AssumeRole answer over HTTP for keyID, with a
// session token of tokenLength characters.
func AssumeRoleXML(keyID string, tokenLength int, expires time.Time) string {
	return assumeRoleXML(keyID, strings.Repeat("s", 40), strings.Repeat("t", tokenLength), expires, 0)
}

// assumeRoleXML is an AssumeRole answer; packed, when not 0, its
// PackedPolicySize.
func assumeRoleXML(keyID, secret, token string, expires time.Time, packed int) string {
	size := ""
	if packed > 0 {
		size = fmt.Sprintf("<PackedPolicySize>%d</PackedPolicySize>", packed)
	}
	return fmt.Sprintf(`<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>
<Credentials><AccessKeyId>%s</AccessKeyId><SecretAccessKey>%s</SecretAccessKey><SessionToken>%s</SessionToken><Expiration>%s</Expiration></Credentials>
<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/TenantData/stub</Arn><AssumedRoleId>AROA:stub</AssumedRoleId></AssumedRoleUser>%s
</AssumeRoleResult><ResponseMetadata><RequestId>stub</RequestId></ResponseMetadata></AssumeRoleResponse>`,
		keyID, secret, token, expires.UTC().Format(time.RFC3339), size)
}

// CallerIdentityXML is an STS GetCallerIdentity answer over HTTP naming
// arn, a session of account.
func CallerIdentityXML(arn, account string) string {
	return fmt.Sprintf(`<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>`+
		`<Arn>%s</Arn><UserId>AROA:x</UserId><Account>%s</Account></GetCallerIdentityResult></GetCallerIdentityResponse>`, arn, account)
}

// STS is a stub STS over HTTP: every AssumeRole gets keyID's credentials,
// living life.
func STS(keyID string, tokenLength int, life time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/xml")
		fmt.Fprint(w, AssumeRoleXML(keyID, tokenLength, time.Now().Add(life)))
	})
}
