// Command gos3 is aws-sdk-go-v2, unmodified, as an application uses it
// (e2e/sdkmatrix_test.go): config.LoadDefaultConfig, whose chain reads the
// environment (the container provider: AWS_CONTAINER_CREDENTIALS_FULL_URI
// with AWS_CONTAINER_AUTHORIZATION_TOKEN or _FILE; or a profile's
// credential_process).
//
//	gos3 credentials
//	gos3 s3 ENDPOINT BUCKET OWN_KEY OTHER_KEY
//
// "credentials" resolves the credentials and nothing else; "s3" then
// writes OWN_KEY, reads it back, reads OTHER_KEY and writes OTHER_KEY. The
// answer is one JSON line on stdout (e2e/sdkmatrix_test.go's sdkResult):
// the modules' versions, the credentials' source, the error that kept the
// SDK from credentials, and each S3 call's error code. No credential is
// printed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

type op struct {
	Op      string `json:"op"`
	Key     string `json:"key"`
	Code    string `json:"code"`
	Message string `json:"message,omitempty"`
}

type result struct {
	Versions map[string]string `json:"versions"`
	Source   string            `json:"source"`
	Error    string            `json:"error"`
	Ops      []op              `json:"ops"`
}

func main() {
	args := os.Args[1:]
	if len(args) < 1 || (args[0] != "credentials" && args[0] != "s3") || (args[0] == "s3" && len(args) != 5) {
		fmt.Fprintln(os.Stderr, "usage: gos3 credentials | gos3 s3 ENDPOINT BUCKET OWN_KEY OTHER_KEY")
		os.Exit(2)
	}
	out := result{Versions: versions(), Ops: []op{}}
	defer func() {
		if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
			os.Exit(1)
		}
	}()

	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("us-east-1"))
	if err != nil {
		out.Error = err.Error()
		return
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		out.Error = err.Error()
		return
	}
	out.Source = creds.Source
	if args[0] != "s3" {
		return
	}

	endpoint, bucket, own, other := args[1], args[2], args[3], args[4]
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
	})
	const body = "written by aws-sdk-go-v2"
	put := func(key, body string) func() error {
		return func() error {
			_, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(body)})
			return err
		}
	}
	get := func(key string, want *string) func() error {
		return func() error {
			res, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
			if err != nil {
				return err
			}
			defer res.Body.Close()
			got, err := io.ReadAll(res.Body)
			if err == nil && want != nil && string(got) != *want {
				err = errMismatch
			}
			return err
		}
	}
	want := body
	out.Ops = append(out.Ops,
		call("put", own, put(own, body)),
		call("get", own, get(own, &want)),
		call("get", other, get(other, nil)),
		call("put", other, put(other, "overwritten")))
}

var errMismatch = errors.New("read back other content")

func call(name, key string, fn func() error) op {
	o := op{Op: name, Key: key}
	err := fn()
	var api smithy.APIError
	switch {
	case err == nil:
	case errors.Is(err, errMismatch):
		o.Code, o.Message = "Mismatch", err.Error()
	case errors.As(err, &api):
		o.Code, o.Message = api.ErrorCode(), api.ErrorMessage()
	default:
		o.Code, o.Message = "Error", err.Error()
	}
	return o
}

// versions are the SDK modules this program was built with.
func versions() map[string]string {
	v := map[string]string{}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	for _, d := range info.Deps {
		switch d.Path {
		case "github.com/aws/aws-sdk-go-v2", "github.com/aws/aws-sdk-go-v2/config",
			"github.com/aws/aws-sdk-go-v2/credentials", "github.com/aws/aws-sdk-go-v2/service/s3":
			v[d.Path] = d.Version
		}
	}
	return v
}
