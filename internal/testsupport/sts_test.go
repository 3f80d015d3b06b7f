package testsupport

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func TestFakeSTSAnswersNumberedCredentialsForTheDurationAsked(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	f := &FakeSTS{Now: func() time.Time { return now }, SessionTokenLength: 1000}
	var keys []string
	for i, d := range []int32{900, 0} {
		in := &sts.AssumeRoleInput{RoleSessionName: aws.String("acme")}
		if d != 0 {
			in.DurationSeconds = aws.Int32(d)
		}
		out, err := f.AssumeRole(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		c := out.Credentials
		keys = append(keys, aws.ToString(c.AccessKeyId))
		want := []time.Duration{15 * time.Minute, time.Hour}[i]
		if !aws.ToTime(c.Expiration).Equal(now.Add(want)) {
			t.Errorf("call %d expires %v, want %v", i+1, c.Expiration, now.Add(want))
		}
		if len(aws.ToString(c.AccessKeyId)) != 20 || len(aws.ToString(c.SecretAccessKey)) != 40 || len(aws.ToString(c.SessionToken)) != 1000 {
			t.Errorf("call %d: lengths %d, %d, %d; want AWS's 20 and 40, and 1000", i+1,
				len(aws.ToString(c.AccessKeyId)), len(aws.ToString(c.SecretAccessKey)), len(aws.ToString(c.SessionToken)))
		}
	}
	if !slices.Equal(keys, []string{"ASIA0000000000000001", "ASIA0000000000000002"}) {
		t.Errorf("access keys %v", keys)
	}
	if f.Calls() != 2 || len(f.Inputs()) != 2 || aws.ToString(f.Inputs()[0].RoleSessionName) != "acme" {
		t.Errorf("Calls %d, Inputs %v", f.Calls(), f.Inputs())
	}
}

func TestFakeSTSFailsWhenToldAndForgetsWhenAsked(t *testing.T) {
	denied := errors.New("AccessDenied")
	f := &FakeSTS{Forget: true}
	f.Fail(denied)
	if _, err := f.AssumeRole(context.Background(), &sts.AssumeRoleInput{}); err != denied {
		t.Fatalf("err = %v, want the one Fail set", err)
	}
	f.Fail(nil)
	if _, err := f.AssumeRole(context.Background(), &sts.AssumeRoleInput{}); err != nil {
		t.Fatal(err)
	}
	if f.Calls() != 2 || len(f.Inputs()) != 0 {
		t.Fatalf("Calls %d, Inputs %d; want 2 and none kept", f.Calls(), len(f.Inputs()))
	}
}

func TestFakeSTSLatencyEndsWithTheContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &FakeSTS{Latency: time.Second}
		start := time.Now()
		if _, err := f.AssumeRole(context.Background(), &sts.AssumeRoleInput{}); err != nil || time.Since(start) != time.Second {
			t.Fatalf("%v after %s, want an answer after 1s", err, time.Since(start))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start = time.Now()
		if _, err := f.AssumeRole(ctx, &sts.AssumeRoleInput{}); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 100*time.Millisecond {
			t.Fatalf("%v after %s, want the context's end after 100ms", err, time.Since(start))
		}
	})
}
