// Command lambdafn is the Lambda function of the e2e tests of tenant
// isolation mode (e2e/lambda_test.go): a handler behind an API Gateway
// proxy integration that gets its invoke's tenant's credentials with
// client/lambdatenant and reads one object under its tenant's prefix and
// one under the prefix of the tenant named in the query parameter
// "other", on S3 (MinIO). It answers what it could read, as status codes:
//
//	{"tenant":"acme","reads":{"acme":200,"globex":403}}
//
// or, when tokenvendor refused, its status and code:
//
//	{"tenant":"acme","tokenvendor":{"status":403,"code":"forbidden"}}
//
// and fails the invoke when the tripwire refuses it. It runs under the
// Runtime Interface Emulator with the environment Lambda would give it:
// the execution role's credentials and AWS_REGION, and its own settings
// TOKENVENDOR_URL, TOKENVENDOR_PROFILE, TOKENVENDOR_SERVER_ID,
// TOKENVENDOR_STS_ENDPOINT (tokenvendor's auth.aws_iam.sts_endpoint),
// S3_ENDPOINT and BUCKET.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"os"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tokenvendor/tokenvendor/client"
	"github.com/tokenvendor/tokenvendor/client/lambdatenant"
)

// Key is the object read under each tenant's prefix.
const Key = "lambda/object.txt"

// answer is the body of the proxy response.
type answer struct {
	Tenant      string         `json:"tenant"`
	Reads       map[string]int `json:"reads,omitempty"`
	Tokenvendor *refusal       `json:"tokenvendor,omitempty"`
}

type refusal struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
}

type function struct {
	cfg    aws.Config
	vendor *lambdatenant.Vendor
	bucket string
	s3     string
}

func main() {
	ctx := context.Background()
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		log.Fatalf("AWS config: %v", err)
	}
	tv, err := lambdatenant.New(lambdatenant.Config{
		URL:     os.Getenv("TOKENVENDOR_URL"),
		Profile: os.Getenv("TOKENVENDOR_PROFILE"),
		AWSIAM: client.AWSIAMConfig{Credentials: cfg.Credentials, ServerID: os.Getenv("TOKENVENDOR_SERVER_ID"),
			Region: cfg.Region, STSEndpoint: os.Getenv("TOKENVENDOR_STS_ENDPOINT")},
	})
	if err != nil {
		log.Fatalf("tokenvendor: %v", err)
	}
	f := &function{cfg: cfg, vendor: tv, bucket: os.Getenv("BUCKET"), s3: os.Getenv("S3_ENDPOINT")}
	lambda.Start(f.handle)
}

func (f *function) handle(ctx context.Context, req events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
	creds, err := f.vendor.Credentials(ctx, lambdatenant.BearerToken(req.Headers))
	if err != nil {
		return events.APIGatewayProxyResponse{}, err // the tripwire: fail the invoke
	}
	lc, _ := lambdacontext.FromContext(ctx)
	out := answer{Tenant: lc.TenantID}
	if _, err := creds.Retrieve(ctx); err != nil {
		var e *client.Error
		if !errors.As(err, &e) {
			return events.APIGatewayProxyResponse{}, err
		}
		out.Tokenvendor = &refusal{Status: e.Status, Code: e.Code}
		return respond(e.Status, out)
	}
	objects := s3.NewFromConfig(f.cfg, func(o *s3.Options) {
		o.BaseEndpoint, o.UsePathStyle, o.Credentials = aws.String(f.s3), true, creds
	})
	out.Reads = map[string]int{}
	for _, tenant := range []string{lc.TenantID, req.QueryStringParameters["other"]} {
		if tenant != "" {
			out.Reads[tenant] = read(ctx, objects, f.bucket, tenant+"/"+Key)
		}
	}
	return respond(http.StatusOK, out)
}

// read is the status of a GetObject of key.
func read(ctx context.Context, objects *s3.Client, bucket, key string) int {
	res, err := objects.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		var re *awshttp.ResponseError
		if errors.As(err, &re) {
			return re.HTTPStatusCode()
		}
		return 0
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return http.StatusOK
}

func respond(status int, a answer) (events.APIGatewayProxyResponse, error) {
	b, err := json.Marshal(a)
	if err != nil {
		return events.APIGatewayProxyResponse{}, err
	}
	return events.APIGatewayProxyResponse{StatusCode: status, Body: string(b),
		Headers: map[string]string{"Content-Type": "application/json"}}, nil
}
